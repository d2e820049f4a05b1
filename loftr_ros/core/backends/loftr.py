"""The original LoFTR (Sun et al., CVPR 2021) through kornia.feature.LoFTR.

Weights: a local official checkpoint (``outdoor_ds.ckpt``, ``indoor_ds_new.ckpt``: a dict with a
``state_dict``, keys optionally prefixed ``matcher.``) or, with ``weights: ''``, kornia's
published copy of the chosen variant, taken from torch hub's cache or downloaded.
"""
import copy
import pickle

import torch

from loftr_ros.core.backends import import_optional
from loftr_ros.core.backends.base import Backend, BackendMatches
from loftr_ros.core.errors import ConfigError, WeightsError
from loftr_ros.core.weights import is_local_reference, local_weights, url_checkpoint

_VARIANTS = ('outdoor', 'indoor', 'indoor_new')


class LoFTRBackend(Backend):
    name = 'loftr'
    DEFAULT_CONF = {
        # Which published model: 'outdoor' (MegaDepth), 'indoor' or 'indoor_new' (ScanNet).
        # Chooses kornia's download when 'weights' is '', and for a local checkpoint whether
        # the positional encoding has the fix 'indoor_new' was trained with.
        'variant': 'outdoor',
    }
    # The coarse level works on 1/8 resolution.
    stride = 8
    # The published models were trained and evaluated at 640x480. The original demo resamples
    # every image to 640x480, whatever its aspect; here the long side is brought to 640 (aspect
    # kept) and padded to 8. Not measured: no trained weights are reachable here.
    default_resize = 640
    grayscale = True
    frame_offset = 0.5  # kornia's LoFTR docstring: pixel centres at (x + 0.5, y + 0.5)

    def __init__(self, weights, options, device, dtype):
        super().__init__(weights, options, device, dtype)
        variant = self.choice_option('variant', _VARIANTS)
        kornia_loftr = import_optional('kornia.feature.loftr.loftr', self.name)

        if weights and not is_local_reference(weights):
            msg = (f"loftr backend: weights must be a local checkpoint file (.ckpt) or '' for "
                   f"kornia's '{variant}' model, got '{weights}'")
            raise ConfigError(msg)
        self.weights = weights or variant
        if weights:
            path = local_weights(weights, self.name)
        else:
            path = url_checkpoint(kornia_loftr.urls[variant], self.name, f'loftr {variant}')
        model_config = copy.deepcopy(kornia_loftr.default_cfg)
        model_config['coarse']['temp_bug_fix'] = variant == 'indoor_new'
        self.model = kornia_loftr.LoFTR(pretrained=None, config=model_config)
        self.model.load_state_dict(_checkpoint_state_dict(path, self.name, self.model))
        self.model.to(device).eval()

    @property
    def model_name(self) -> str:
        return f'loftr:{self.weights}'

    def extract(self, image: torch.Tensor):
        """The backbone's coarse (position-encoded) and fine feature maps."""
        return self.model.extract_features(image)

    def match(self, image0, image1, confidence_threshold) -> BackendMatches:
        # LoFTR returns only coarse matches above its `thr`, which it reads at each call; the
        # Matcher's threshold is the same test on the same score.
        self.model.coarse_matching.thr = confidence_threshold
        data = {'features0': image0.features, 'features1': image1.features}
        if any(image.transform.resized_size != image.transform.padded_size
               for image in (image0, image1)):
            # Keep padded cells out of the coarse attention and matching, as LoFTR does for
            # padded training images.
            data['mask0'] = _valid_mask(image0)
            data['mask1'] = _valid_mask(image1)
        output = self.model(data)
        return BackendMatches(output['keypoints0'], output['keypoints1'], output['confidence'])


def _valid_mask(image) -> torch.Tensor:
    """[1 x H x W] bool mask of the resized (not padded) part of a model input."""
    width, height = image.transform.resized_size
    mask = torch.zeros(image.tensor.shape[-2:], dtype=torch.bool, device=image.tensor.device)
    mask[:height, :width] = True
    return mask[None]


def _checkpoint_state_dict(path, backend: str, model: torch.nn.Module) -> dict:
    """The state dict of an official LoFTR checkpoint (dict with 'state_dict', or the state
    dict itself), checked against the model so that a wrong file names its keys."""
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as error:
        msg = f"backend '{backend}': cannot read checkpoint {path}: {error}"
        raise WeightsError(msg) from None
    state_dict = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state_dict, dict):
        msg = f"backend '{backend}': checkpoint {path} holds no state_dict"
        raise WeightsError(msg)
    state_dict = {key[len('matcher.'):] if key.startswith('matcher.') else key: value
                  for key, value in state_dict.items()}
    expected = set(model.state_dict())
    missing = sorted(expected - set(state_dict))
    unexpected = sorted(set(state_dict) - expected)
    if missing or unexpected:
        msg = (f"backend '{backend}': checkpoint {path} does not fit LoFTR: "
               f'{len(missing)} missing key(s) {missing[:5]}, {len(unexpected)} unexpected '
               f'key(s) {unexpected[:5]}')
        raise WeightsError(msg)
    return state_dict
