"""The metrics of ``loftr-ros eval``, each declared as one unit: how a matched pair is scored
(its columns of ``pairs.csv``), what the run's summary holds (its fields of ``summary.json``)
and which rows it adds to ``compare.md``. The measurements themselves are in
:mod:`loftr_ros.core.evaluation`.

A new metric is one more :class:`Metric` in ``METRICS``; the report follows.
"""
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from loftr_ros.core import evaluation
from loftr_ros.core.bag import FramePair
from loftr_ros.core.camera import StereoCalibration, sampson_distances
from loftr_ros.core.reprojection import LOW_PARALLAX, MIN_PARALLAX_DEG
from loftr_ros.core.types import MatchResult

# Columns naming the pair, before the metrics' own ('pair' is its number in the run).
PAIR_COLUMNS = ('pair', 'stamp0_ns', 'stamp1_ns', 'index0', 'index1')
# Ground-truth camera motion under which a consecutive pair has no epipolar geometry to score
# (metres).
MIN_MOTION_M = 1e-6


@dataclass
class ScoredPair:
    """A matched pair and what its metrics are measured against; measurements that several
    metrics need are made once."""

    result: MatchResult
    pair: FramePair
    calibration: Optional[StereoCalibration]
    trajectory: Any  # loftr_ros.core.trajectory.Trajectory or None
    stereo: bool

    @property
    def cameras(self):
        calibration = self.calibration
        return (calibration.camera0, calibration.camera1) if calibration else (None, None)

    @cached_property
    def ground_truth_motion(self) -> Optional[Tuple[np.ndarray, np.ndarray]]:
        """(R, t) of a consecutive pair's camera motion from the ground truth; None without
        ground truth or camera, or outside the ground truth's stamps."""
        camera0, _ = self.cameras
        if self.stereo or self.trajectory is None or camera0 is None:
            return None
        pair = self.pair
        return self.trajectory.camera_motion(pair.frame0.stamp_ns, pair.frame1.stamp_ns,
                                             camera0.T_body_cam)

    @cached_property
    def epipolar_errors(self) -> Optional[np.ndarray]:
        """Sampson distance (pixels) of every match to the pair's true epipolar geometry: the
        calibrated stereo pair's, or the ground-truth motion of a consecutive pair; None where
        it is unknown (no calibrated baseline, no ground truth or no motion) or there is no
        match."""
        calibration = self.calibration
        if not len(self.result) or calibration is None:
            return None
        if self.stereo:
            geometry = calibration if calibration.baseline > 0 else None
        else:
            motion = self.ground_truth_motion
            geometry = (StereoCalibration(calibration.camera0, calibration.camera1, *motion)
                        if motion is not None and np.linalg.norm(motion[1]) >= MIN_MOTION_M
                        else None)
        return None if geometry is None else evaluation.epipolar_errors(self.result, geometry)


@dataclass(frozen=True)
class TableRow:
    """A row of compare.md: `title`, and the summary value at `path` shown with `digits`
    decimals. The row is shown when a run's summary has the path's first field."""

    title: str
    path: Tuple[str, ...]
    digits: int

    def value(self, summary: Dict[str, Any]):
        value = summary
        for key in self.path:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return value


@dataclass(frozen=True)
class Metric:
    # Its columns of pairs.csv, in order.
    columns: Tuple[str, ...]
    # A pair's values by column (a column left out is empty: not measured for that pair).
    score: Callable[[ScoredPair], Dict[str, Any]]
    # Its fields of the run's summary, from every pair's row.
    summarize: Callable[[List[Dict[str, Any]]], Dict[str, Any]]
    # Its rows of compare.md.
    rows: Tuple[TableRow, ...] = field(default=())


def column(rows: Sequence[Dict[str, Any]], name: str) -> np.ndarray:
    """The measured values of a column over the rows, as float64."""
    return np.array([row[name] for row in rows if row.get(name) not in (None, '')], np.float64)


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float('nan')


def _median(values: np.ndarray) -> float:
    return float(np.median(values)) if values.size else float('nan')


def _inliers(scored: ScoredPair) -> Dict[str, Any]:
    mask = evaluation.inlier_mask(scored.result, *scored.cameras)
    inliers = int(mask.sum()) if mask is not None else 0
    matches = len(scored.result)
    return {'inliers': inliers, 'inlier_ratio': inliers / matches if matches else 0.0}


def _epipolar(scored: ScoredPair) -> Dict[str, Any]:
    errors = scored.epipolar_errors
    if errors is None:
        return {}
    return {'epipolar_median_px': float(np.median(errors)),
            'epipolar_correct_ratio': float(np.mean(errors < evaluation.EPIPOLAR_CORRECT_PX))}


def _epipolar_summary(rows) -> Dict[str, Any]:
    medians = column(rows, 'epipolar_median_px')
    if not medians.size:
        return {}
    return {'epipolar_median_px': float(np.median(medians)),
            'epipolar_correct_ratio_mean': float(column(rows, 'epipolar_correct_ratio').mean())}


