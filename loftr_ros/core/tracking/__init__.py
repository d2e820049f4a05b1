"""Feature tracks with persistent ids for VIO and SLAM back-ends (see tracker.py for the method).

    from loftr_ros.core.tracking import Tracker, TrackerConfig

The Tracker (torch, through the Matcher) is imported when first asked for, so that its settings,
frames and outputs import without torch, as the matcher node's process needs.
"""
from loftr_ros.core.tracking.config import TrackerConfig
from loftr_ros.core.tracking.frame import TrackedFrame

__all__ = ['TrackedFrame', 'Tracker', 'TrackerConfig']


def __getattr__(name):
    if name == 'Tracker':
        from loftr_ros.core.tracking.tracker import Tracker
        return Tracker
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
