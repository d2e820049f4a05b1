"""Settings of the feature tracker (``tracks`` in the node's parameters)."""
from dataclasses import dataclass

from loftr_ros.core.errors import ConfigError


@dataclass(frozen=True)
class TrackerConfig:
    # Most features per frame, tracked and new together: new ones only fill the frame up to it
    # (VINS-Fusion's max_cnt; its EuRoC configurations use 150 at 752x480).
    max_features: int = 200
    # Minimum distance in pixels between two features; of two tracked ones too close, the
    # longer track is kept (VINS-Fusion's min_dist; 30 in its EuRoC configurations).
    min_distance: float = 20.0
    # Temporal outlier rejection: a track whose step from the previous frame is farther than
    # this (pixels) from the epipolar geometry of all tracks' steps (RANSAC: essential matrix
    # with a camera model, else fundamental) ends there (VINS-Mono's F_threshold).
    ransac_threshold: float = 1.0
    # A right observation is kept when it lies within this many pixels (Sampson distance) of
    # the stereo epipolar geometry: the calibrated one when a StereoCalibration is known, else
    # the essential (camera models) or fundamental matrix RANSAC finds for the frame's tracks.
    stereo_threshold: float = 1.0
    # A track goes on only while its patch, warped by the local motion, correlates at least
    # this well (normalized cross-correlation) with the patch of its FIRST observation; also
    # the minimum for a right observation against its left patch.
    min_ncc: float = 0.8
    # New features need a patch whose smaller structure-tensor eigenvalue is at least this
    # fraction of the frame's largest (goodFeaturesToTrack's qualityLevel; 0.01 in VINS):
    # flat and edge-only patches cannot be located along every direction.
    min_corner_quality: float = 0.01

    def __post_init__(self):
        if int(self.max_features) != self.max_features or self.max_features < 1:
            raise ConfigError(f'max_features must be an integer >= 1, got {self.max_features}')
        if not self.min_distance >= 0:
            raise ConfigError(f'min_distance must be >= 0 pixels, got {self.min_distance}')
        for name in ('ransac_threshold', 'stereo_threshold'):
            if not getattr(self, name) > 0:
                raise ConfigError(f'{name} must be > 0 pixels, got {getattr(self, name)}')
        if not 0 < self.min_ncc < 1:
            raise ConfigError(f'min_ncc must be in (0, 1), got {self.min_ncc}')
        if not 0 <= self.min_corner_quality < 1:
            raise ConfigError(
                f'min_corner_quality must be in [0, 1), got {self.min_corner_quality}')
