"""Masks of the pixels features may use (nonzero = usable): a static one for the robot's own
body in view, and per-image dynamic ones (a segmentation topic's latest mask).

A sub-pixel position (x, y) belongs to the pixel it rounds to, ``(floor(x + 0.5),
floor(y + 0.5))``: pixel i covers [i - 0.5, i + 0.5) in the OpenCV convention the whole package
uses. A position outside the image is not usable.
"""
from pathlib import Path
from typing import Optional, Tuple

import cv2
import numpy as np

from loftr_ros.core.errors import ConfigError, ImageError, MaskError


def load_mask(path) -> np.ndarray:
    """An HxW bool mask (True = usable) from an image file (PNG, 8 or 16 bit, grey or colour:
    a pixel is usable when any of its colour channels is nonzero; alpha is ignored).
    ConfigError when the file cannot be read or decoded."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f'mask {path}: no such file')
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise ConfigError(f'mask {path}: not an image OpenCV can read')
    if image.ndim == 3:
        image = image[:, :, :3].any(axis=2)
    return image != 0


def as_usable(mask: np.ndarray, what: str = 'mask') -> np.ndarray:
    """A caller's mask (HxW uint8 or bool, nonzero = usable) as HxW bool; ImageError for any
    other shape or dtype."""
    if not isinstance(mask, np.ndarray) or mask.ndim != 2 or mask.size == 0:
        shape = getattr(mask, 'shape', type(mask).__name__)
        raise ImageError(f'{what} must be a non-empty HxW array, got {shape}')
    if mask.dtype not in (np.uint8, np.bool_):
        raise ImageError(f'{what} must be uint8 or bool (nonzero = usable), got {mask.dtype}')
    return mask.astype(bool, copy=False)


def combine(size: Tuple[int, int], *masks: Optional[np.ndarray]) -> Optional[np.ndarray]:
    """The pixels usable in every given mask (None entries are skipped) for an image of `size`
    (width, height); None when no mask is given. MaskError naming the sizes when a mask does
    not have the image's size."""
    usable = None
    for mask in masks:
        if mask is None:
            continue
        mask = as_usable(mask)
        if (mask.shape[1], mask.shape[0]) != tuple(size):
            msg = (f'mask is {mask.shape[1]}x{mask.shape[0]} but the image is '
                   f'{size[0]}x{size[1]}')
            raise MaskError(msg)
        usable = mask if usable is None else usable & mask
    return usable


def usable_points(mask: Optional[np.ndarray], points: np.ndarray) -> np.ndarray:
    """[N] bool: points [N x 2] (x, y) on a usable pixel of `mask` (all True when mask is
    None)."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    if mask is None:
        return np.ones(len(points), bool)
    pixels = np.floor(points + 0.5)
    height, width = mask.shape
    inside = ((pixels[:, 0] >= 0) & (pixels[:, 0] < width) &
              (pixels[:, 1] >= 0) & (pixels[:, 1] < height))
    usable = np.zeros(len(points), bool)
    columns, rows = pixels[inside].astype(np.intp).T
    usable[inside] = mask[rows, columns]
    return usable