def _pose(scored: ScoredPair) -> Dict[str, Any]:
    """Errors of the relative pose recovered from the matches against the ground truth, and
    whether the pair was scored ('yes', 'no ground truth', 'no motion' or '')."""
    camera0, camera1 = scored.cameras
    if scored.trajectory is None or camera0 is None:
        return {'scored': ''}
    motion = scored.ground_truth_motion
    if motion is None:
        return {'scored': 'no ground truth'}
    R, t = motion
    if np.linalg.norm(t) < MIN_MOTION_M:
        return {'scored': 'no motion'}
    result = scored.result
    estimate = evaluation.estimate_relative_pose(result.keypoints0, result.keypoints1, camera0,
                                                 camera1)
    return {**evaluation.pose_errors(estimate, R, t), 'scored': 'yes'}


def _pose_summary(rows) -> Dict[str, Any]:
    scored = [row for row in rows if row.get('scored') == 'yes']
    unscored = [row for row in rows if row.get('scored') == 'no ground truth']
    if not (scored or unscored):
        return {}
    aucs = evaluation.pose_auc([row['pose_deg'] for row in scored])
    return {'pose_auc': {f'{int(k)}deg': v for k, v in aucs.items()},
            'pairs_scored': len(scored),
            'pairs_without_ground_truth': [[row['index0'], row['index1']] for row in unscored]}


METRICS = (
    Metric(('matches',), lambda scored: {'matches': len(scored.result)},
           lambda rows: {'matches_mean': _mean(column(rows, 'matches')),
                         'matches_median': _median(column(rows, 'matches'))},
           (TableRow('matches (mean)', ('matches_mean',), 1),)),
    Metric(('inliers', 'inlier_ratio'), _inliers,
           lambda rows: {'inlier_ratio_mean': _mean(column(rows, 'inlier_ratio'))},
           (TableRow('inlier ratio', ('inlier_ratio_mean',), 3),)),
    Metric(('epipolar_median_px', 'epipolar_correct_ratio'), _epipolar, _epipolar_summary,
           (TableRow('epipolar error median [px]', ('epipolar_median_px',), 3),
            TableRow('matches within 1 px', ('epipolar_correct_ratio_mean',), 3))),
    Metric(('rotation_deg', 'translation_deg', 'pose_deg', 'scored'), _pose, _pose_summary,
           tuple(TableRow(f'pose AUC@{int(threshold)}°', ('pose_auc', f'{int(threshold)}deg'),
                          3) for threshold in evaluation.AUC_THRESHOLDS_DEG)),
    # The matcher's time for the pair, including the frames prepared for it.
    Metric(('latency_ms',),
           lambda scored: {'latency_ms': scored.result.timings.get('total', float('nan')) * 1e3},
           lambda rows: {'latency': evaluation.latency_summary(column(rows, 'latency_ms') / 1e3)},
           (TableRow('latency p50 [ms]', ('latency', 'p50_ms'), 1),
            TableRow('latency p95 [ms]', ('latency', 'p95_ms'), 1))),
)

CSV_COLUMNS = PAIR_COLUMNS + tuple(name for metric in METRICS for name in metric.columns)


def score_pair(result: MatchResult, pair: FramePair, calibration: Optional[StereoCalibration],
               trajectory, stereo: bool) -> Dict[str, Any]:
    """The pairs.csv row of one matched pair (without its number)."""
    return scored_row(ScoredPair(result, pair, calibration, trajectory, stereo))


def scored_row(scored: ScoredPair) -> Dict[str, Any]:
    """The pairs.csv row of a ScoredPair (without its number)."""
    pair = scored.pair
    row = {'stamp0_ns': pair.frame0.stamp_ns, 'stamp1_ns': pair.frame1.stamp_ns,
           'index0': pair.frame0.index, 'index1': pair.frame1.index}
    return _scored(METRICS, scored, row)


def _scored(metrics: Sequence[Metric], scored, row: Dict[str, Any]) -> Dict[str, Any]:
    for metric in metrics:
        row.update(metric.score(scored))
    return row


