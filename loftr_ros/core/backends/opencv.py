"""SIFT or ORB with nearest-neighbour matching: no weights, no GPU, a baseline for the others."""
import cv2
import numpy as np
import torch

from loftr_ros.core.backends.base import Backend, BackendMatches, empty_matches, gray_uint8
from loftr_ros.core.errors import ConfigError

_DETECTORS = ('sift', 'orb')


class OpenCVBackend(Backend):
    """SIFT (float descriptors, L2) or ORB (binary, Hamming) keypoints matched by nearest
    neighbour with Lowe's ratio test and/or a mutual (cross) check.

    Score of a match: 1 - d1/d2 (d1, d2: distances to the nearest and second-nearest
    descriptor in image 1), so a ratio test at `ratio` equals a confidence threshold at
    1 - ratio; with too few candidates for a second neighbour the score is 1.
    """

    name = 'opencv'
    # Chosen by measurement: benchmarks/results/choose_defaults_cpu.md (EuRoC stereo, synthetic
    # sequence, homographies of photos; rows O1-O15).
    DEFAULT_CONF = {
        # 'sift' or 'orb'. SIFT: the better pose AUC (O5 against O11) and sub-pixel keypoints
        # (ORB needs the refinement); ORB is 2x faster at 2048 keypoints (O8).
        'detector': 'sift',
        # Per image, strongest first; 0 = no limit (SIFT only). SIFT rarely finds more than
        # 1000 in a VGA image, but 1024 loses a third of the correct matches on the hard pairs
        # (O2 against O5).
        'max_keypoints': 4096,
        # Lowe's ratio test d1/d2 < ratio, 1.0 disables it. Lowe's 0.8: 0.7 trades 3 % of the
        # correct matches on the hard pairs for precision, 0.9 gains 2 % for 2-6 points more
        # outliers; 0.8 has the best pose AUC of the three (O4-O6).
        'ratio': 0.8,
        'cross_check': True,  # keep only mutual nearest neighbours
    }
    # The ratio test is this backend's filter (a score is 1 - ratio): no further cut by
    # default, so that `ratio` alone decides.
    default_confidence_threshold = 0.0

    def __init__(self, weights, options, device, dtype):
        super().__init__(weights, options, device, dtype)
        detector = self.choice_option('detector', _DETECTORS)
        if not 0.0 < self.conf['ratio'] <= 1.0:
            msg = f"opencv backend: ratio must be in (0, 1], got {self.conf['ratio']}"
            raise ConfigError(msg)
        if self.conf['max_keypoints'] < 0:
            msg = f"opencv backend: max_keypoints must be >= 0, got {self.conf['max_keypoints']}"
            raise ConfigError(msg)
        # SIFT localizes its keypoints to sub-pixel precision itself, ORB on whole pixels.
        self.default_refinement = 'ncc' if detector == 'orb' else 'none'
        if detector == 'sift':
            self.detector = cv2.SIFT_create(nfeatures=self.conf['max_keypoints'])
            self.norm = cv2.NORM_L2
        else:
            # ORB needs an explicit cap; 0 would mean "none" for SIFT but is invalid here.
            self.detector = cv2.ORB_create(nfeatures=self.conf['max_keypoints'] or 4096)
            self.norm = cv2.NORM_HAMMING
        self.matcher = cv2.BFMatcher(self.norm)

    @property
    def model_name(self) -> str:
        return f"opencv:{self.conf['detector']}"

    def extract(self, image: torch.Tensor):
        """Keypoints [N x 2] float32 and descriptors (None when there are no keypoints)."""
        gray = gray_uint8(image)
        keypoints, descriptors = self.detector.detectAndCompute(gray, None)
        points = np.array([k.pt for k in keypoints], np.float32).reshape(-1, 2)
        return {'keypoints': points, 'descriptors': descriptors}

    def keypoints(self, features):
        return features['keypoints']

    def select_keypoints(self, features, keep):
        descriptors = features['descriptors']
        if descriptors is not None and keep.any():
            descriptors = descriptors[keep]
        else:
            descriptors = None  # as extract gives for an image without keypoints
        return {'keypoints': features['keypoints'][keep], 'descriptors': descriptors}

    def match(self, image0, image1, confidence_threshold) -> BackendMatches:
        features0, features1 = image0.features, image1.features
        descriptors0, descriptors1 = features0['descriptors'], features1['descriptors']
        if descriptors0 is None or descriptors1 is None:
            return empty_matches()
        neighbours = self.matcher.knnMatch(descriptors0, descriptors1, k=2)
        index0, index1, scores = [], [], []
        for candidates in neighbours:
            if not candidates:
                continue
            best = candidates[0]
            if len(candidates) > 1 and candidates[1].distance > 0:
                ratio = best.distance / candidates[1].distance
            else:
                ratio = 0.0
            if ratio >= self.conf['ratio'] and self.conf['ratio'] < 1.0:
                continue
            index0.append(best.queryIdx)
            index1.append(best.trainIdx)
            scores.append(1.0 - ratio)
        index0 = np.asarray(index0, np.int64)
        index1 = np.asarray(index1, np.int64)
        scores = np.asarray(scores, np.float32)
        if self.conf['cross_check'] and len(index0):
            backward = self.matcher.match(descriptors1, descriptors0)
            best_in_0 = np.full(len(descriptors1), -1, np.int64)
            for m in backward:
                best_in_0[m.queryIdx] = m.trainIdx
            mutual = best_in_0[index1] == index0
            index0, index1, scores = index0[mutual], index1[mutual], scores[mutual]
        return BackendMatches(features0['keypoints'][index0], features1['keypoints'][index1],
                              scores)
