"""When to replace the keyframe in consecutive-frame matching.

Matching every frame against a keyframe (instead of the previous frame) keeps drift out of the
correspondences while the camera stays near it; once the view has moved on, too few matches or
too little overlap remain and the current frame becomes the new keyframe.
"""
from dataclasses import dataclass

import cv2
import numpy as np

from loftr_ros.core.settings import check_fields, setting
from loftr_ros.core.types import MatchResult


def overlap_fraction(result: MatchResult) -> float:
    """Fraction of the current image covered by the convex hull of its matched keypoints
    (inliers only when verification ran): how much of the view the keyframe still explains."""
    points = result.keypoints1
    if result.inliers is not None:
        points = points[result.inliers.astype(bool)]
    width, height = result.image_size1
    if len(points) < 3 or width <= 0 or height <= 0:
        return 0.0
    hull = cv2.convexHull(np.ascontiguousarray(points, np.float32))
    return float(min(1.0, cv2.contourArea(hull) / (width * height)))


@dataclass(frozen=True)
class KeyframePolicy:
    """When the keyframe is replaced (the node's ``keyframe.*`` parameters, declared here)."""

    min_matches: int = setting(
        100, 'Replace the keyframe when fewer (inlier) matches remain.',
        value_range=(0, 1_000_000), runtime=True)
    min_overlap: float = setting(
        0.5, 'Replace the keyframe when the matches cover less than this fraction of the '
        'current image.', value_range=(0.0, 1.0), runtime=True)

    def __post_init__(self):
        check_fields(self)

    def should_replace(self, result: MatchResult) -> bool:
        """True when the current frame of `result` should become the keyframe."""
        return result.num_inliers < self.min_matches or overlap_fraction(result) < self.min_overlap
