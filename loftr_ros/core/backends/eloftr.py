"""EfficientLoFTR through the native implementation (:mod:`loftr_ros.core.models.efficientloftr`).

Weights: a Hugging Face hub id or directory (config.json + model.safetensors, default
``zju-community/efficientloftr``; ``zju-community/matchanything_eloftr`` works the same way), or
an official checkpoint file (``eloftr_outdoor.ckpt``). The per-image stages run in `extract`, so
a frame prepared once is processed once however many pairs it takes part in; a batch of
same-size images (a stereo pair) runs them together.

With runtime onnxruntime (:class:`EfficientLoFTROnnxBackend`) the same split runs as two ONNX
graphs per model input size (:mod:`loftr_ros.core.models.efficientloftr_onnx`).
"""
from typing import List

import numpy as np
import torch

from loftr_ros.core.backends.base import Backend, BackendMatches
from loftr_ros.core.backends.onnx import OnnxBackend
from loftr_ros.core.errors import ConfigError
from loftr_ros.core.models import efficientloftr_onnx
from loftr_ros.core.models.efficientloftr import EfficientLoFTR, ImageFeatures, check_rope_npe
from loftr_ros.core.models.efficientloftr_weights import load_efficientloftr
from loftr_ros.core.weights import resolve_weights

DEFAULT_MODEL = 'zju-community/efficientloftr'
MODES = ('full', 'optimized')
COMPILE_MODES = ('off', 'default', 'reduce-overhead', 'max-autotune')


class EfficientLoFTRBackend(Backend):
    name = 'eloftr'
    DEFAULT_CONF = {
        # 'full': dual-softmax coarse confidences thresholded at confidence_threshold (the
        # reference). 'optimized': the published fast configuration, coarse matches are mutual
        # nearest neighbours whose raw similarity exceeds similarity_threshold, without the two
        # full softmaxes (scores are still the dual-softmax confidences of those matches).
        'mode': 'full',
        # Raw-similarity threshold of the 'optimized' mode (the original recommends 25).
        'similarity_threshold': 25.0,
        # Fuse the RepVGG and fine-pyramid conv+BN branches into single convolutions at load.
        'reparameterize': True,
        # Convolutions in channels-last memory format (faster with oneDNN on CPU and on CUDA).
        'channels_last': True,
        # The original's NPE, rotary positions scaled by train/test size: 'off' (as transformers),
        # 'long_side' ([832, 832, L, L] for a model input of long side L: the original's
        # suggestion for inputs above 832 px, e.g. resize 0 on a 1280x720 camera), or
        # [train_h, train_w, test_h, test_w].
        'rope_npe': 'off',
        # torch.compile the fixed-shape stages (backbone, attention, fine pyramid; one graph per
        # input size): 'off', 'default', 'max-autotune', or 'reduce-overhead', which also
        # replays them as CUDA graphs on CUDA. Needs a working compiler toolchain; pays off on
        # CUDA for a fixed camera resolution. true/false mean 'default'/'off'.
        'compile': 'off',
    }
    stride = EfficientLoFTR.stride
    # The published models were trained and are usually run at 640x480. The original demo
    # instead resamples an image to sides floored to multiples of 32 at its own size; here the
    # long side is brought to 640 (aspect kept) and padded to 32, which keeps the coordinates
    # exact. Not measured: no trained weights are reachable here.
    default_resize = 640
    grayscale = True
    frame_offset = 0.5  # the LoFTR family's pixel-centre convention (see base.Backend)
    # bf16 autocast on a CPU with AMX: 3x faster than fp32 at 640x480 (the coarse similarity,
    # dual softmax and refinement stay float32; see test_mixed_precision_runs_every_stage).
    cpu_bf16 = True

    def __init__(self, weights, options, device, dtype):
        super().__init__(weights, options, device, dtype)
        self.choice_option('mode', MODES)
        self.weights = weights or DEFAULT_MODEL
        path = resolve_weights(weights, DEFAULT_MODEL, self.name)
        self.optimized = self.conf['mode'] == 'optimized'
        if self.optimized:
            model_conf = {'skip_softmax': True,
                          'coarse_threshold': float(self.conf['similarity_threshold'])}
        else:
            # The coarse threshold is the Matcher's, given with each pair (see match).
            model_conf = {'skip_softmax': False}
        check_rope_npe(self.conf['rope_npe'])
        model_conf['rope_npe'] = self.conf['rope_npe']
        model = load_efficientloftr(path, model_conf, self.conf['reparameterize'])
        model = model.to(device)
        if self.conf['channels_last']:
            model = model.to(memory_format=torch.channels_last)
        if isinstance(self.conf['compile'], bool):
            self.conf['compile'] = 'default' if self.conf['compile'] else 'off'
        compile_mode = self.choice_option('compile', COMPILE_MODES)
        if compile_mode != 'off':
            def compiled(module):
                return torch.compile(module, dynamic=False, mode=compile_mode)
            model.backbone = compiled(model.backbone)
            model.refinement_layer = compiled(model.refinement_layer)
            for layer in model.local_feature_transformer.layers:
                layer.self_attention = compiled(layer.self_attention)
                layer.cross_attention = compiled(layer.cross_attention)
        # torch.compile uses CUDA graphs only for CUDA tensors.
        self.cuda_graphs = compile_mode == 'reduce-overhead' and device.type == 'cuda'
        if self.cuda_graphs and not hasattr(torch.compiler, 'cudagraph_mark_step_begin'):
            msg = (f"eloftr backend: compile 'reduce-overhead' on CUDA needs torch >= 2.2 (it "
                   f"marks each step of the CUDA graphs), this is torch {torch.__version__}")
            raise ConfigError(msg)
        self.model = model

    @property
    def model_name(self) -> str:
        return f'eloftr:{self.weights}'

    def extract(self, image: torch.Tensor):
        return self.extract_batch(image)[0]

    def extract_batch(self, images: torch.Tensor) -> List[ImageFeatures]:
        if self.conf['channels_last']:
            images = images.contiguous(memory_format=torch.channels_last)
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        features = self.model.extract(images)
        # A CUDA graph's outputs live in buffers its next replay overwrites, and a frame's
        # features are kept to be reused in the next pair: the coarse map (an output of the
        # compiled attention) gets its own memory. The projections are computed eagerly from
        # the backbone's outputs, so they are already the frame's own tensors.
        coarse = features.coarse.clone() if self.cuda_graphs else features.coarse
        return [ImageFeatures(coarse[index:index + 1],
                              [map_[index:index + 1] for map_ in features.projected],
                              features.image_size)
                for index in range(len(images))]

    def match(self, image0, image1, confidence_threshold) -> BackendMatches:
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        # Full mode: coarse matches below the Matcher's threshold would be dropped after
        # refinement; not refining them is the same result, faster. Optimized mode thresholds
        # the raw similarity instead (the model's own coarse_threshold).
        threshold = None if self.optimized else float(confidence_threshold)
        result = self.model.match_features(image0.features, image1.features,
                                           coarse_threshold=threshold)
        return BackendMatches(result['keypoints0'], result['keypoints1'], result['scores'])

    def onnx_export(self, part: str, sizes):
        """What EfficientLoFTROnnxBackend exports for graph `part` at model input `sizes`."""
        return efficientloftr_onnx.export_spec(self.model, part, sizes)


