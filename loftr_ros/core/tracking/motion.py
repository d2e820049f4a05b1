"""The image motion around a point, from a pair's matches: a local affine map fitted robustly to
the matches nearest to it (a motion field sampled where the matcher found correspondences)."""
from typing import Tuple

import cv2
import numpy as np

from loftr_ros.core.tracking.neighbours import nearest_within

# Matches used per point, and how far they may be. A detector-free matcher's coarse grid (8 px
# at the model's resolution) puts 8 of them within ~15 px; a detector's sparser keypoints need
# the wider radius.
NEIGHBOURS = 8
RADIUS = 40.0
# A match is an outlier of the local motion when its displacement differs from the local
# median by more than this (pixels), plus a fraction of its distance for rotation and zoom...
_MEDIAN_TOLERANCE = (2.0, 0.1)
# ...and from the fitted affine map by more than this, once fitted.
_AFFINE_TOLERANCE = (1.0, 0.02)
_MIN_SUPPORT = 3
# Points without enough matches within RADIUS look this many times farther, then take the
# image's dominant affine motion (RANSAC threshold in pixels): the NCC search and the
# alignment take it from there.
_WIDER = 3.0
# The farthest a match can be from a point and still count in its motion (before the global
# fallback).
REACH = _WIDER * RADIUS
_GLOBAL_TOLERANCE = 3.0
# Ridge on the affine map's linear part (pixels^2): keeps collinear or clustered neighbours from
# giving a wild linear part, and is negligible against K neighbours spread over ~10-40 px.
_RIDGE = 10.0