def summarize_metrics(rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Every metric's summary fields, in METRICS order."""
    return _summarized(METRICS, rows)


def _summarized(metrics: Sequence[Metric], rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    summary: Dict[str, Any] = {}
    for metric in metrics:
        summary.update(metric.summarize(rows))
    return summary


def table_rows(summaries: Sequence[Dict[str, Any]]) -> List[TableRow]:
    """The compare.md rows of the metrics that some run has."""
    return [row for metric in METRICS for row in metric.rows
            if any(row.path[0] in summary for summary in summaries)]


# Tracks mode (``loftr-ros eval --mode tracks``): the metrics of a tracked frame, as METRICS are
# a matched pair's, and the track lengths, which only the whole run tells.

FRAME_COLUMNS = ('frame', 'stamp_ns')


@dataclass
class ScoredFrame:
    """A TrackedFrame and the stereo calibration its same-id observations are scored against."""

    frame: Any  # loftr_ros.core.tracking.TrackedFrame
    calibration: Optional[StereoCalibration]

    @cached_property
    def stereo_errors(self) -> Optional[np.ndarray]:
        """Sampson distance (pixels) of every feature seen in both images to the calibrated
        stereo geometry; None in mono, without a calibrated baseline or without such feature."""
        frame, calibration = self.frame, self.calibration
        if not frame.stereo or calibration is None or calibration.baseline <= 0:
            return None
        valid = frame.right_valid
        if not valid.any():
            return None
        return sampson_distances(frame.keypoints[valid], frame.right_keypoints[valid],
                                 calibration)


def _stereo_tracks(scored: ScoredFrame) -> Dict[str, Any]:
    errors = scored.stereo_errors
    if errors is None:
        return {}
    return {'stereo_observations': len(errors),
            'stereo_epipolar_median_px': float(np.median(errors)),
            'stereo_within_1px': float(np.mean(errors < evaluation.EPIPOLAR_CORRECT_PX))}


def _stereo_tracks_summary(rows) -> Dict[str, Any]:
    medians = column(rows, 'stereo_epipolar_median_px')
    if not medians.size:
        return {}
    # Every observation weighs the same: the share over all of them, not a mean of shares.
    observations = column(rows, 'stereo_observations')
    return {'stereo_epipolar_median_px': float(np.median(medians)),
            'stereo_within_1px': float(np.sum(column(rows, 'stereo_within_1px') * observations)
                                       / observations.sum())}


def _rate(rows) -> Dict[str, Any]:
    seconds = column(rows, 'track_ms') / 1e3
    return {'rate_fps': float(len(seconds) / seconds.sum()) if seconds.sum() > 0
            else float('nan'),
            'latency': evaluation.latency_summary(seconds)}


TRACK_METRICS = (
    Metric(('features', 'new_features'),
           lambda scored: {'features': len(scored.frame), 'new_features': scored.frame.num_new},
           lambda rows: {'features_mean': _mean(column(rows, 'features')),
                         'features_median': _median(column(rows, 'features'))},
           (TableRow('features per frame (mean)', ('features_mean',), 1),)),
    Metric(('stereo_observations', 'stereo_epipolar_median_px', 'stereo_within_1px'),
           _stereo_tracks, _stereo_tracks_summary,
           (TableRow('stereo same-id epipolar median [px]', ('stereo_epipolar_median_px',), 3),
            TableRow('stereo same-id within 1 px', ('stereo_within_1px',), 3))),
    # The tracker's time for the frame, its images' preparation included.
    Metric(('track_ms',),
           lambda scored: {'track_ms': scored.frame.timings.get('total', float('nan')) * 1e3},
           _rate,
           (TableRow('rate [frames/s]', ('rate_fps',), 1),
            TableRow('latency p50 [ms]', ('latency', 'p50_ms'), 1))),
)

TRACK_CSV_COLUMNS = FRAME_COLUMNS + tuple(name for metric in TRACK_METRICS
                                          for name in metric.columns)
# Track lengths: each track's frames once it ended or the run did (track_length_summary).
TRACK_LENGTH_ROWS = (TableRow('track length median [frames]', ('track_length', 'median'), 1),
                     TableRow('track length p90 [frames]', ('track_length', 'p90'), 1))
# The temporal reprojection error of the tracks against ground-truth poses, also known only once
# they ended (loftr_ros.core.reprojection.TrackReprojection.summary).
REPROJECTION_ROWS = (
    TableRow('reprojection error median [px]', ('reprojection', 'median_px'), 3),
    TableRow('reprojection error p90 [px]', ('reprojection', 'p90_px'), 3),
    TableRow('reprojected within 1 px', ('reprojection', 'within_1px'), 3),
    TableRow('tracks reprojected', ('reprojection', 'tracks_measured'), 0),
    TableRow(f'tracks not reprojected: parallax < {MIN_PARALLAX_DEG:g}°',
             ('reprojection', 'tracks_skipped', LOW_PARALLAX), 0))


def tracked_row(scored: ScoredFrame) -> Dict[str, Any]:
    """The frames.csv row of a tracked frame (without its number)."""
    return _scored(TRACK_METRICS, scored, {'stamp_ns': scored.frame.stamp_ns})


def summarize_tracks(rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Every tracks metric's summary fields, in TRACK_METRICS order."""
    return _summarized(TRACK_METRICS, rows)


def track_table_rows(summaries: Sequence[Dict[str, Any]]) -> List[TableRow]:
    """The compare.md rows of the tracks metrics that some run has."""
    rows = ([row for metric in TRACK_METRICS for row in metric.rows] + list(TRACK_LENGTH_ROWS)
            + list(REPROJECTION_ROWS))
    return [row for row in rows if any(row.path[0] in summary for summary in summaries)]
