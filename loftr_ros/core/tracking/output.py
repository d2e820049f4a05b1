"""A tracked frame as the flat arrays of loftr_ros/msg/FeatureTracks and as the feature cloud
VINS-Fusion's estimator reads (ROS-free: the ROS layer only copies these into messages).

VINS-Fusion (vins_estimator/src/rosNodeTest.cpp, ``feature_callback``) reads a
``sensor_msgs/PointCloud`` on ``/feature_tracker/feature``: point i is the undistorted
normalized observation (x, y, z = 1, asserted), and channel k's value i is, in this order, the
feature id, the camera id (0 left, 1 right), the pixel u, v, and the velocity x, y of the
normalized point per second. When the message has more than 5 channels it also reads channels
6, 7 and 8 (a simulator's ground-truth point): a cloud of exactly 6 channels would make it read
past the channel list, so the cloud carries 9, the last three zero. Each camera observation is
one point; a feature seen in both cameras is two points with the same id.

The channels are float32: ids are exact up to 2^24 (16,777,216; VINS-Fusion's own tracker has
the same limit), so the cloud carries ids modulo 2^24. A wrapped id cannot meet its older
namesake in the estimator's window of a few seconds (at 1,000 new features per second the ids
wrap every 4.6 hours).
"""
from typing import NamedTuple, Optional

import numpy as np

from loftr_ros.core.tracking.frame import TrackedFrame

# Channels of the cloud: what VINS-Fusion's feature_callback reads, and the three it reads
# when there are more than five (left zero).
VINS_CHANNELS = ('id', 'camera_id', 'u', 'v', 'velocity_x', 'velocity_y', 'gt_x', 'gt_y', 'gt_z')
# float32 holds every integer up to this exactly.
VINS_ID_MODULUS = 1 << 24


class FeatureTracksArrays(NamedTuple):
    """The per-feature fields of FeatureTracks, flat and typed as the message has them."""

    ids: np.ndarray               # int64 [N]
    keypoints: np.ndarray         # float32 [2N]
    right_keypoints: np.ndarray   # float32 [2N], empty in mono
    right_valid: np.ndarray       # uint8 [N], empty in mono
    track_lengths: np.ndarray     # uint32 [N]
    scores: np.ndarray            # float32 [N]
    normalized: np.ndarray        # float64 [2N], empty without a left camera model
    right_normalized: np.ndarray  # float64 [2N], empty in mono or without a right camera model


def feature_tracks_arrays(frame: TrackedFrame) -> FeatureTracksArrays:
    """The FeatureTracks arrays of a tracked frame."""
    def flat(values, dtype):
        if values is None:
            return np.zeros(0, dtype)
        return np.ascontiguousarray(values, dtype).reshape(-1)

    return FeatureTracksArrays(
        ids=flat(frame.ids, np.int64), keypoints=flat(frame.keypoints, np.float32),
        right_keypoints=flat(frame.right_keypoints, np.float32),
        right_valid=flat(frame.right_valid, np.uint8),
        track_lengths=flat(frame.track_lengths, np.uint32),
        scores=flat(frame.scores, np.float32), normalized=flat(frame.normalized, np.float64),
        right_normalized=flat(frame.right_normalized, np.float64))


class VinsFeatures(NamedTuple):
    """VINS-Fusion's feature cloud: points [M x 3] float32 (x, y, 1) and channels [9 x M]
    float32 in VINS_CHANNELS order, one column per camera observation."""

    points: np.ndarray
    channels: np.ndarray


def vins_features(frame: TrackedFrame) -> Optional[VinsFeatures]:
    """The cloud of a tracked frame: every left observation (camera 0), then every right one
    (camera 1) of a stereo frame with a right camera model. None without a left camera model
    (the cloud needs undistorted coordinates)."""
    if frame.normalized is None:
        return None
    observations = [(0, np.ones(len(frame), bool), frame.keypoints, frame.normalized,
                     frame.velocities)]
    if frame.right_keypoints is not None and frame.right_normalized is not None:
        observations.append((1, frame.right_valid, frame.right_keypoints,
                             frame.right_normalized, frame.right_velocities))
    points, columns = [], []
    for camera_id, seen, pixels, normalized, velocities in observations:
        count = int(seen.sum())
        points.append(np.column_stack([normalized[seen], np.ones(count)]))
        columns.append(np.column_stack([
            frame.ids[seen] % VINS_ID_MODULUS, np.full(count, camera_id), pixels[seen],
            velocities[seen], np.zeros((count, 3))]))
    return VinsFeatures(np.concatenate(points).astype(np.float32),
                        np.ascontiguousarray(np.concatenate(columns).T, np.float32))
