"""When to replace the keyframe in consecutive-frame matching.

Matching every frame against a keyframe (instead of the previous frame) keeps drift out of the
correspondences while the camera stays near it; once the view has moved on, too few matches or
too little overlap remain and the current frame becomes the new keyframe.
"""
from dataclasses import dataclass

import cv2
import numpy as np

from loftr_ros.core.errors import ConfigError
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
    # The keyframe is replaced when fewer (inlier) matches than this remain.
    min_matches: int = 100
    # ... or when the matched keypoints cover less than this fraction of the current image.
    min_overlap: float = 0.5

    def __post_init__(self):
        if self.min_matches < 0:
            raise ConfigError(f'min_matches must be >= 0, got {self.min_matches}')
        if not 0.0 <= self.min_overlap <= 1.0:
            raise ConfigError(f'min_overlap must be in [0, 1], got {self.min_overlap}')

    def should_replace(self, result: MatchResult) -> bool:
        """True when the current frame of `result` should become the keyframe."""
        return result.num_inliers < self.min_matches or overlap_fraction(result) < self.min_overlap
