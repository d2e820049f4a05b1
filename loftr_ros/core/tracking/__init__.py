"""Feature tracks with persistent ids for VIO and SLAM back-ends (see tracker.py for the method).

    from loftr_ros.core.tracking import Tracker, TrackerConfig
"""
from loftr_ros.core.tracking.config import TrackerConfig
from loftr_ros.core.tracking.tracker import TrackedFrame, Tracker

__all__ = ['TrackedFrame', 'Tracker', 'TrackerConfig']
