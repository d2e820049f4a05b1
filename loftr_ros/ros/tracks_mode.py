"""The matcher node's tracks mode: feature tracks with persistent ids (loftr_ros.core.tracking)
on one image topic, or on a stereo pair with ``tracks.stereo``.

The Tracker runs in the matching process, beside the model (MatchingSession.track): each image
is prepared once, the left and right images of a pair as one batch, and the previous frame's
features stay there. Frames reach it as in the other modes (latest wins, every frame accounted
for; a refused image is dropped with its cause and the tracks go on with the next good frame;
stamps going backwards end every track, and the new ones get new ids). Each frame publishes
``~/tracks`` (loftr_ros/msg/FeatureTracks) and, when the left camera's model is known
(camera_info with ``use_camera_info``, or the ``tracks.calibration`` file) and the frame has
features, VINS-Fusion's feature cloud on ``~/feature`` (sensor_msgs/PointCloud; remap it to
/feature_tracker/feature); without a camera model the node says so once and publishes only
``~/tracks``. New features start only in a frame matched to the previous one (see
loftr_ros.core.tracking.tracker): the first frame after a start, a reset or a cut has none.
``~/overlay`` shows the tracks as trails coloured by id, kept only while someone subscribes.
"""
import dataclasses
import threading
import time
from collections import deque
from typing import Dict, Optional, Sequence

import numpy as np
from sensor_msgs.msg import PointCloud

from loftr_ros.core.camera import StereoCalibration, load_euroc_calibration
from loftr_ros.core.tracking.config import TracksSettings
from loftr_ros.ros.conversions import feature_tracks_msg, vins_feature_msg
from loftr_ros.msg import FeatureTracks

# Positions kept per track for the overlay's trails.
TRAIL_LENGTH = 20


class TrackStatistics:
    """The tracks' figures for /diagnostics, written by the worker, read by the timer."""

    def __init__(self):
        self._lock = threading.Lock()
        self._last = None      # (tracked, new, lost, lengths) of the last frame
        self._carried = 0      # since the last report: tracks carried on into the next frame
        self._ended = 0        # ... and tracks that ended there

    def add(self, frame):
        tracked = len(frame) - frame.num_new
        with self._lock:
            self._last = (tracked, frame.num_new, frame.num_lost, frame.track_lengths)
            self._carried += tracked
            self._ended += frame.num_lost

    def diagnostics(self) -> Dict[str, str]:
        """tracks_tracked, tracks_new, tracks_lost: the last frame's features carried on from
        the frame before, started in it, and the previous frame's tracks that ended there;
        track_length_p50/p90: frames the last frame's features have been seen in; tracking_rate:
        the share of tracks that went on into the next frame since the last report."""
        with self._lock:
            last, carried, ended = self._last, self._carried, self._ended
            self._carried = self._ended = 0
        if last is None:
            return {}
        tracked, new, lost, lengths = last
        values = {'tracks_tracked': str(tracked), 'tracks_new': str(new),
                  'tracks_lost': str(lost)}
        for q in (50, 90):
            values[f'track_length_p{q}'] = (f'{np.percentile(lengths, q):.1f}' if len(lengths)
                                            else 'n/a')
        values['tracking_rate'] = (f'{carried / (carried + ended):.3f}' if carried + ended
                                   else 'n/a')
        return values


class TrackTrails:
    """The last TRAIL_LENGTH positions of each live track, for the overlay."""

    def __init__(self):
        self._trails: Dict[int, deque] = {}

    def update(self, ids: np.ndarray, keypoints: np.ndarray) -> Dict[int, np.ndarray]:
        """Add a frame's features (ended tracks are forgotten); returns id -> trail."""
        trails = {}
        for track_id, point in zip(ids.tolist(), keypoints):
            trail = self._trails.get(track_id) or deque(maxlen=TRAIL_LENGTH)
            trail.append(point)
            trails[track_id] = trail
        self._trails = trails
        return {track_id: np.array(trail) for track_id, trail in trails.items()}

    def clear(self):
        self._trails = {}


