"""Image patches of tracked features: square regions cut around a sub-pixel position, and
templates sampled from them through a linear warp (bicubic, all features in one call)."""
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F


def inside(positions: np.ndarray, radius: int, shape) -> np.ndarray:
    """[N] bool: the (2 radius + 1)^2 region around each position's pixel lies in an image of
    `shape` (H, W)."""
    centres = np.floor(np.asarray(positions, np.float64).reshape(-1, 2) + 0.5)
    height, width = shape[:2]
    return ((centres[:, 0] >= radius) & (centres[:, 0] <= width - 1 - radius) &
            (centres[:, 1] >= radius) & (centres[:, 1] <= height - 1 - radius))


def cut_regions(image: np.ndarray, positions: np.ndarray, radius: int,
                ) -> Tuple[np.ndarray, np.ndarray]:
    """The (2 radius + 1)^2 pixels around each position's pixel ([N x R x R] float32 copies,
    no interpolation) and each position's offset from that pixel ([N x 2], in [-0.5, 0.5)).
    Every region must lie inside the image (see `inside`)."""
    positions = np.asarray(positions, np.float64).reshape(-1, 2)
    centres = np.floor(positions + 0.5).astype(np.intp)
    steps = np.arange(-radius, radius + 1)
    rows = centres[:, 1, None] + steps
    columns = centres[:, 0, None] + steps
    regions = image[rows[:, :, None], columns[:, None, :]].astype(np.float32)
    return regions, positions - centres


def warped_templates(regions: np.ndarray, offsets: np.ndarray, inverse_linear: np.ndarray,
                     half: int) -> np.ndarray:
    """[N x S x S] float32 templates (S = 2 half + 1): each region sampled around its position
    on a grid mapped by its inverse_linear [N x 2 x 2], i.e. the patch as it appears where the
    region's neighbourhood has been deformed by the linear map. Samples must stay two pixels
    inside the region (bicubic reach)."""
    count, size = len(regions), regions.shape[-1] if len(regions) else 1
    if count == 0:
        return np.zeros((0, 2 * half + 1, 2 * half + 1), np.float32)
    steps = np.arange(-half, half + 1, dtype=np.float64)
    grid_y, grid_x = np.meshgrid(steps, steps, indexing='ij')
    centre = (size - 1) / 2
    a, b = inverse_linear[:, 0, 0, None, None], inverse_linear[:, 0, 1, None, None]
    c, d = inverse_linear[:, 1, 0, None, None], inverse_linear[:, 1, 1, None, None]
    x = centre + offsets[:, 0, None, None] + a * grid_x + b * grid_y
    y = centre + offsets[:, 1, None, None] + c * grid_x + d * grid_y
    # grid_sample with align_corners: -1 and 1 are the centres of the first and last pixels.
    grid = np.stack([x, y], axis=-1) * (2.0 / (size - 1)) - 1.0
    sampled = F.grid_sample(torch.from_numpy(np.ascontiguousarray(regions[:, None])),
                            torch.from_numpy(grid.astype(np.float32)), mode='bicubic',
                            padding_mode='border', align_corners=True)
    return sampled[:, 0].numpy()
