"""Accuracy and latency metrics of matches: inlier ratio, epipolar error, relative pose, AUC.

The pose metrics follow SuperGlue/LoFTR: the relative pose is recovered from the matches
(essential matrix on undistorted, normalized points, then cv2.recoverPose), its rotation error
and translation-direction error are measured against the ground truth in degrees, the pose error
of a pair is the larger of the two (inf when no pose could be recovered), and the AUC of the
error CDF up to 5, 10 and 20 degrees summarises a sequence.
"""
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence

import cv2
import numpy as np

from loftr_ros.core.camera import CameraModel, StereoCalibration, sampson_distances
from loftr_ros.core.geometry import verify_matches
from loftr_ros.core.types import MatchResult

AUC_THRESHOLDS_DEG = (5.0, 10.0, 20.0)
# Epipolar error below which a stereo match counts as correct (pixels).
EPIPOLAR_CORRECT_PX = 1.0
# USAC MAGSAC threshold of the verification behind the inlier ratio when the matcher ran
# without one (pixels).
INLIER_THRESHOLD_PX = 1.0


def inlier_verification(geometry: str, ransac_threshold: float, cameras: bool,
                        ) -> Dict[str, Any]:
    """What the inlier ratio counts: {'by', 'model', 'threshold_px'}. The matcher's own
    verification when its `geometry` is set (essential falls back to fundamental without
    cameras, as in the matcher); otherwise this module's, USAC MAGSAC at INLIER_THRESHOLD_PX:
    essential with `cameras`, fundamental without."""
    if geometry != 'none':
        model = 'fundamental' if geometry == 'essential' and not cameras else geometry
        return {'by': 'matcher', 'model': model, 'threshold_px': ransac_threshold}
    return {'by': 'eval', 'model': 'essential' if cameras else 'fundamental',
            'threshold_px': INLIER_THRESHOLD_PX}


def inlier_mask(result: MatchResult, camera0: Optional[CameraModel] = None,
                camera1: Optional[CameraModel] = None) -> Optional[np.ndarray]:
    """The result's own inlier mask, or (when the matcher ran without verification) the mask of
    the verification inlier_verification names; None with too few matches."""
    if result.inliers is not None:
        return result.inliers
    verification = inlier_verification('none', 0.0, camera0 is not None and camera1 is not None)
    mask, _ = verify_matches(result.keypoints0, result.keypoints1, verification['model'],
                             verification['threshold_px'], 0.999, camera0, camera1)
    return mask


def epipolar_errors(result: MatchResult, calibration: StereoCalibration) -> np.ndarray:
    """Sampson distance (pixels) of every match to the calibrated stereo geometry."""
    return sampson_distances(result.keypoints0, result.keypoints1, calibration)


@dataclass(frozen=True)
class PoseEstimate:
    R: np.ndarray
    t: np.ndarray
    inliers: int


def estimate_relative_pose(keypoints0: np.ndarray, keypoints1: np.ndarray,
                           camera0: CameraModel, camera1: CameraModel,
                           threshold_px: float = 1.0) -> Optional[PoseEstimate]:
    """Pose of camera 0 in camera 1 (x1 = R x0 + t, |t| = 1) from matches, or None when fewer
    than 5 matches or no essential matrix is found."""
    if len(keypoints0) < 5:
        return None
    x0 = camera0.normalize(keypoints0)
    x1 = camera1.normalize(keypoints1)
    threshold = threshold_px / ((camera0.focal + camera1.focal) / 2)
    E, mask = cv2.findEssentialMat(x0, x1, np.eye(3), cv2.RANSAC, 0.99999, threshold)
    if E is None:
        return None
    best = None
    # findEssentialMat may return several stacked solutions: keep the one most points support.
    for candidate in np.split(E, len(E) // 3):
        count, R, t, _ = cv2.recoverPose(candidate, x0, x1, np.eye(3), mask=mask.copy())
        if best is None or count > best.inliers:
            best = PoseEstimate(R, t.ravel(), int(count))
    return best if best.inliers > 0 else None


def rotation_error_deg(R_estimate: np.ndarray, R_truth: np.ndarray) -> float:
    cosine = (np.trace(R_estimate.T @ R_truth) - 1) / 2
    return float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))