class TracksMode:
    """Tracks the worker's jobs in tracks mode and publishes them (see the module docstring).

    `create_publisher` is the node's; `camera_info_topics` the ones subscribed (said when
    ~/feature cannot be published).
    """

    def __init__(self, node, matching, settings: TracksSettings, stats, overlay,
                 create_publisher, camera_info_topics: Sequence[str]):
        self._node = node
        self._matching = matching
        self.settings = settings
        self._tracker_settings = settings.tracker
        self._stats = stats
        self._overlay = overlay
        self._camera_info_topics = camera_info_topics
        self.calibration: Optional[StereoCalibration] = (
            load_euroc_calibration(settings.calibration) if settings.calibration else None)
        self.statistics = TrackStatistics()
        self._trails = TrackTrails()
        self._said_no_cloud = False
        # The first id of a tracker that starts after the matching process restarted: ids
        # are never reused.
        self._next_id = 0
        self._tracks_pub = create_publisher(FeatureTracks, '~/tracks', 10)
        self._feature_pub = create_publisher(PointCloud, '~/feature', 10)

    @property
    def publishers(self):
        return self._tracks_pub, self._feature_pub

    def track(self, frames, reset: bool):
        """A job's frames (one, or a stereo pair) tracked in the matching process (a
        TrackedFrame)."""
        tracked = self._matching.track(
            frames[0].stamp_ns, [frame.image for frame in frames],
            [frame.camera for frame in frames], self.calibration, self._tracker_settings,
            [frame.mask for frame in frames], reset, self._next_id)
        if len(tracked):
            self._next_id = max(self._next_id, int(tracked.ids.max()) + 1)
        return tracked

    def publish(self, tracked, frames):
        """Publish a tracked frame: ~/tracks, ~/feature, the overlay, the figures."""
        left = frames[0]
        right_header = frames[1].header if len(frames) > 1 else None
        processing = time.monotonic() - max(frame.received for frame in frames)
        matching = self._matching
        self._tracks_pub.publish(feature_tracks_msg(
            tracked, left.header, right_header, matching.model_name,
            matching.used_config.config_id, processing))
        cloud = vins_feature_msg(tracked, left.header)
        if cloud is not None:
            # A frame without features (the first one after a start, a reset or a cut, where
            # nothing could check new ones) gives the estimator nothing: VINS's own tracker does
            # not publish its first image either.
            if len(tracked):
                self._feature_pub.publish(cloud)
            self._said_no_cloud = False
        elif not self._said_no_cloud:
            self._said_no_cloud = True
            self._node.get_logger().warning(
                f'~/feature (VINS-Fusion) not published: it needs the left camera\'s model, '
                f'and there is {self._missing_calibration()}; publishing ~/tracks only')
        latency = (self._node.get_clock().now().nanoseconds - left.stamp_ns) * 1e-9
        self._stats.published(latency, processing, tracked.timings.get('total', float('nan')),
                              len(tracked))
        self.statistics.add(tracked)
        if tracked.reset:
            self._trails.clear()
        if self._overlay.wanted:
            trails = self._trails.update(tracked.ids, tracked.keypoints)
            if self._overlay.maybe_publish_tracks(left.image, trails, left.header):
                self._stats.count('overlays')
        else:
            self._trails.clear()

    def _missing_calibration(self) -> str:
        if self._camera_info_topics:
            return (f'no valid camera_info on {self._camera_info_topics[0]} yet and no '
                    f'tracks.calibration')
        return 'no tracks.calibration and use_camera_info is false'

    def diagnostics(self) -> Dict[str, str]:
        return self.statistics.diagnostics()


def tracks_settings(parameter) -> TracksSettings:
    """The TracksSettings of the node's tracks.* parameters (read through parameter(name))."""
    return TracksSettings(**{field.name: parameter(f'tracks.{field.name}')
                             for field in dataclasses.fields(TracksSettings)})
