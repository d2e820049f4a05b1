"""ONNX export of the whole EfficientLoFTR matcher, and running the export with ONNX Runtime.

    python -m loftr_ros.core.models.export_onnx WEIGHTS OUTPUT.onnx --size 640x480

The graph takes two [1 x 1 x H x W] float32 grayscale images in [0, 1] (H, W multiples of 32,
fixed at export: the rotary position encoding is baked in for that size) and returns
keypoints0, keypoints1 [N x 2] (x, y in input pixels, sub-pixel, the model's own frame as
:meth:`EfficientLoFTR.match_features` returns them) and scores [N]; N varies with the images.
The model is exported re-parameterized (fused convolutions), with the matching settings it was
loaded with.
"""
import argparse
import warnings
from pathlib import Path
from typing import Dict, Tuple, Union

import numpy as np
import torch
from torch import nn

from loftr_ros.core.errors import BackendError, ConfigError, ImageError, WeightsError
from loftr_ros.core.models.efficientloftr import EfficientLoFTR

INPUT_NAMES = ('image0', 'image1')
OUTPUT_NAMES = ('keypoints0', 'keypoints1', 'scores')
OPSET = 17


class ExportableMatcher(nn.Module):
    """EfficientLoFTR as a function of two images returning plain tensors."""

    def __init__(self, model: EfficientLoFTR):
        super().__init__()
        self.model = model

    def forward(self, image0: torch.Tensor, image1: torch.Tensor
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        result = self.model(image0, image1)
        return result['keypoints0'], result['keypoints1'], result['scores']


def export_onnx(model: EfficientLoFTR, path: Union[str, Path], size: Tuple[int, int],
                opset: int = OPSET) -> Path:
    """Write `model` as ONNX for (width, height) inputs; returns the path."""
    width, height = size
    if width % model.stride or height % model.stride:
        msg = f'ONNX export size {width}x{height}: sides must be multiples of {model.stride}'
        raise ConfigError(msg)
    path = Path(path)
    example = torch.rand(1, 1, height, width)
    wrapper = ExportableMatcher(model.eval())
    with torch.no_grad(), warnings.catch_warnings():
        # One eager run caches the rotary encoding of this size: the trace embeds it as a
        # constant instead of recomputing it from traced shapes.
        model(example, example)
        # The TorchScript exporter: the torch.export-based one needs the onnxscript package,
        # which is not a dependency here. Its warnings (its own deprecation, values taken from
        # traced shapes -- intended, the size is fixed --, constant-folding and negative-index
        # notes -- every index here is non-negative) say nothing about this export; the ONNX
        # Runtime test checks its results.
        warnings.simplefilter('ignore')
        torch.onnx.export(wrapper, (example, example.roll(3, dims=-1)), str(path),
                          input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
                          dynamic_axes={name: {0: 'matches'} for name in OUTPUT_NAMES},
                          opset_version=opset, dynamo=False)
    return path


class OnnxEfficientLoFTR:
    """An exported matcher run with ONNX Runtime (CPU unless other providers are given)."""

    def __init__(self, path: Union[str, Path], providers=('CPUExecutionProvider',)):
        try:
            import onnxruntime
        except ModuleNotFoundError:
            raise BackendError('running the ONNX export needs onnxruntime '
                               '(pip install onnxruntime)') from None
        try:
            self.session = onnxruntime.InferenceSession(str(path), providers=list(providers))
        except Exception as error:  # onnxruntime raises its own exception types per failure
            raise WeightsError(f'cannot load ONNX model {path}: {error}') from None
        shape = self.session.get_inputs()[0].shape
        self.size = (shape[3], shape[2])

    def __call__(self, image0: np.ndarray, image1: np.ndarray) -> Dict[str, np.ndarray]:
        """image0/1: [H x W] or [1 x 1 x H x W] float32 in [0, 1] at the exported size."""
        inputs = {}
        for name, image in zip(INPUT_NAMES, (image0, image1)):
            image = np.asarray(image, np.float32).reshape(1, 1, *np.shape(image)[-2:])
            if (image.shape[3], image.shape[2]) != self.size:
                msg = (f'{name} is {image.shape[3]}x{image.shape[2]}, the model was exported '
                       f'for {self.size[0]}x{self.size[1]}')
                raise ImageError(msg)
            inputs[name] = image
        outputs = self.session.run(list(OUTPUT_NAMES), inputs)
        return dict(zip(OUTPUT_NAMES, outputs))


def main(argv=None):
    parser = argparse.ArgumentParser(description='Export EfficientLoFTR to ONNX.')
    parser.add_argument('weights', help='official checkpoint, Hugging Face directory or file')
    parser.add_argument('output', type=Path, help='ONNX file to write')
    parser.add_argument('--size', default='640x480', help='input WIDTHxHEIGHT (multiples of 32)')
    parser.add_argument('--threshold', type=float, default=0.2, help='coarse match threshold')
    args = parser.parse_args(argv)
    from loftr_ros.core.models.efficientloftr_weights import load_efficientloftr
    width, height = (int(v) for v in args.size.lower().split('x'))
    model = load_efficientloftr(args.weights, {'coarse_threshold': args.threshold})
    export_onnx(model, args.output, (width, height))
    print(f'wrote {args.output} ({width}x{height})')


if __name__ == '__main__':
    main()