def translation_error_deg(t_estimate: np.ndarray, t_truth: np.ndarray) -> float:
    """Angle between translation directions, folded to [0, 90] as in SuperGlue's evaluation
    (an essential matrix fixes the direction only up to sign)."""
    cosine = np.dot(t_estimate, t_truth) / max(
        np.linalg.norm(t_estimate) * np.linalg.norm(t_truth), 1e-12)
    angle = float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))
    return min(angle, 180.0 - angle)


def pose_errors(estimate: Optional[PoseEstimate], R_truth: np.ndarray, t_truth: np.ndarray,
                ) -> Dict[str, float]:
    """rotation_deg, translation_deg and pose_deg (their maximum); inf without an estimate."""
    if estimate is None:
        return {'rotation_deg': np.inf, 'translation_deg': np.inf, 'pose_deg': np.inf}
    rotation = rotation_error_deg(estimate.R, R_truth)
    translation = translation_error_deg(estimate.t, t_truth)
    return {'rotation_deg': rotation, 'translation_deg': translation,
            'pose_deg': max(rotation, translation)}


def pose_auc(errors: Sequence[float], thresholds: Sequence[float] = AUC_THRESHOLDS_DEG,
             ) -> Dict[float, float]:
    """Area under the recall-vs-error curve up to each threshold, normalised to [0, 1]."""
    errors = np.sort(np.asarray(errors, np.float64))
    if errors.size == 0:
        return {threshold: float('nan') for threshold in thresholds}
    recall = np.arange(1, len(errors) + 1) / len(errors)
    errors = np.concatenate([[0.0], errors])
    recall = np.concatenate([[0.0], recall])
    aucs = {}
    for threshold in thresholds:
        last = np.searchsorted(errors, threshold)
        curve_recall = np.concatenate([recall[:last], [recall[last - 1]]])
        curve_error = np.concatenate([errors[:last], [threshold]])
        aucs[threshold] = float(np.trapezoid(curve_recall, x=curve_error) / threshold)
    return aucs


def latency_summary(seconds: Sequence[float]) -> Dict[str, float]:
    """p50, p95 and max in milliseconds."""
    values = np.asarray(seconds, np.float64) * 1e3
    if values.size == 0:
        return {'p50_ms': float('nan'), 'p95_ms': float('nan'), 'max_ms': float('nan')}
    return {'p50_ms': float(np.percentile(values, 50)),
            'p95_ms': float(np.percentile(values, 95)), 'max_ms': float(values.max())}


# Upper edges (exclusive) of the track-length histogram's bins, in frames; the last bin holds
# the longer tracks.
TRACK_LENGTH_EDGES = (2, 3, 5, 10, 20, 50, 100)


class TrackLengths:
    """The length (frames seen in) of every track of a run, by id: a track's length is its
    last observation's, when it ended or the run did."""

    def __init__(self):
        self.lengths: Dict[int, int] = {}

    def add(self, ids: np.ndarray, track_lengths: np.ndarray):
        self.lengths.update(zip(ids.tolist(), track_lengths.tolist()))

    def summary(self) -> Dict[str, Any]:
        """{'tracks', 'median', 'p90', 'histogram': {'1': n, '2': n, '3-4': n, ..., '100+': n}}."""
        lengths = np.fromiter(self.lengths.values(), np.int64, len(self.lengths))
        if not lengths.size:
            return {'tracks': 0, 'median': float('nan'), 'p90': float('nan'), 'histogram': {}}
        lows = (1,) + TRACK_LENGTH_EDGES
        names = [str(low) if high == low + 1 else f'{low}-{high - 1}'
                 for low, high in zip(lows, TRACK_LENGTH_EDGES)] + [f'{lows[-1]}+']
        counts = np.bincount(np.searchsorted(TRACK_LENGTH_EDGES, lengths, side='right'),
                             minlength=len(names))
        return {'tracks': int(lengths.size), 'median': float(np.median(lengths)),
                'p90': float(np.percentile(lengths, 90)),
                'histogram': dict(zip(names, counts.tolist()))}
