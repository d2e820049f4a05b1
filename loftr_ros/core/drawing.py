"""Pictures of match results for people: side-by-side matches, a flow view, feature tracks.

Only tools, the node's debug image and reports use this module; no model code imports it.
Coordinates are drawn with 4 fractional bits (cv2 ``shift``), so sub-pixel keypoints land where
they are.
"""
from typing import Mapping

import cv2
import numpy as np

from loftr_ros.core.types import MatchResult

_SHIFT = 4
_ONE = 1 << _SHIFT
# Colour of matches that geometric verification rejected (BGR).
_OUTLIER_COLOUR = (150, 150, 150)


def to_display(image: np.ndarray) -> np.ndarray:
    """Any image the matcher accepts (HxW, HxWx1/3/4 BGR(A); uint8, uint16, float in [0, 1])
    as HxWx3 uint8 BGR for drawing."""
    if image.dtype == np.uint16:
        image = (image // 257).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = (np.clip(np.nan_to_num(image), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(image)


def confidence_colour(score: float):
    """BGR colour for a confidence in [0, 1]: red (low) through yellow to green (high)."""
    score = float(np.clip(score, 0.0, 1.0))
    red = 255 * min(1.0, 2.0 * (1.0 - score))
    green = 255 * min(1.0, 2.0 * score)
    return (0, int(green), int(red))


def _fixed(point):
    return int(round(point[0] * _ONE)), int(round(point[1] * _ONE))


def _drawn_indices(result: MatchResult, max_lines: int) -> np.ndarray:
    """Which matches to draw: the best `max_lines` by score (results are sorted), drawn worst
    first so that the confident ones stay on top."""
    return np.arange(min(len(result), max_lines))[::-1]


def draw_matches(image0: np.ndarray, image1: np.ndarray, result: MatchResult,
                 max_lines: int = 300) -> np.ndarray:
    """Image 0 and image 1 side by side (HxWx3 uint8 BGR) with a line per match, coloured by
    confidence; matches rejected by geometric verification are grey."""
    left, right = to_display(image0), to_display(image1)
    height = max(left.shape[0], right.shape[0])
    canvas = np.zeros((height, left.shape[1] + right.shape[1], 3), np.uint8)
    canvas[:left.shape[0], :left.shape[1]] = left
    canvas[:right.shape[0], left.shape[1]:] = right
    offset = np.array([left.shape[1], 0.0])
    for index in _drawn_indices(result, max_lines):
        inlier = result.inliers is None or result.inliers[index]
        colour = confidence_colour(result.scores[index]) if inlier else _OUTLIER_COLOUR
        start = _fixed(result.keypoints0[index])
        end = _fixed(result.keypoints1[index] + offset)
        cv2.line(canvas, start, end, colour, 1, cv2.LINE_AA, _SHIFT)
        cv2.circle(canvas, start, 2 * _ONE, colour, 1, cv2.LINE_AA, _SHIFT)
        cv2.circle(canvas, end, 2 * _ONE, colour, 1, cv2.LINE_AA, _SHIFT)
    return canvas


def draw_flow(image1: np.ndarray, result: MatchResult, max_lines: int = 500) -> np.ndarray:
    """Image 1 (HxWx3 uint8 BGR) with, per match, a line from where the point was in image 0
    to where it is now and a dot at its current position, coloured by confidence."""
    canvas = to_display(image1).copy()
    for index in _drawn_indices(result, max_lines):
        inlier = result.inliers is None or result.inliers[index]
        colour = confidence_colour(result.scores[index]) if inlier else _OUTLIER_COLOUR
        start = _fixed(result.keypoints0[index])
        end = _fixed(result.keypoints1[index])
        cv2.line(canvas, start, end, colour, 1, cv2.LINE_AA, _SHIFT)
        cv2.circle(canvas, end, 2 * _ONE, colour, -1, cv2.LINE_AA, _SHIFT)
    return canvas


def id_colour(track_id: int):
    """A bright BGR colour of its own for a track id (hues 47 degrees apart, so that
    neighbouring ids differ)."""
    hue = np.uint8([[[(int(track_id) * 47) % 180, 255, 255]]])
    return tuple(int(value) for value in cv2.cvtColor(hue, cv2.COLOR_HSV2BGR)[0, 0])


def draw_tracks(image: np.ndarray, trails: Mapping[int, np.ndarray]) -> np.ndarray:
    """The image (HxWx3 uint8 BGR) with each track's trail, coloured by its id: trails maps an
    id to its positions [K x 2], oldest first; a dot marks the last (current) one."""
    canvas = to_display(image).copy()
    for track_id, trail in trails.items():
        colour = id_colour(track_id)
        points = np.round(np.asarray(trail) * _ONE).astype(np.int32)
        if len(points) > 1:
            cv2.polylines(canvas, [points.reshape(-1, 1, 2)], False, colour, 1, cv2.LINE_AA,
                          _SHIFT)
        cv2.circle(canvas, tuple(int(v) for v in points[-1]), 2 * _ONE, colour, -1,
                   cv2.LINE_AA, _SHIFT)
    return canvas