class EfficientLoFTROnnxBackend(OnnxBackend, EfficientLoFTRBackend):
    """EfficientLoFTR on ONNX Runtime: an 'extract' graph per model input size (batches of
    it, the per-image stages) and a 'match' graph per pair of sizes."""

    torch_backend = EfficientLoFTRBackend
    torch_only_options = {'compile': 'off'}

    def __init__(self, weights, options, providers, provider_fallback):
        super().__init__(weights, options, providers, provider_fallback)
        self.choice_option('mode', MODES)
        self.weights = weights or DEFAULT_MODEL

    def graph_parts(self, sizes):
        parts = [('extract', (size,)) for size in sizes]
        return parts + [('match', (size, size)) for size in sizes]

    @staticmethod
    def _size(image: torch.Tensor):
        return int(image.shape[-1]), int(image.shape[-2])

    def extract_batch(self, images: torch.Tensor):
        outputs = self.graph('extract', self._size(images))(image=images.numpy())
        maps = [torch.from_numpy(outputs[name]) for name in efficientloftr_onnx.FEATURE_NAMES]
        size = tuple(images.shape[-2:])
        return [ImageFeatures(maps[0][index:index + 1],
                              [map_[index:index + 1] for map_ in maps[1:]], size)
                for index in range(len(images))]

    def match(self, image0, image1, confidence_threshold) -> BackendMatches:
        graph = self.graph('match', self._size(image0.tensor), self._size(image1.tensor))
        # The full mode's coarse threshold (the optimized mode's graph has its own, and no
        # such input).
        inputs = {'threshold': np.float32(confidence_threshold)}
        for index, features in enumerate((image0.features, image1.features)):
            tensors = (features.coarse, *features.projected)
            inputs.update({f'{name}{index}': np.ascontiguousarray(tensor.numpy())
                           for name, tensor in zip(efficientloftr_onnx.FEATURE_NAMES, tensors)})
        outputs = graph(**inputs)
        return BackendMatches(*(outputs[name] for name in efficientloftr_onnx.MATCH_OUTPUTS))
