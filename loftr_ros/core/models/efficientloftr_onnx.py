"""EfficientLoFTR as two ONNX graphs, split where :meth:`EfficientLoFTR.extract` splits it, so
that the ONNX Runtime backend also processes a video frame once for the two pairs it is in.

- ``extract``: ``image`` [B x 1 x H x W] float32 grayscale in [0, 1] -> ``coarse`` [B x C x
  H/8 x W/8] (backbone and first self-attention), ``quarter`` and ``half`` (the fine pyramid's
  1x1 projections of the backbone's 1/4 and 1/2 maps). B varies; H and W (multiples of 32) are
  fixed at export: the rotary position encoding is baked in for that size.
- ``match``: those three tensors of image 0 and of image 1 (``coarse0`` ... ``half1``, batch 1)
  and the coarse ``threshold`` (float32 scalar; a graph of a model with ``skip_softmax``, the
  optimized mode, has its own threshold and no such input) -> ``keypoints0``, ``keypoints1``
  [N x 2] (x, y in model-input pixels, sub-pixel, the model's own frame as
  :meth:`EfficientLoFTR.match_features` returns them) and ``scores`` [N]; N varies with the
  images. Fixed to the two images' sizes.

The model is exported as loaded (re-parameterized when the backend fuses it), with the settings
it was loaded with (mode, rope_npe).
"""
from typing import Sequence, Tuple

import torch
from torch import nn

from loftr_ros.core.errors import ConfigError
from loftr_ros.core.models.efficientloftr import EfficientLoFTR, ImageFeatures
from loftr_ros.core.onnx_runtime import ExportSpec

FEATURE_NAMES = ('coarse', 'quarter', 'half')
MATCH_OUTPUTS = ('keypoints0', 'keypoints1', 'scores')
PARTS = ('extract', 'match')


class ExtractGraph(nn.Module):
    """The per-image stages as a function of a batch of images returning plain tensors."""

    def __init__(self, model: EfficientLoFTR):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        features = self.model.extract(image)
        return (features.coarse, *features.projected)


class MatchGraph(nn.Module):
    """The pair stage as a function of two images' feature tensors."""

    def __init__(self, model: EfficientLoFTR, sizes: Sequence[Tuple[int, int]]):
        super().__init__()
        self.model = model
        # (height, width) of each image's model input, as ImageFeatures holds it.
        self.image_sizes = [(height, width) for width, height in sizes]

    def forward(self, coarse0, quarter0, half0, coarse1, quarter1, half1, threshold
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features0 = ImageFeatures(coarse0, [quarter0, half0], self.image_sizes[0])
        features1 = ImageFeatures(coarse1, [quarter1, half1], self.image_sizes[1])
        own_threshold = self.model.conf['skip_softmax']
        result = self.model.match_features(features0, features1,
                                           coarse_threshold=None if own_threshold else threshold)
        return tuple(result[name] for name in MATCH_OUTPUTS)


def export_spec(model: EfficientLoFTR, part: str, sizes: Sequence[Tuple[int, int]]
                ) -> ExportSpec:
    """What to trace for graph `part` at model input `sizes` ((width, height) of the image, or
    of both images for 'match'; multiples of 32)."""
    for width, height in sizes:
        if width % model.stride or height % model.stride:
            msg = f'ONNX export size {width}x{height}: sides must be multiples of {model.stride}'
            raise ConfigError(msg)
    model = model.eval()
    # Batches of 2 and textured images: neither the batch size nor an empty match set may be
    # baked into the traces (match_features refines even no matches while tracing).
    images = [torch.rand(2, 1, height, width, generator=torch.Generator().manual_seed(index))
              for index, (width, height) in enumerate(sizes)]
    # One eager run per size caches the rotary encoding: the traces embed it as a constant
    # instead of recomputing it from traced shapes.
    with torch.no_grad():
        features = [model.extract(image[:1]) for image in images]
    if part == 'extract':
        return ExportSpec(ExtractGraph(model), {'image': images[0]}, FEATURE_NAMES,
                          {name: {0: 'batch'} for name in ('image',) + FEATURE_NAMES})
    inputs = {f'{name}{index}': tensor
              for index, feature in enumerate(features)
              for name, tensor in zip(FEATURE_NAMES, (feature.coarse, *feature.projected))}
    inputs['threshold'] = torch.tensor(0.2)
    return ExportSpec(MatchGraph(model, sizes), inputs, MATCH_OUTPUTS,
                      {name: {0: 'matches'} for name in MATCH_OUTPUTS})
