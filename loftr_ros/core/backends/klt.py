"""KLT: Shi-Tomasi corners followed by pyramidal Lucas-Kanade optical flow, from OpenCV.

The front-end of VINS-Mono and VINS-Fusion (their feature_tracker.cpp) as a matcher: image 0's
corners (``cv2.goodFeaturesToTrack``) are followed into image 1 by
``cv2.calcOpticalFlowPyrLK``, then from there back into image 0; a match is kept where both
passes converged, the round trip ends within ``max_backward_error`` pixels of the corner
(VINS's FLOW_BACK check) and the image-1 point lies on image 1. No weights, no network: a few
milliseconds per pair on one CPU core.

What it is for: small motions and short baselines, such as consecutive frames of a camera at
its frame rate or a stereo pair's few centimetres. It has no descriptors, so it cannot match
across wide baselines, strong changes of view or light, nor serve relocalisation or loop
closure: use a learned backend there.

Keypoints: image 0's corners are this backend's keypoints (the Matcher drops those on masked
pixels before matching; the tracker starts tracks on them). Its image-1 points are where
Lucas-Kanade found those corners, not corners of image 1. Lucas-Kanade places them to the
sub-pixel itself, so the default refinement is none. In tracks mode a track therefore rides on
its corner's match into the next frame only; after that the motion field of the matches around
it predicts it (loftr_ros.core.tracking.tracker). Re-attaching it to a corner within 1 px was
tried and changed nothing on the EuRoC stereo sequence (95 frames: the same 9028 stereo
observations, 99.1 % within 1 px of the calibrated geometry, median track length 95 frames).

Each call of ``cv2.calcOpticalFlowPyrLK`` builds both images' pyramids again. They cannot be
built once per image (``cv2.buildOpticalFlowPyramid``) and handed over from Python: OpenCV's
bindings refuse the list ("prevImg is not a numerical tuple", opencv/opencv#4777; still so in
OpenCV 5.0).
"""
import cv2
import numpy as np
import torch

from loftr_ros.core.backends.base import Backend, BackendMatches, empty_matches, gray_uint8
from loftr_ros.core.errors import ConfigError
from loftr_ros.core.settings import Setting

# Valid values of each option, inclusive (the type is the default's).
_RANGES = {
    'max_corners': (0, 1_000_000),
    'quality_level': (1e-6, 1.0),
    'min_distance': (0.0, 10_000.0),
    'block_size': (1, 63),
    'window': (3, 255),
    'levels': (0, 10),
    'iterations': (1, 1000),
    'epsilon': (0.0, 10.0),
    'max_backward_error': (1e-6, 100.0),
}
_EQUALIZE = ('histogram', 'clahe', 'none')


