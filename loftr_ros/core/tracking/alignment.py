"""Affine alignment of each track's anchor patch (its first observation) to the current image:
inverse-compositional Lucas-Kanade (Baker & Matthews) on the six parameters of an affine warp,
all tracks at once, with gain and offset normalized per patch as in the NCC.

Aligning the position AND the linear deformation to the anchor each frame (Shi and Tomasi's
monitoring of features against their first frame) keeps both from accumulating errors: the
deformation predicted by chaining per-frame local motions drifts by a few percent per frame,
and a template deformed wrongly pulls its best position towards its strongest texture.
"""
from typing import Tuple

import cv2
import numpy as np

_REMAP_MAX_ROWS = 32767 - 1
# The warp's linear part is regularized towards its starting value (weight relative to the
# translation's information): 15x15 patches constrain scale and shear weakly.
_LINEAR_PRIOR = float(__import__('os').environ.get('LP', 1.0))
# Steps under this (pixels of motion at the patch border) end the iterations.
_CONVERGED = 0.01


def sample_warped(image: np.ndarray, positions: np.ndarray, linear: np.ndarray,
                  coordinates: np.ndarray) -> np.ndarray:
    """[N x S x S] bicubic samples of `image` at positions + linear @ coordinates, with
    coordinates [N x S x S x 2] (x, y) per track, linear [N x 2 x 2]."""
    count, size = coordinates.shape[0], coordinates.shape[1]
    mapped = positions[:, None, None] + np.einsum('nij,nabj->nabi', linear, coordinates)
    map_x = np.ascontiguousarray(mapped[..., 0], np.float32).reshape(-1, size)
    map_y = np.ascontiguousarray(mapped[..., 1], np.float32).reshape(-1, size)
    samples = np.empty((count * size, size), np.float32)
    step = (_REMAP_MAX_ROWS // size) * size
    for start in range(0, len(map_x), step):
        rows = slice(start, start + step)
        samples[rows] = cv2.remap(image, map_x[rows], map_y[rows], cv2.INTER_CUBIC,
                                  borderMode=cv2.BORDER_REPLICATE)
    return samples.reshape(count, size, size)


def align_affine(image: np.ndarray, templates: np.ndarray, offsets: np.ndarray,
                 positions: np.ndarray, linear: np.ndarray, iterations: int = 5,
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Refine where each anchor template lies in `image` and how it is deformed.

    templates: [N x S x S] the anchor's pixels around its pixel; offsets: [N x 2], the anchor
    point's offset from that pixel; positions, linear: the current estimate of the affine warp
    (the anchor point maps to `positions`, pixel offsets from it through `linear`).
    Returns (positions [N x 2], linear [N x 2 x 2], ncc [N]: normalized cross-correlation of
    the template with the image under the final warp).
    """
    count, size = templates.shape[:2]
    positions = np.asarray(positions, np.float64).copy()
    linear = np.asarray(linear, np.float64).copy()
    if count == 0:
        return positions, linear, np.zeros(0)
    half = (size - 1) / 2
    steps = np.arange(size) - half
    grid_y, grid_x = np.meshgrid(steps, steps, indexing='ij')
    # Template coordinates relative to the anchor point (not to its pixel).
    coordinates = np.stack([grid_x[None] - offsets[:, 0, None, None],
                            grid_y[None] - offsets[:, 1, None, None]], axis=-1)
    template = templates - templates.mean(axis=(1, 2), keepdims=True)
    template_norm = np.sqrt(np.square(template).sum(axis=(1, 2)))
    gradient_y, gradient_x = np.gradient(template, axis=(1, 2))
    x, y = coordinates[..., 0], coordinates[..., 1]
    # Steepest-descent images of the parameters (a11, a21, a12, a22, tx, ty).
    descent = np.stack([gradient_x * x, gradient_y * x, gradient_x * y, gradient_y * y,
                        gradient_x, gradient_y], axis=-1).reshape(count, -1, 6)
    hessian = np.einsum('nki,nkj->nij', descent, descent)
    translation_information = (hessian[:, 4, 4] + hessian[:, 5, 5]) / 2
    prior = _LINEAR_PRIOR * translation_information[:, None] * np.array([1, 1, 1, 1, 0, 0])
    regularized = hessian + prior[:, :, None] * np.eye(6)[None]
    identity = np.eye(2)
    for _ in range(iterations):
        warped = sample_warped(image, positions, linear, coordinates)
        warped -= warped.mean(axis=(1, 2), keepdims=True)
        gain = template_norm / np.maximum(np.sqrt(np.square(warped).sum(axis=(1, 2))), 1e-12)
        error = (warped * gain[:, None, None] - template).reshape(count, -1)
        delta = np.linalg.solve(regularized, np.einsum('nki,nk->ni', descent, error)[..., None])
        delta = delta[..., 0]
        step_linear = identity + delta[:, [0, 2, 1, 3]].reshape(count, 2, 2)
        inverse = np.linalg.inv(step_linear)
        # Inverse composition: W <- W o W(delta)^-1.
        positions -= np.einsum('nij,njk,nk->ni', linear, inverse, delta[:, 4:])
        linear = linear @ inverse
        motion = np.abs(delta[:, 4:]).max(axis=1) + half * np.abs(delta[:, :4]).max(axis=1)
        if motion.max() < _CONVERGED:
            break
    warped = sample_warped(image, positions, linear, coordinates)
    warped -= warped.mean(axis=(1, 2), keepdims=True)
    ncc = (warped * template).sum(axis=(1, 2)) / np.maximum(
        template_norm * np.sqrt(np.square(warped).sum(axis=(1, 2))), 1e-12)
    return positions, linear, ncc
