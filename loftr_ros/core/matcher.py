"""The matching engine: one API over every backend, usable without ROS.

    matcher = Matcher(MatcherConfig(backend='xfeat'))
    result = matcher.match(image0, image1)          # numpy arrays or PreparedImage objects
    frame = matcher.prepare(image)                   # per-image features, reusable across pairs
    left, right = matcher.prepare_batch([image0, image1])  # same-size images as one batch

See :mod:`loftr_ros.core.backends.base` for what a backend does and what the Matcher does
around it (conversion, resize, padding, mapping back, thresholds, verification).

Masks (:mod:`loftr_ros.core.masks`, nonzero = usable): a static one given to the Matcher applies
to every image, a dynamic one to the image it is prepared with. No keypoint or match lies in a
masked pixel: a detector's keypoints there are dropped before matching (so that they cannot take
a partner from a usable keypoint), and the matches of every backend are filtered once they are
in original pixels, after the sub-pixel refinement has moved them.
"""
import contextlib
import dataclasses
import time
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch

from loftr_ros.core.backends import backend_class
from loftr_ros.core.backends.base import PreparedImage
from loftr_ros.core.camera import CameraModel
from loftr_ros.core.config import RUNTIME_FIELDS, MatcherConfig
from loftr_ros.core.devices import resolve_device, resolve_dtype
from loftr_ros.core.errors import ConfigError, ImageError
from loftr_ros.core.geometry import verify_matches
from loftr_ros.core.masks import as_usable, combine, usable_points
from loftr_ros.core.onnx_runtime import CPU, choose_providers
from loftr_ros.core.preprocessing import (ImageTransform, image_size, normalize_image,
                                          resize_and_pad)
from loftr_ros.core.refinement import NCCRefinement
from loftr_ros.core.types import MatchResult

ImageInput = Union[np.ndarray, PreparedImage]

# Size (width, height) of the pair matched at load to warm the backend up.
WARMUP_SIZE = (640, 480)


def _as_numpy(values, columns: Optional[int] = None) -> np.ndarray:
    """A backend's tensor or array as float64 numpy (keeping sub-pixel precision)."""
    if isinstance(values, torch.Tensor):
        values = values.detach().to('cpu', torch.float64).numpy()
    values = np.asarray(values, np.float64)
    return values.reshape(-1, columns) if columns else values.reshape(-1)


