"""Geometric verification of matches with OpenCV's USAC (MAGSAC++): fundamental matrix,
essential matrix (calibrated, undistorted points) or homography, giving an inlier mask."""
from typing import Optional, Tuple

import cv2
import numpy as np

from loftr_ros.core.camera import CameraModel

# Fewest matches each model can be estimated from with USAC.
MIN_MATCHES = {'fundamental': 8, 'essential': 5, 'homography': 4}
MAX_ITERATIONS = 10000


def verify_matches(keypoints0: np.ndarray, keypoints1: np.ndarray, model: str,
                   threshold: float = 1.0, confidence: float = 0.999,
                   camera0: Optional[CameraModel] = None,
                   camera1: Optional[CameraModel] = None,
                   ) -> Tuple[Optional[np.ndarray], str]:
    """Inlier mask ([N] uint8) of the matches under `model` and the model actually used.

    model: 'none', 'fundamental', 'essential' or 'homography'. 'essential' needs both cameras;
        without them it falls back to 'fundamental'. With them the points are undistorted and
        normalized (CameraModel.normalize) and `threshold` (pixels) is divided by the mean focal
        length.
    Returns (None, '') for 'none', and (None, model) when there are too few matches to estimate
    the model. A model that cannot be estimated from enough matches (degenerate configuration)
    gives all zeros.
    """
    if model == 'none':
        return None, ''
    if model == 'essential' and (camera0 is None or camera1 is None):
        model = 'fundamental'
    if len(keypoints0) < MIN_MATCHES[model]:
        return None, model
    points0 = np.asarray(keypoints0, np.float64).reshape(-1, 2)
    points1 = np.asarray(keypoints1, np.float64).reshape(-1, 2)
    if model == 'fundamental':
        _, mask = cv2.findFundamentalMat(points0, points1, cv2.USAC_MAGSAC, threshold,
                                         confidence, MAX_ITERATIONS)
    elif model == 'homography':
        _, mask = cv2.findHomography(points0, points1, cv2.USAC_MAGSAC, threshold,
                                     maxIters=MAX_ITERATIONS, confidence=confidence)
    else:
        normalized0 = camera0.normalize(points0)
        normalized1 = camera1.normalize(points1)
        focal = (camera0.focal + camera1.focal) / 2
        _, mask = cv2.findEssentialMat(normalized0, normalized1, np.eye(3), cv2.USAC_MAGSAC,
                                       confidence, threshold / focal, MAX_ITERATIONS)
    if mask is None:
        return np.zeros(len(points0), np.uint8), model
    return (mask.ravel() != 0).astype(np.uint8), model
