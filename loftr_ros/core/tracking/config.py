"""Settings of the feature tracker (the node's ``tracks.*`` parameters, a config file's
``tracks`` section), each declared once with its help text and valid values (see
:mod:`loftr_ros.core.settings`)."""
from dataclasses import dataclass
from typing import Optional

from loftr_ros.core.config import config_section, read_config_file
from loftr_ros.core.errors import ConfigError, check_known_keys
from loftr_ros.core.settings import check_fields, setting, settings_of


@dataclass(frozen=True)
class TrackerConfig:
    """Every setting of the Tracker; defaults follow VINS-Fusion's EuRoC configuration
    (max_cnt 150, min_dist 30, F_threshold 1) scaled to what a learned matcher finds."""

    max_features: int = setting(
        150, 'Most features per frame, tracked and new together: new ones only fill the frame '
        "up to it (VINS-Fusion's max_cnt).", value_range=(1, 100_000))
    min_distance: float = setting(
        20.0, 'Minimum distance in pixels between two features; of two tracked ones too close, '
        "the longer track is kept (VINS-Fusion's min_dist).", value_range=(0.0, 1000.0))
    ransac_threshold: float = setting(
        1.0, "Temporal outlier rejection: a track whose step from the previous frame is farther "
        "than this (pixels) from the epipolar geometry RANSAC finds for all tracks' steps "
        "(essential with camera models, else fundamental) ends there (VINS's F_threshold).",
        value_range=(1e-3, 100.0))
    stereo_threshold: float = setting(
        1.0, 'A right observation is kept within this many pixels (Sampson distance) of the '
        'stereo epipolar geometry: the calibrated one when known, else the essential or '
        'fundamental matrix RANSAC finds for the frame.', value_range=(1e-3, 100.0))
    min_ncc: float = setting(
        0.8, "A track goes on only while its patch correlates at least this well (normalized "
        "cross-correlation) with its first observation's patch; also the minimum for a right "
        'observation against its left patch.', value_range=(0.01, 0.99))
    min_corner_quality: float = setting(
        0.01, "New features need a patch whose smaller structure-tensor eigenvalue is at least "
        "this fraction of the frame's largest (goodFeaturesToTrack's qualityLevel).",
        value_range=(0.0, 0.99))

    def __post_init__(self):
        check_fields(self)


@dataclass(frozen=True)
class TracksSettings(TrackerConfig):
    """The ``tracks.*`` parameters: the Tracker's settings (TrackerConfig) and the node's own
    for tracks mode (what it tracks and its cameras; the bag tools take these from their
    arguments)."""

    stereo: bool = setting(
        False, 'tracks mode: track stereo pairs (left/image and right/image paired by stamp, '
        'as in stereo mode) instead of the one image topic.')
    calibration: str = setting(
        '', 'tracks mode: EuRoC/Kalibr-style camera calibration YAML (cam0 left, cam1 right): '
        "camera models for ~/feature and the calibrated stereo epipolar check; camera_info "
        "(use_camera_info) wins where both are given. Empty: camera_info only.")

    @property
    def tracker(self) -> TrackerConfig:
        return TrackerConfig(**{name: getattr(self, name) for name in settings_of(TrackerConfig)})


def load_tracks_settings(path: Optional[str]) -> TracksSettings:
    """The ``tracks`` section of a YAML file, plain or the node's parameter file (as the node
    reads its tracks.* parameters); the defaults when `path` is None or the file has no such
    section (a matcher-only file). ConfigError naming the file and the setting when a key is
    unknown or a value invalid."""
    if path is None:
        return TracksSettings()
    section = config_section(read_config_file(path), 'tracks', str(path), required=False)
    check_known_keys(section, settings_of(TracksSettings), f'tracks in {path}')
    try:
        return TracksSettings(**section)
    except ConfigError as error:
        raise ConfigError(f'{path}: tracks: {error}') from None