def warmup_images(size=WARMUP_SIZE):
    """A pair that runs every stage of every backend: two views, 3 and 5 px apart, of a random
    texture with detail at several scales, in which each detector finds keypoints and each
    matcher matches them (on a blocky texture XFeat found none, which left LighterGlue and the
    refinement to the first real pair). Image 0 is BGR and image 1 mono, so that the models
    that take colour also meet both kinds of input. Deterministic; `size` is (width, height)."""
    width, height = size
    rng = np.random.default_rng(0)
    texture = np.zeros((height + 8, width + 8, 3), np.float32)
    for sigma in (1.0, 2.5, 6.0, 15.0):
        noise = rng.standard_normal(texture.shape).astype(np.float32)
        texture += cv2.GaussianBlur(noise, (0, 0), sigma) * sigma
    texture = cv2.normalize(texture, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return (np.ascontiguousarray(texture[:height, :width]),
            cv2.cvtColor(texture[5:height + 5, 3:width + 3], cv2.COLOR_BGR2GRAY))


def _build_backend(config: MatcherConfig):
    """The backend of `config`: on its device in its precision (runtime torch), or on the ONNX
    Runtime providers it lists (runtime onnxruntime)."""
    backend = backend_class(config.backend, config.runtime)
    if config.runtime == 'onnxruntime':
        providers = choose_providers(config.providers, config.device, config.precision,
                                     config.provider_fallback)
        return backend(config.weights, config.options, providers, config.provider_fallback)
    device = resolve_device(config.device)
    return backend(config.weights, config.options, device,
                   resolve_dtype(config.precision, device, backend.cpu_bf16))


class _ModelInput(NamedTuple):
    tensor: torch.Tensor
    transform: ImageTransform
    gray: np.ndarray
    usable: Optional[np.ndarray]
    seconds: float


class Matcher:
    """Builds the backend of a MatcherConfig and matches image pairs.

    mask: static mask (HxW uint8 or bool, nonzero = usable) applied to every image, which must
        then all have its size (see :func:`loftr_ros.core.masks.load_mask` for a file).
    Raises ConfigError (invalid device/precision/options or mask), BackendError (missing
    package) or WeightsError (weights not found or not loadable) when built.
    """

    def __init__(self, config: MatcherConfig, mask: Optional[np.ndarray] = None):
        self._config = config
        try:
            self.mask = None if mask is None else as_usable(mask, 'static mask')
        except ImageError as error:
            raise ConfigError(str(error)) from None
        if config.threads:  # before the backend: ONNX Runtime sessions take torch's count
            torch.set_num_threads(config.threads)
        self.backend = _build_backend(config)
        resize = config.resize if config.resize >= 0 else self.backend.default_resize
        self.long_side = resize
        refinement = (self.backend.default_refinement if config.refinement == 'auto'
                      else config.refinement)
        self.refinement = NCCRefinement() if refinement == 'ncc' else None
        if config.warmup:
            self.warm_up(self.backend.warmup_sizes(WARMUP_SIZE, self.long_side))

    def warm_up(self, sizes: Sequence[Tuple[int, int]] = (WARMUP_SIZE,)):
        """Match a warm-up pair of each (width, height) size through every stage, so that the
        first real pair of that size does not pay the first-call costs (oneDNN creates its
        kernels per input shape, ONNX Runtime its sessions and TensorRT its engines, CUDA
        loads its kernels). Done at load when config.warmup is set (640x480, or the sizes of
        the cached ONNX graphs); call it again with a camera's size when it is known before
        its first frame. The static mask, made for the camera's size, does not apply to these
        pairs."""
        static_mask, self.mask = self.mask, None
        try:
            for size in sizes:
                self.match(*warmup_images(size))
        finally:
            self.mask = static_mask

    @property
    def config(self) -> MatcherConfig:
        """The settings in force: their only copy, read at each match (the backend is given
        what it needs with each call)."""
        return self._config

    @config.setter
    def config(self, config: MatcherConfig):
        """Change the settings that apply per match (``RUNTIME_FIELDS``, e.g. from ``ros2 param
        set``); the next match uses them. Any other change needs a new Matcher: ConfigError."""
        fixed = [name for name in config.differences(self._config) if name not in RUNTIME_FIELDS]
        if fixed:
            msg = (f"{', '.join(fixed)} cannot change while the matcher runs (only "
                   f"{', '.join(RUNTIME_FIELDS)} can); build a new Matcher")
            raise ConfigError(msg)
        self._config = config

    @property
    def device(self) -> torch.device:
        """Where the model runs (onnxruntime: cuda:N on the CUDA and TensorRT providers)."""
        return self.backend.device

    @property
    def dtype(self) -> torch.dtype:
        return self.backend.dtype

    @property
    def confidence_threshold(self) -> float:
        """The score threshold in force: config.confidence_threshold, or the backend's
        default_confidence_threshold when it is -1."""
        return self._resolved_threshold(self._config)

    def _resolved_threshold(self, config: MatcherConfig) -> float:
        threshold = config.confidence_threshold
        return self.backend.default_confidence_threshold if threshold < 0 else threshold

    @property
    def model_name(self) -> str:
        """What the Matches.model field reports, e.g. 'xfeat' or
        'eloftr:zju-community/efficientloftr'."""
        return self.backend.model_name

    def _model_context(self):
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def prepare(self, image: np.ndarray, mask: Optional[np.ndarray] = None) -> PreparedImage:
        """Validate and preprocess one image and compute its per-image features.

        image: HxW mono or HxWx3 BGR, uint8/uint16/float32/float64 (floats in [0, 1]).
        mask: this image's dynamic mask (HxW uint8 or bool, nonzero = usable), combined with
            the static one.
        Raises ImageError for an empty image, a wrong shape or channel count, NaN/inf values or
        an unsupported dtype; ImageTooLargeError above config.max_image_pixels; MaskError (an
        ImageError) for a mask of another size than the image. Its `timings` hold the seconds
        spent ('preprocess', 'model').
        """
        return self.prepare_batch([image], [mask])[0]

    def prepare_batch(self, images: Sequence[np.ndarray],
                      masks: Optional[Sequence[Optional[np.ndarray]]] = None
                      ) -> List[PreparedImage]:
        """`prepare` for several images, whose per-image stage runs as one batch for the images
        of one model input size where the backend can batch (the left and right images of a
        stereo pair): each PreparedImage holds what `prepare` gives for its image, within float
        rounding (a detector's keypoints may come in another order). Each one's timings hold
        its own preprocessing and an equal share of its batch's model time. masks: each image's
        dynamic mask or None (see `prepare`)."""
        masks = [None] * len(images) if masks is None else list(masks)
        if len(masks) != len(images):
            raise ValueError(f'{len(masks)} masks for {len(images)} images')
        inputs = [self._model_input(image, mask) for image, mask in zip(images, masks)]
        batches: Dict[Tuple[int, ...], List[int]] = {}
        for index, model_input in enumerate(inputs):
            batches.setdefault(tuple(model_input.tensor.shape), []).append(index)
        prepared: List[Optional[PreparedImage]] = [None] * len(images)
        for indices in batches.values():
            start = time.perf_counter()
            batch = torch.cat([inputs[index].tensor for index in indices])
            with torch.inference_mode(), self._model_context():
                features = (self.backend.extract_batch(batch) if len(indices) > 1
                            else [self.backend.extract(batch)])
            share = (time.perf_counter() - start) / len(indices)
            for index, feature in zip(indices, features):
                tensor, transform, gray, usable, seconds = inputs[index]
                if usable is not None:
                    feature = self._drop_masked_keypoints(feature, transform, usable)
                prepared[index] = PreparedImage(tensor, transform, feature, id(self), gray,
                                                {'preprocess': seconds, 'model': share}, usable)
        return prepared

    def _model_input(self, image: np.ndarray, mask: Optional[np.ndarray]) -> '_ModelInput':
        """An image validated, converted, resized and padded as the backend's input tensor,
        with its usable pixels (the static and dynamic masks combined; None: all)."""
        start = time.perf_counter()
        normalized = normalize_image(image, self.backend.grayscale,
                                     self.config.max_image_pixels)
        usable = combine(image_size(image), self.mask, mask)
        transform = ImageTransform.create(image_size(image), self.long_side, self.backend.stride)
        model_input = resize_and_pad(normalized, transform)
        if model_input.ndim == 2:
            model_input = model_input[None]
        else:
            model_input = model_input.transpose(2, 0, 1)
        tensor = torch.from_numpy(np.ascontiguousarray(model_input))[None]
        tensor = tensor.to(self.backend.input_device)
        gray = (normalized if normalized.ndim == 2
                else cv2.cvtColor(normalized, cv2.COLOR_RGB2GRAY))
        return _ModelInput(tensor, transform, gray, usable, time.perf_counter() - start)

    def _drop_masked_keypoints(self, features, transform: ImageTransform, usable: np.ndarray):
        """A detector's features without the keypoints on masked pixels (unchanged for
        detector-free backends, whose matches are filtered after mapping instead)."""
        keypoints = self.backend.keypoints(features)
        if keypoints is None:
            return features
        points = transform.to_original(_as_numpy(keypoints, 2) - self.backend.frame_offset)
        keep = usable_points(usable, points)
        return features if keep.all() else self.backend.select_keypoints(features, keep)

    def keypoints(self, image: PreparedImage) -> Optional[np.ndarray]:
        """[N x 2] float32 positions, in original pixels, of the keypoints the backend detected
        in a prepared image (after the masks), best first where the detector ranks them; None
        for detector-free backends (eloftr, loftr, hf), which have no per-image keypoints."""
        prepared = self._own(image)
        keypoints = self.backend.keypoints(prepared.features)
        if keypoints is None:
            return None
        points = _as_numpy(keypoints, 2) - self.backend.frame_offset
        inside = prepared.transform.inside(points)
        return prepared.transform.to_original(points[inside]).astype(np.float32)

    def _own(self, image: PreparedImage) -> PreparedImage:
        """`image`, which must have been prepared by this matcher."""
        if image.matcher_id != id(self):
            msg = 'PreparedImage was made by another Matcher; prepare it with this one'
            raise ConfigError(msg)
        return image

    def match(self, image0: ImageInput, image1: ImageInput,
              camera0: Optional[CameraModel] = None,
              camera1: Optional[CameraModel] = None, refine: bool = True) -> MatchResult:
        """Match a reference image (0) with a current image (1).

        image0, image1: numpy arrays (see `prepare`; two arrays are prepared as one batch, see
            `prepare_batch`) or PreparedImage objects of this matcher.
        camera0, camera1: camera models for essential-matrix verification (optional).
        refine: False leaves the image-1 keypoints where the backend put them, without the
            sub-pixel refinement (the tracker follows detector keypoints by their exact
            positions and refines against its own reference patches).
        Returns a MatchResult in original pixel coordinates, best scores first; timings are
        seconds spent in this call ('model' includes the per-image stage of images prepared
        here, not of PreparedImage inputs).
        """
        config = self._config  # one configuration for the whole call
        threshold = self._resolved_threshold(config)
        arrays = [image for image in (image0, image1) if not isinstance(image, PreparedImage)]
        fresh = iter(self.prepare_batch(arrays))
        prepared0, prepared1 = (self._own(image) if isinstance(image, PreparedImage)
                                else next(fresh) for image in (image0, image1))
        match_start = time.perf_counter()
        with torch.inference_mode(), self._model_context():
            raw = self.backend.match(prepared0, prepared1, threshold)
        map_start = time.perf_counter()
        points0, points1, scores = self._select(prepared0, prepared1, raw, threshold,
                                                config.max_matches)
        refine_start = time.perf_counter()
        if self.refinement is not None and refine:
            points1 = self.refinement.refine(prepared0.gray, prepared1.gray, points0, points1)[0]
        if prepared0.mask is not None or prepared1.mask is not None:
            usable = (usable_points(prepared0.mask, points0) &
                      usable_points(prepared1.mask, points1))
            points0, points1, scores = points0[usable], points1[usable], scores[usable]
        verify_start = time.perf_counter()
        inliers, geometry_model = verify_matches(
            points0, points1, config.geometry, config.ransac_threshold,
            config.ransac_confidence, camera0, camera1)
        end = time.perf_counter()
        timings = {'preprocess': 0.0, 'model': map_start - match_start,
                   'refine': verify_start - refine_start,
                   'verify': end - verify_start + refine_start - map_start,
                   'total': end - match_start}
        result = MatchResult(points0, points1, scores, prepared0.transform.original_size,
                             prepared1.transform.original_size, inliers, geometry_model, timings)
        # The images prepared in this call count in it; PreparedImage inputs were paid earlier.
        return self.add_preparation(result, *(prepared for prepared, image in
                                              ((prepared0, image0), (prepared1, image1))
                                              if prepared is not image))

    @staticmethod
    def add_preparation(result: MatchResult, *images: PreparedImage) -> MatchResult:
        """`result` with the preparation of `images` counted in its timings: images prepared
        for this pair before `match` (the current frame in consecutive mode), so that the
        timings hold what the pair cost, all but the reused reference frame. A new result;
        `result` is left as it is."""
        timings = dict(result.timings)
        for image in images:
            for key in ('preprocess', 'model'):
                timings[key] += image.timings[key]
                timings['total'] += image.timings[key]
        return dataclasses.replace(result, timings=timings)

    def _select(self, prepared0, prepared1, raw, threshold: float, max_matches: int):
        """A backend's matches in original pixels (float32), without those in the padding or
        under the score threshold, best first, at most max_matches (0: all)."""
        keypoints0 = _as_numpy(raw.keypoints0, 2) - self.backend.frame_offset
        keypoints1 = _as_numpy(raw.keypoints1, 2) - self.backend.frame_offset
        scores = _as_numpy(raw.scores)
        transform0, transform1 = prepared0.transform, prepared1.transform
        keep = (transform0.inside(keypoints0) & transform1.inside(keypoints1) &
                (scores >= threshold))
        order = np.argsort(-scores[keep], kind='stable')
        if max_matches:
            order = order[:max_matches]
        return (transform0.to_original(keypoints0[keep][order]).astype(np.float32),
                transform1.to_original(keypoints1[keep][order]).astype(np.float32),
                scores[keep][order].astype(np.float32))


def export_onnx(config: MatcherConfig, image_sizes: Sequence[Tuple[int, int]],
                force: bool = False) -> List[Path]:
    """Write the ONNX graphs that a matcher of `config` with runtime onnxruntime uses for images
    of these (width, height) sizes into the cache (all with `force`, else those missing), on the
    CPU whatever the configured providers; returns their paths. BackendError when the backend
    has no ONNX Runtime runtime or onnxruntime is missing."""
    matcher = Matcher(config.replace(runtime='onnxruntime', providers=[CPU], device='cpu',
                                     precision='fp32', warmup=False))
    sizes = dict.fromkeys(
        ImageTransform.create(size, matcher.long_side, matcher.backend.stride).padded_size
        for size in image_sizes)
    return matcher.backend.export(list(sizes), force)