class KLTBackend(Backend):
    """Shi-Tomasi corners of image 0 followed into image 1 by pyramidal Lucas-Kanade, kept by a
    forward-backward check.

    Score of a match: 1 - e / max_backward_error, e the distance in pixels between the corner
    and where the backward pass returned: 1 for an exact round trip, 0 at the limit. A
    confidence threshold t therefore keeps what a max_backward_error of (1 - t) times the
    option's would.
    """

    name = 'klt'
    DEFAULT_CONF = {
        # Grey levels equalized before anything else, so that Lucas-Kanade's brightness
        # constancy holds between two cameras (or frames) of different exposure, as OpenVINS's
        # histogram_method: 'histogram' (cv2.equalizeHist over the whole image, OpenVINS's
        # default), 'clahe' (VINS-Mono's equalize: CLAHE, clip 3, 8x8 tiles) or 'none'
        # (VINS-Fusion's). Measured (test_klt.py's scene moved by a sub-pixel shift; EuRoC
        # stereo pairs, 1000 corners): none is exact where both images have the same exposure
        # (median error 0.008 px) but 0.68 px off when one image is 10 % darker, and keeps 191
        # correct matches per EuRoC pair (95.7 % within 1 px of the epipolar line; the right
        # camera is darker); histogram costs 0.06 px of noise either way and keeps 500
        # (97.7 %); clahe's tiles differ between views (0.4 px, 451 at 95.9 %).
        'equalize': 'histogram',
        # Corners per image, strongest first; 0 = no limit. On 12 EuRoC stereo pairs
        # (benchmarks/choose_cpu_realtime.py, rows T1-T4; results in
        # benchmarks/results/bench_node_cpu.md) the share within 1 px of the true epipolar line
        # stays at 97-98 % from 300 to 2000 corners, while the correct matches per pair grow
        # with them (152, 247, 494, 1000) and the time per pair less (60, 75, 87, 144 ms on
        # the loaded machine; xfeat's defaults: 949 correct matches in 3206 ms): 1000 keeps
        # half of the xfeat default's correct matches at 0.03x its time.
        'max_corners': 1000,
        # A corner's smaller structure-tensor eigenvalue must be at least this fraction of the
        # image's strongest (goodFeaturesToTrack's qualityLevel). VINS's 0.01 leaves fewer than
        # half the corners on EuRoC's equalized images (425 against 1033 matches per stereo
        # pair at 2000 corners, 7 px apart), at 98.6 % against 97.8 % within 1 px.
        'quality_level': 0.001,
        # Minimum distance between two corners, pixels (VINS tracks 150 features 30 px apart;
        # a matcher wants more of them): 1000 corners 10 px apart cover a 752x480 image.
        'min_distance': 10.0,
        # Side of the neighbourhood the structure tensor sums over, pixels (OpenCV's default).
        'block_size': 3,
        # Side of the Lucas-Kanade window at each pyramid level, pixels (VINS's 21).
        'window': 21,
        # Pyramid levels above the image, 0 = the image only (VINS's 3: with a 21 px window it
        # follows motions of several tens of pixels, such as a stereo pair's disparities).
        'levels': 3,
        # Lucas-Kanade stops at each level after this many iterations or once a step is below
        # epsilon pixels (OpenCV's defaults, as VINS).
        'iterations': 30,
        'epsilon': 0.01,
        # Forward-backward check: the most a corner followed into image 1 and back may miss
        # itself, pixels (VINS's 0.5).
        'max_backward_error': 0.5,
    }
    # The forward-backward check is this backend's filter (a score is the share of
    # max_backward_error left unused): no further cut by default, so that the option alone
    # decides.
    default_confidence_threshold = 0.0
    # Corners, not a network: any size, no resizing, OpenCV's grey of the uint8 image.
    stride = 1
    default_resize = 0
    grayscale = True
    default_refinement = 'none'

    def __init__(self, weights, options, device, dtype):
        super().__init__(weights, options, device, dtype)
        if weights:
            msg = f"klt backend: has no weights; leave 'weights' empty (got '{weights}')"
            raise ConfigError(msg)
        equalize = self.choice_option('equalize', _EQUALIZE)
        self.equalize = {'histogram': cv2.equalizeHist, 'none': lambda gray: gray,
                         'clahe': cv2.createCLAHE(3.0, (8, 8)).apply}[equalize]
        for key, value_range in _RANGES.items():
            kind = type(self.DEFAULT_CONF[key])
            reason = Setting('', value_range=value_range, kind=kind).check(key, self.conf[key])
            if reason:
                raise ConfigError(f'klt backend: {reason}')
        window = self.conf['window']
        self.flow = {'winSize': (window, window), 'maxLevel': self.conf['levels'],
                     'criteria': (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS,
                                  self.conf['iterations'], self.conf['epsilon'])}

    def extract(self, image: torch.Tensor):
        """{'image': the HxW uint8 grey image (equalized), 'corners': its corners [N x 2]
        float32, strongest first}."""
        gray = self.equalize(gray_uint8(image))
        corners = cv2.goodFeaturesToTrack(
            gray, self.conf['max_corners'], self.conf['quality_level'],
            self.conf['min_distance'], blockSize=self.conf['block_size'])
        corners = (np.zeros((0, 2), np.float32) if corners is None
                   else corners.reshape(-1, 2).astype(np.float32))
        return {'image': gray, 'corners': corners}

    def keypoints(self, features):
        return features['corners']

    def select_keypoints(self, features, keep):
        return {'image': features['image'], 'corners': features['corners'][keep]}

    def match(self, image0, image1, confidence_threshold) -> BackendMatches:
        corners = image0.features['corners']
        if len(corners) == 0:
            return empty_matches()
        gray0, gray1 = _same_size(image0.features['image'], image1.features['image'])
        forward, found, _ = cv2.calcOpticalFlowPyrLK(gray0, gray1, corners, None, **self.flow)
        found = found.reshape(-1).astype(bool)
        corners, forward = corners[found], forward[found]
        if len(corners) == 0:
            return empty_matches()
        backward, returned, _ = cv2.calcOpticalFlowPyrLK(gray1, gray0, forward, None,
                                                         **self.flow)
        error = np.linalg.norm(backward - corners, axis=1)
        limit = self.conf['max_backward_error']
        keep = (returned.reshape(-1).astype(bool) & (error <= limit) &
                image1.transform.inside(forward))
        return BackendMatches(corners[keep], forward[keep],
                              (1.0 - error[keep] / limit).astype(np.float32))


def _same_size(gray0: np.ndarray, gray1: np.ndarray):
    """Both images padded with zeros on the right and bottom to the larger size (Lucas-Kanade
    takes equal sizes; coordinates do not move)."""
    height = max(gray0.shape[0], gray1.shape[0])
    width = max(gray0.shape[1], gray1.shape[1])
    return tuple(cv2.copyMakeBorder(gray, 0, height - gray.shape[0], 0, width - gray.shape[1],
                                    cv2.BORDER_CONSTANT, value=0)
                 for gray in (gray0, gray1))
