"""Any Hugging Face keypoint-matching model (EfficientLoFTR, LightGlue, SuperGlue) through
transformers' ``AutoModelForKeypointMatching``.

The model is fed the Matcher's tensors directly (the image processor's resizing would move
coordinates outside our exact mapping), and the keypoints are read from the model output as
floats: transformers' ``post_process_keypoint_matching`` casts them to int32, throwing away the
sub-pixel refinement, so its pairing logic is reproduced here without the cast.
"""
import torch

from loftr_ros.core.backends import import_optional
from loftr_ros.core.backends.base import Backend, BackendMatches
from loftr_ros.core.errors import WeightsError
from loftr_ros.core.weights import resolve_weights

DEFAULT_MODEL = 'zju-community/efficientloftr'
# Model types whose keypoints lie in a frame where the centre of pixel (x, y) is at
# (x + 0.5, y + 0.5): the LoFTR family puts coarse cell i at 8 * i in the corner-based frame it
# was trained in (see kornia's LoFTR docstring). Detector-based models (SuperPoint keypoints of
# LightGlue/SuperGlue) use pixel indices, i.e. our frame.
_CORNER_FRAME_MODEL_TYPES = ('efficientloftr',)
# Where each model type keeps the score threshold it filters its matches by (transformers 5.x;
# the model compares with `>` the very score it returns as matching_scores, and reads it at each
# call), on the model or on its config:
# - efficientloftr (EfficientLoFTR, MatchAnything-ELoFTR): config.coarse_matching_threshold,
#   default 0.2 (configuration_efficientloftr.py), the coarse-match mask in
#   EfficientLoFTRForKeypointMatching;
# - lightglue: filter_threshold, copied from config.filter_threshold (default 0.1,
#   configuration_lightglue.py) by LightGlueForKeypointMatching.__init__ and passed to
#   get_matches_from_scores;
# - superglue: config.matching_threshold, default 0.0 (configuration_superglue.py).
# The image processors' post_process_keypoint_matching adds no cut of its own: its threshold
# defaults to 0.0 for all three. So the library's threshold is the loaded model's value (a
# checkpoint's config.json may set another), and it is this backend's
# default_confidence_threshold; a model type not listed filters nothing itself (0.0, as the
# post-processing).
_MODEL_THRESHOLDS = {'efficientloftr': ('config', 'coarse_matching_threshold'),
                     'lightglue': ('model', 'filter_threshold'),
                     'superglue': ('config', 'matching_threshold')}


class HuggingFaceBackend(Backend):
    name = 'hf'
    DEFAULT_CONF = {}
    # EfficientLoFTR's coarse level is at 1/8 and its attention aggregates 4x4 coarse cells.
    stride = 32
    # The image processors' default size is 640x480, to which they resample every image
    # whatever its aspect; here the long side is brought to 640 (aspect kept) and padded to 32.
    # Not measured: no trained weights are reachable here.
    default_resize = 640
    # The image processors convert colour to grey themselves, with the NTSC weights
    # (convert_to_grayscale: 0.2989 R + 0.5870 G + 0.1140 B, leaving an image whose channels
    # are equal as it is) and replicate it into 3 channels; `_processor_grey` does the same.
    grayscale = False

    def __init__(self, weights, options, device, dtype):
        super().__init__(weights, options, device, dtype)
        self.weights = weights or DEFAULT_MODEL
        # Weights first: a missing model fails before the slow import of transformers.
        path = resolve_weights(weights, DEFAULT_MODEL, self.name)
        transformers = import_optional('transformers', self.name)

        try:
            self.model = transformers.AutoModelForKeypointMatching.from_pretrained(str(path))
        except (OSError, ValueError, KeyError) as error:
            msg = f"backend 'hf': cannot load a keypoint-matching model from {path}: {error}"
            raise WeightsError(msg) from None
        model_config = self.model.config
        owner, self._threshold_name = _MODEL_THRESHOLDS.get(model_config.model_type,
                                                            (None, None))
        self._threshold_owner = {'config': model_config, 'model': self.model}.get(owner)
        self.default_confidence_threshold = (
            float(getattr(self._threshold_owner, self._threshold_name))
            if self._threshold_owner is not None else 0.0)
        corner_frame = model_config.model_type in _CORNER_FRAME_MODEL_TYPES
        self.frame_offset = 0.5 if corner_frame else 0.0
        # The LoFTR family refines its matches itself; SuperPoint keypoints sit on whole pixels.
        self.default_refinement = 'none' if corner_frame else 'ncc'
        self.model.to(device).eval()

    @property
    def model_name(self) -> str:
        return f'hf:{self.weights}'

    def pixel_values(self, image0, image1) -> torch.Tensor:
        """[1 x 2 x 3 x H x W]: the pair as the image processor gives it to the model (grey
        replicated into 3 channels). The pair is one tensor: the smaller image is padded
        further (right/bottom)."""
        height = max(image0.tensor.shape[-2], image1.tensor.shape[-2])
        width = max(image0.tensor.shape[-1], image1.tensor.shape[-1])
        pair = torch.zeros((1, 2, 3, height, width), device=self.device)
        for index, image in enumerate((image0, image1)):
            grey = _processor_grey(image.tensor[0])
            pair[0, index, :, :grey.shape[-2], :grey.shape[-1]] = grey
        return pair

    def match(self, image0, image1, confidence_threshold) -> BackendMatches:
        if self._threshold_owner is not None:
            # The model keeps only matches above its threshold (see _MODEL_THRESHOLDS), the
            # Matcher's test on the same score: a lower threshold than the model's must reach
            # it, or the matches it dropped could not come back.
            setattr(self._threshold_owner, self._threshold_name, float(confidence_threshold))
        pair = self.pixel_values(image0, image1)
        height, width = pair.shape[-2:]
        outputs = self.model(pixel_values=pair)
        keypoints = outputs.keypoints[0].float() * torch.tensor([width, height],
                                                                device=self.device)
        matches, scores = outputs.matches[0], outputs.matching_scores[0]
        mask = getattr(outputs, 'mask', None)
        if mask is None:
            # EfficientLoFTR: each side lists its matched keypoints where its entry of `matches`
            # is not -1; the n-th of side 0 pairs with the n-th of side 1, exactly as
            # EfficientLoFTRImageProcessor.post_process_keypoint_matching pairs them.
            valid0, valid1 = matches[0] > -1, matches[1] > -1
            return BackendMatches(keypoints[0][valid0], keypoints[1][valid1], scores[0][valid0])
        # LightGlue/SuperGlue: keypoints per image (mask marks the real ones), matches[0] indexes
        # image 1's keypoints.
        mask = mask[0]
        keypoints0 = keypoints[0][mask[0] > 0]
        keypoints1 = keypoints[1][mask[1] > 0]
        matches0 = matches[0][mask[0] > 0]
        scores0 = scores[0][mask[0] > 0]
        valid = (matches0 > -1) & (matches0 < len(keypoints1))
        return BackendMatches(keypoints0[valid], keypoints1[matches0[valid]], scores0[valid])


def _processor_grey(image: torch.Tensor) -> torch.Tensor:
    """[1 x H x W] grey of a [C x H x W] model input as transformers' image processors compute it
    (``convert_to_grayscale``): the NTSC weights on an RGB image, an image with one channel or
    three equal ones unchanged."""
    if image.shape[0] == 1 or (torch.equal(image[0], image[1]) and
                               torch.equal(image[1], image[2])):
        return image[:1]
    return (image[0] * 0.2989 + image[1] * 0.5870 + image[2] * 0.1140)[None]
