"""Image validation and the resize/pad transform between an original image and the model input.

Coordinates follow the OpenCV convention everywhere: the centre of the top-left pixel is (0, 0),
so pixel i covers [i - 0.5, i + 0.5). ``cv2.resize`` aligns pixel centres the same way, which
makes the mapping between an original image and its resized copy exact:
``x_model = (x_original + 0.5) * scale_x - 0.5`` with ``scale_x = resized_width / width``.
Padding is added on the right and bottom only, so it never moves a coordinate; a keypoint that a
model places in the padding has no pixel in the original image and is dropped.
"""
from dataclasses import dataclass
from typing import Optional, Tuple

import cv2
import numpy as np

from loftr_ros.core.errors import ImageError, ImageTooLargeError

# Integer dtypes and the value that maps to 1.0.
_INTEGER_FULL_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def resized_size(size: Tuple[int, int], long_side: int) -> Tuple[int, int]:
    """(width, height) after scaling `size` so that its long side is `long_side` (aspect kept,
    each side rounded and at least 1); `long_side` 0 keeps the size."""
    width, height = size
    if long_side == 0:
        return int(width), int(height)
    scale = long_side / max(width, height)
    return max(1, int(round(width * scale))), max(1, int(round(height * scale)))


def padded_size(size: Tuple[int, int], stride: int) -> Tuple[int, int]:
    """(width, height) rounded up to multiples of `stride`."""
    width, height = size
    return -(-width // stride) * stride, -(-height // stride) * stride


@dataclass(frozen=True)
class ImageTransform:
    """How a model input was made from an original image: resize to `resized_size`, then pad
    on the right and bottom to `padded_size`. Sizes are (width, height)."""

    original_size: Tuple[int, int]
    resized_size: Tuple[int, int]
    padded_size: Tuple[int, int]

    @classmethod
    def create(cls, original_size, long_side: int, stride: int) -> 'ImageTransform':
        resized = resized_size(original_size, long_side)
        return cls(tuple(original_size), resized, padded_size(resized, stride))

    @property
    def scale(self) -> np.ndarray:
        """[sx, sy] (float64): model pixels per original pixel along x and y. They differ
        slightly because each side is rounded to whole pixels."""
        return (np.asarray(self.resized_size, np.float64) /
                np.asarray(self.original_size, np.float64))

    def to_model(self, points: np.ndarray) -> np.ndarray:
        """Original pixel coordinates [N x 2] -> model-input coordinates (float64)."""
        return (np.asarray(points, np.float64) + 0.5) * self.scale - 0.5

    def to_original(self, points: np.ndarray) -> np.ndarray:
        """Model-input coordinates [N x 2] -> original pixel coordinates (float64)."""
        return (np.asarray(points, np.float64) + 0.5) / self.scale - 0.5

    def inside(self, points: np.ndarray) -> np.ndarray:
        """[N] bool: model-input points that fall on a resized image pixel, not in the padding
        (nor outside the input altogether)."""
        points = np.asarray(points, np.float64).reshape(-1, 2)
        limit = np.asarray(self.resized_size, np.float64) - 0.5
        return np.all((points >= -0.5) & (points < limit), axis=1)


def image_size(image: np.ndarray) -> Tuple[int, int]:
    """(width, height) of an HxW or HxWxC array."""
    return int(image.shape[1]), int(image.shape[0])


def check_image_pixels(width: int, height: int, max_pixels: Optional[int], what: str = 'image'):
    """ImageTooLargeError when a `width` x `height` image is above `max_pixels` (None: no
    limit)."""
    if max_pixels is not None and width * height > max_pixels:
        msg = (f'{width}x{height} {what} has {width * height / 1e6:.1f} MP, above the limit '
               f'max_image_pixels = {max_pixels} ({max_pixels / 1e6:.1f} MP)')
        raise ImageTooLargeError(msg)


def normalize_image(image: np.ndarray, grayscale: bool,
                    max_pixels: Optional[int] = None) -> np.ndarray:
    """Validate an input image and return it as float32 in [0, 1]: HxW when `grayscale` or when
    the image is mono, else HxWx3 in RGB order.

    Accepted: HxW (mono), HxWx1, HxWx3 (BGR, OpenCV order) or HxWx4 (BGRA, alpha ignored);
    dtype uint8 (/255), uint16 (/65535), float32/float64 (taken as [0, 1], clipped); at most
    `max_pixels` pixels (ImageTooLargeError, before any copy).

    Grayscale is BT.601 luma as OpenCV computes it (``cv2.cvtColor(image, COLOR_BGR2GRAY)``),
    on the integers for an integer image, rounded to whole grey levels before scaling: the
    grey image that ``cv2.imread(path, cv2.IMREAD_GRAYSCALE)`` and ``cv2.cvtColor`` give the
    reference pipelines (LoFTR's and EfficientLoFTR's demos, SIFT and ORB on a colour image).
    A mono image stays one channel when not `grayscale`: the models that take RGB (DISK, ALIKED)
    replicate it themselves, XFeat averages the channels it gets.
    """
    if not isinstance(image, np.ndarray):
        msg = f'image must be a numpy array, got {type(image).__name__}'
        raise ImageError(msg)
    if image.ndim not in (2, 3):
        msg = f'image must be HxW or HxWxC, got shape {image.shape}'
        raise ImageError(msg)
    if image.size == 0:
        msg = f'image is empty (shape {image.shape})'
        raise ImageError(msg)
    if image.ndim == 3 and image.shape[2] not in (1, 3, 4):
        msg = f'image must have 1, 3 (BGR) or 4 (BGRA) channels, got {image.shape[2]}'
        raise ImageError(msg)
    check_image_pixels(*image_size(image), max_pixels)
    if image.dtype not in _INTEGER_FULL_SCALE and image.dtype not in _FLOAT_DTYPES:
        msg = f'unsupported image dtype {image.dtype}; use uint8, uint16, float32 or float64'
        raise ImageError(msg)
    if image.dtype in _FLOAT_DTYPES and not np.isfinite(image).all():
        msg = 'image contains NaN or infinite values'
        raise ImageError(msg)
    if image.ndim == 3:
        image = image[:, :, 0] if image.shape[2] == 1 else image[:, :, :3]
    colour = image.ndim == 3
    if colour and grayscale and image.dtype in _INTEGER_FULL_SCALE:
        image = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGR2GRAY)
        colour = False
    if image.dtype in _INTEGER_FULL_SCALE:
        # Division (not multiplication by the reciprocal) gives the same values as the
        # reference pipelines' x / 255.
        scaled = image.astype(np.float32) / np.float32(_INTEGER_FULL_SCALE[image.dtype])
    else:
        scaled = np.clip(image, 0.0, 1.0).astype(np.float32)
    if not colour:
        return scaled
    code = cv2.COLOR_BGR2GRAY if grayscale else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(np.ascontiguousarray(scaled), code)


def resize_and_pad(image: np.ndarray, transform: ImageTransform) -> np.ndarray:
    """Apply `transform` to a float32 HxW or HxWxC image: resize (area averaging when
    shrinking, bilinear when enlarging) then zero-pad on the right and bottom."""
    if transform.resized_size != transform.original_size:
        shrinking = transform.resized_size[0] < transform.original_size[0]
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        image = cv2.resize(image, transform.resized_size, interpolation=interpolation)
    pad_x = transform.padded_size[0] - transform.resized_size[0]
    pad_y = transform.padded_size[1] - transform.resized_size[1]
    if pad_x or pad_y:
        padding = ((0, pad_y), (0, pad_x)) + ((0, 0),) * (image.ndim - 2)
        image = np.pad(image, padding)
    return image