def local_motion(points: np.ndarray, source: np.ndarray, target: np.ndarray,
                 radius: float = RADIUS, neighbours: int = NEIGHBOURS,
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each point [N x 2] of the source image moves in the target image, by the matches
    (source [M x 2] -> target [M x 2]) around it: the `neighbours` nearest within `radius`,
    for points without enough of them within three times the radius, and for points without
    enough there either the affine map most of all matches agree with (RANSAC).

    Returns (predicted positions, float64 [N x 2]; linear part of the affine map, float64
    [N x 2 x 2]; found, bool [N]: the prediction rests on at least three consistent matches).
    """
    points = np.asarray(points, np.float64).reshape(-1, 2)
    source = np.asarray(source, np.float64).reshape(-1, 2)
    target = np.asarray(target, np.float64).reshape(-1, 2)
    predicted = points.copy()
    linear = np.tile(np.eye(2), (len(points), 1, 1))
    found = np.zeros(len(points), bool)
    if len(points) == 0 or len(source) == 0:
        return predicted, linear, found
    for reach in (radius, _WIDER * radius):
        missing = np.flatnonzero(~found)
        if len(missing) == 0:
            break
        predicted[missing], linear[missing], found[missing] = _fitted(
            points[missing], source, target, reach, neighbours)
    missing = ~found
    if missing.any() and len(source) >= _MIN_SUPPORT:
        affine, inliers = cv2.estimateAffine2D(source, target, method=cv2.RANSAC,
                                               ransacReprojThreshold=_GLOBAL_TOLERANCE)
        if affine is not None and inliers.sum() >= _MIN_SUPPORT:
            predicted[missing] = points[missing] @ affine[:, :2].T + affine[:, 2]
            linear[missing] = affine[:, :2]
            found[missing] = True
    return predicted, linear, found


def sector_motions(points: np.ndarray, steps: np.ndarray, source: np.ndarray,
                   target: np.ndarray, index: np.ndarray, sectors: int,
                   ) -> Tuple[np.ndarray, np.ndarray]:
    """How the surroundings of each point move relative to the point itself, per direction.

    points [N x 2] moved by steps [N x 2]; matches source [M x 2] -> target [M x 2], and for
    each point the matches around it (index [N x K], -1 for none). The matches fall into
    `sectors` equal angular sectors around their point; per sector, the median of (match step -
    point step). Returns (medians [N x S x 2], NaN for sectors without a match; match counts
    [N x S]). A point on one surface moves as every sector does; a point beside an occluding
    edge moves with one side only: the sectors across the edge move otherwise.
    """
    valid, offsets, displacements = _gathered(points, source, target, index)
    relative = displacements - steps[:, None]                                 # [N x K x 2]
    angle = np.arctan2(offsets[..., 1], offsets[..., 0])
    sector = np.floor((angle + np.pi) * sectors / (2 * np.pi)).astype(np.intp) % sectors
    medians = np.stack([_median(relative, valid & (sector == k)) for k in range(sectors)], 1)
    counts = np.stack([(valid & (sector == k)).sum(axis=1) for k in range(sectors)], 1)
    return medians, counts


def match_noise(points: np.ndarray, source: np.ndarray, target: np.ndarray,
                index: np.ndarray) -> float:
    """The matches' own localization noise (pixels, per axis, robust), from how far they lie
    off the affine motion fitted to the matches around each point (index [N x K] as in
    sector_motions): the motion's smooth part (zoom, rotation, a tilted surface) does not count.
    0 without enough matches."""
    valid, offsets, displacements = _gathered(points, source, target, index)
    fitted = valid & (valid.sum(axis=1) >= 2 * _MIN_SUPPORT)[:, None]
    if not fitted.any():
        return 0.0
    shift, jacobian = _fit_affine(offsets, displacements, fitted)
    residual = (displacements - shift[:, None]
                - np.einsum('nij,nkj->nki', jacobian, offsets))[fitted]
    # The lower quartile of |residual|, 0.3186 standard deviations for Gaussian noise: most
    # neighbourhoods lie on one surface, but those across an occluding edge spread the rest.
    return float(np.percentile(np.abs(residual), 25) / 0.3186)


def _fitted(points: np.ndarray, source: np.ndarray, target: np.ndarray, radius: float,
            neighbours: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """local_motion from the nearest matches within `radius` only."""
    valid, offsets, displacements = _gathered(
        points, source, target, nearest_within(points, source, radius, neighbours))
    distance = np.linalg.norm(offsets, axis=2)

    median = _median(displacements, valid)
    support = valid & (np.linalg.norm(displacements - median[:, None], axis=2) <
                       _MEDIAN_TOLERANCE[0] + _MEDIAN_TOLERANCE[1] * distance)
    for _ in range(2):
        shift, jacobian = _fit_affine(offsets, displacements, support)
        predicted = shift[:, None] + np.einsum('nij,nkj->nki', jacobian, offsets)
        residual = np.linalg.norm(displacements - predicted, axis=2)
        support = valid & (residual < _AFFINE_TOLERANCE[0] + _AFFINE_TOLERANCE[1] * distance)
    shift, jacobian = _fit_affine(offsets, displacements, support)
    found = (support.sum(axis=1) >= _MIN_SUPPORT) & np.isfinite(shift).all(axis=1)
    return points + shift, np.eye(2)[None] + jacobian, found


def _gathered(points: np.ndarray, source: np.ndarray, target: np.ndarray, index: np.ndarray,
              ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The matches around each point (index [N x K], -1 for none): (valid [N x K]; their
    offsets from the point and their displacements, [N x K x 2], meaningless where not
    valid)."""
    valid = index >= 0
    safe = np.where(valid, index, 0)
    return valid, source[safe] - points[:, None], target[safe] - source[safe]


def _fit_affine(offsets: np.ndarray, displacements: np.ndarray, weights: np.ndarray):
    """Least-squares displacement = shift + jacobian @ offset per point, over the neighbours
    where `weights` is True (ridge on the jacobian). Returns shift [N x 2], jacobian [N x 2 x 2]
    (zeros where no neighbour counts)."""
    weights = weights.astype(np.float64)
    design = np.concatenate([np.ones(offsets.shape[:2] + (1,)), offsets], axis=2)  # [N,K,3]
    normal = np.einsum('nk,nki,nkj->nij', weights, design, design)
    normal += np.diag([1e-9, _RIDGE, _RIDGE])
    right = np.einsum('nk,nki,nkj->nij', weights, design, displacements)           # [N,3,2]
    solution = np.linalg.solve(normal, right)
    return solution[:, 0], solution[:, 1:].transpose(0, 2, 1)


def _median(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per row, the median of values [N x K x 2] over the valid [N x K] entries (NaN for rows
    without any), by sorting: np.nanmedian is much slower on small rows."""
    ordered = np.sort(np.where(valid[..., None], values, np.nan), axis=1)  # NaN sort last
    count = valid.sum(axis=1)
    low = np.clip((count - 1) // 2, 0, None)
    high = np.clip(count // 2, 0, values.shape[1] - 1)
    rows = np.arange(len(values))
    median = (ordered[rows, low] + ordered[rows, high]) / 2
    median[count == 0] = np.nan
    return median
