"""EfficientLoFTR through the native implementation (:mod:`loftr_ros.core.models.efficientloftr`).

Weights: a Hugging Face hub id or directory (config.json + model.safetensors, default
``zju-community/efficientloftr``; ``zju-community/matchanything_eloftr`` works the same way), or
an official checkpoint file (``eloftr_outdoor.ckpt``). The per-image stages run in `extract`, so
a frame prepared once is processed once however many pairs it takes part in.
"""
import torch

from loftr_ros.core.backends.base import Backend, BackendMatches
from loftr_ros.core.models.efficientloftr import EfficientLoFTR
from loftr_ros.core.models.efficientloftr_weights import load_efficientloftr
from loftr_ros.core.weights import resolve_weights

DEFAULT_MODEL = 'zju-community/efficientloftr'
MODES = ('full', 'optimized')


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
        # torch.compile the convolutional and attention stages (one graph per input size); needs
        # a working compiler toolchain, pays off on CUDA for a fixed camera resolution.
        'compile': False,
    }
    stride = EfficientLoFTR.stride
    # The published models were trained and are usually run at 640x480.
    default_resize = 640
    grayscale = True
    frame_offset = 0.5  # the LoFTR family's pixel-centre convention (see base.Backend)

    def __init__(self, config, device, dtype):
        super().__init__(config, device, dtype)
        self.choice_option('mode', MODES)
        self.weights = config.weights or DEFAULT_MODEL
        path = resolve_weights(config.weights, DEFAULT_MODEL, self.name)
        if self.conf['mode'] == 'optimized':
            matching = {'skip_softmax': True,
                        'coarse_threshold': float(self.conf['similarity_threshold'])}
        else:
            # Coarse matches below the Matcher's threshold would be dropped after refinement:
            # not refining them is the same result, faster.
            matching = {'skip_softmax': False,
                        'coarse_threshold': float(config.confidence_threshold)}
        model = load_efficientloftr(path, matching, self.conf['reparameterize'])
        model = model.to(device)
        if self.conf['channels_last']:
            model = model.to(memory_format=torch.channels_last)
        if self.conf['compile']:
            model.backbone = torch.compile(model.backbone, dynamic=False)
            model.refinement_layer = torch.compile(model.refinement_layer, dynamic=False)
            for layer in model.local_feature_transformer.layers:
                layer.self_attention = torch.compile(layer.self_attention, dynamic=False)
                layer.cross_attention = torch.compile(layer.cross_attention, dynamic=False)
        self.model = model

    @property
    def model_name(self) -> str:
        return f'eloftr:{self.weights}'

    def extract(self, image: torch.Tensor):
        if self.conf['channels_last']:
            image = image.contiguous(memory_format=torch.channels_last)
        return self.model.extract(image)

    def match(self, image0, image1) -> BackendMatches:
        result = self.model.match_features(image0.features, image1.features)
        return BackendMatches(result['keypoints0'], result['keypoints1'], result['scores'])
