"""One tracked frame, the Tracker's output (loftr_ros.core.tracking.tracker).

A module of its own, without torch: the matcher node's process receives TrackedFrames from its
matching process (pickled by this module's name) and never imports torch (see
loftr_ros.core.matching_process).
"""
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import numpy as np


@dataclass(frozen=True)
class TrackedFrame:
    """The features of one frame, in id order (oldest tracks first, new features last).

    stamp_ns: the left image's stamp. image_size, right_image_size: (width, height); the latter
        None in mono.
    ids: [N] int64, persistent over the frames, never reused.
    keypoints: [N x 2] float32, the left image's pixels as observed (distorted), sub-pixel,
        OpenCV convention (the centre of the top-left pixel is (0, 0)).
    track_lengths: [N] int64, frames the feature has been seen in, this one included (1: new).
    scores: [N] float32, normalized cross-correlation of the feature's patch with its first
        observation's patch (1 for a new feature).
    right_keypoints, right_valid: [N x 2] float32 (NaN where not found) and [N] bool, the same
        features in the right image; None in mono.
    normalized, velocities: [N x 2] float64, undistorted normalized coordinates (z = 1) of the
        left observations and their velocity in that plane per second (0 for new features);
        None without a left camera model. right_normalized, right_velocities: the same for the
        right observations (NaN where not found); None in mono or without a right camera model.
    num_new: features started in this frame.
    lost: how many tracks of the previous frame ended, per cause: 'motion' (no keypoint match
        and no consistent matches around it, or no previous frame), 'appearance' (its anchor
        patch not found: weak correlation, the image border), 'mask', 'epipolar' (outlier of
        the epipolar geometry), 'thinned' (too close to a longer track), 'reset' (stamps went
        backwards); causes with no track are left out.
    reset: the tracker was reset before this frame (its stamp did not follow the previous one).
    timings: seconds: 'prepare' (images prepared in this call), 'match' (temporal and stereo
        matching), 'track' (the tracker's own work), 'total'.
    """

    stamp_ns: int
    image_size: Tuple[int, int]
    ids: np.ndarray
    keypoints: np.ndarray
    track_lengths: np.ndarray
    scores: np.ndarray
    right_image_size: Optional[Tuple[int, int]] = None
    right_keypoints: Optional[np.ndarray] = None
    right_valid: Optional[np.ndarray] = None
    normalized: Optional[np.ndarray] = None
    velocities: Optional[np.ndarray] = None
    right_normalized: Optional[np.ndarray] = None
    right_velocities: Optional[np.ndarray] = None
    num_new: int = 0
    lost: Dict[str, int] = field(default_factory=dict)
    reset: bool = False
    timings: Dict[str, float] = field(default_factory=dict)

    def __len__(self):
        return len(self.ids)

    @property
    def stereo(self) -> bool:
        return self.right_keypoints is not None

    @property
    def num_lost(self) -> int:
        """Tracks of the previous frame that ended in this one."""
        return sum(self.lost.values())
