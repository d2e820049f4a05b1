"""EfficientLoFTR weights: the official and Hugging Face formats, and loading either.

Formats read (from a file or directory path):
- official (zju3dv/EfficientLoFTR, e.g. ``eloftr_outdoor.ckpt``): a torch checkpoint whose
  ``state_dict`` has keys such as ``matcher.backbone.layer1.0.rbr_dense.conv.weight`` (the
  ``matcher.`` prefix of the Lightning module is optional, as in the original loader);
- Hugging Face (``zju-community/efficientloftr``, ``zju-community/matchanything_eloftr``): a
  directory with ``config.json`` and ``model.safetensors`` as transformers'
  ``EfficientLoFTRForKeypointMatching.save_pretrained`` writes it (keys such as
  ``efficientloftr.backbone.stages.1.blocks.0.conv1.conv.weight``); a lone ``.safetensors``
  file uses the default configuration;
- native: the state dict of :class:`EfficientLoFTR` (Hugging Face keys without the
  ``efficientloftr.`` prefix), in a torch file.

The official <-> Hugging Face correspondence is ONE table of module paths,
:func:`official_to_hf_modules`, built from the per-module rules below and used in both directions.
"""
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import torch

from loftr_ros.core.errors import ConfigError, WeightsError
from loftr_ros.core.models.efficientloftr import EfficientLoFTR

HF_MODEL_PREFIX = 'efficientloftr.'
OFFICIAL_PREFIX = 'matcher.'

# Module renames inside one RepVGG block, one attention layer, one fine-pyramid level:
# (official, Hugging Face).
BLOCK_RULES = (
    ('rbr_dense.conv', 'conv1.conv'),
    ('rbr_dense.bn', 'conv1.norm'),
    ('rbr_1x1.conv', 'conv2.conv'),
    ('rbr_1x1.bn', 'conv2.norm'),
    ('rbr_identity', 'identity'),
)
ATTENTION_RULES = (
    ('aggregate', 'aggregation.q_aggregation'),
    ('norm1', 'aggregation.norm'),
    ('q_proj', 'attention.q_proj'),
    ('k_proj', 'attention.k_proj'),
    ('v_proj', 'attention.v_proj'),
    ('merge', 'attention.o_proj'),
    ('mlp.0', 'mlp.fc1'),
    ('mlp.2', 'mlp.fc2'),
    ('norm2', 'mlp.layer_norm'),
)
PYRAMID_RULES = (
    ('outconv', 'out_conv1'),
    ('outconv2.0', 'out_conv2'),
    ('outconv2.1', 'batch_norm'),
    ('outconv2.3', 'out_conv3'),
)

# Hugging Face config.json field -> EfficientLoFTR.default_conf key.
HF_CONFIG_FIELDS = {
    'stage_num_blocks': 'stage_blocks',
    'stage_stride': 'stage_strides',
    'out_features': 'stage_channels',
    'hidden_size': 'hidden_size',
    'num_attention_heads': 'num_heads',
    'num_attention_layers': 'num_layers',
    'q_aggregation_kernel_size': 'q_aggregation',
    'kv_aggregation_kernel_size': 'kv_aggregation',
    'batch_norm_eps': 'batch_norm_eps',
    'fine_kernel_size': 'fine_window',
    'fine_matching_slice_dim': 'fine_slice_dim',
    'fine_matching_regress_temperature': 'fine_temperature',
    'coarse_matching_threshold': 'coarse_threshold',
    'coarse_matching_temperature': 'coarse_temperature',
    'coarse_matching_border_removal': 'border_removal',
    'coarse_matching_skip_softmax': 'skip_softmax',
}
# Hugging Face config values this implementation supports only as published.
HF_FIXED_VALUES = {
    'activation_function': 'relu',
    'mlp_activation_function': 'leaky_relu',
    'attention_bias': False,
}


def official_to_hf_modules(conf: Dict[str, Any]) -> List[Tuple[str, str]]:
    """(official, Hugging Face) module paths of every module with weights, for `conf`."""
    if conf['stage_blocks'][0] != 1 or len(conf['stage_blocks']) != 4:
        msg = ('the official EfficientLoFTR layout has 4 backbone stages, the first a single '
               f"block; this configuration has {list(conf['stage_blocks'])}")
        raise WeightsError(msg)
    table = []
    for stage, blocks in enumerate(conf['stage_blocks']):
        for block in range(blocks):
            official = 'backbone.layer0' if stage == 0 else f'backbone.layer{stage}.{block}'
            hf = f'{HF_MODEL_PREFIX}backbone.stages.{stage}.blocks.{block}'
            table += [(f'{official}.{o}', f'{hf}.{h}') for o, h in BLOCK_RULES]
    for layer in range(conf['num_layers']):
        for offset, kind in ((0, 'self_attention'), (1, 'cross_attention')):
            official = f'loftr_coarse.layers.{2 * layer + offset}'
            hf = f'{HF_MODEL_PREFIX}local_feature_transformer.layers.{layer}.{kind}'
            table += [(f'{official}.{o}', f'{hf}.{h}') for o, h in ATTENTION_RULES]
    table.append(('fine_preprocess.layer3_outconv', 'refinement_layer.out_conv'))
    for index, level in enumerate((2, 1)):
        hf = f'refinement_layer.out_conv_layers.{index}'
        table += [(f'fine_preprocess.layer{level}_{o}', f'{hf}.{h}') for o, h in PYRAMID_RULES]
    return table


def _rename(state_dict: Dict[str, torch.Tensor], modules: Dict[str, str], source: str,
            optional_prefix: str = '') -> Dict[str, torch.Tensor]:
    """Rename each key's module path (all but the last component, after `optional_prefix`)
    through `modules`; WeightsError naming the keys (as in the file) it does not know."""
    renamed = {}
    unknown = []
    for key, value in state_dict.items():
        module, _, name = _strip(key, optional_prefix).rpartition('.')
        if module in modules:
            renamed[f'{modules[module]}.{name}'] = value
        else:
            unknown.append(key)
    if unknown:
        raise WeightsError(f'{source}: unexpected keys {_key_list(unknown)}')
    return renamed


def official_to_hf(state_dict: Dict[str, torch.Tensor], conf: Dict[str, Any],
                   source: str = 'checkpoint') -> Dict[str, torch.Tensor]:
    """Official keys (with or without 'matcher.') -> Hugging Face keys."""
    return _rename(state_dict, dict(official_to_hf_modules(conf)), source, OFFICIAL_PREFIX)


def hf_to_official(state_dict: Dict[str, torch.Tensor], conf: Dict[str, Any],
                   source: str = 'checkpoint') -> Dict[str, torch.Tensor]:
    """Hugging Face keys -> official keys (with the 'matcher.' prefix of the released files)."""
    modules = {hf: OFFICIAL_PREFIX + official for official, hf in official_to_hf_modules(conf)}
    return _rename(state_dict, modules, source)


def hf_to_native(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    return {_strip(key, HF_MODEL_PREFIX): value for key, value in state_dict.items()}


def native_to_hf(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    return {key if key.startswith('refinement_layer.') else HF_MODEL_PREFIX + key: value
            for key, value in state_dict.items()}


def conf_from_hf_config(config: Dict[str, Any], source: str) -> Dict[str, Any]:
    """EfficientLoFTR conf from a Hugging Face config.json mapping."""
    if config.get('model_type') != 'efficientloftr':
        msg = f"{source}: model_type is {config.get('model_type')!r}, expected 'efficientloftr'"
        raise WeightsError(msg)
    for field, value in HF_FIXED_VALUES.items():
        if field in config and config[field] != value:
            msg = f'{source}: {field}={config[field]!r} is not supported (only {value!r})'
            raise WeightsError(msg)
    for size, stride in (('q_aggregation_kernel_size', 'q_aggregation_stride'),
                         ('kv_aggregation_kernel_size', 'kv_aggregation_stride')):
        if config.get(size, 4) != config.get(stride, 4):
            msg = (f'{source}: {size} must equal {stride} '
                   f'(got {config.get(size)}, {config.get(stride)})')
            raise WeightsError(msg)
    heads = config.get('num_attention_heads', 8)
    if config.get('num_key_value_heads', heads) != heads:
        raise WeightsError(f'{source}: grouped key/value heads are not supported')
    rope = config.get('rope_parameters') or {}
    if (rope.get('rope_type', 'default') != 'default'
            or rope.get('partial_rotary_factor', 4.0) != 4.0):
        msg = f'{source}: only the default 2D rotary encoding is supported, got {rope}'
        raise WeightsError(msg)
    conf = {key: config[field] for field, key in HF_CONFIG_FIELDS.items() if field in config}
    conf['rope_theta'] = rope.get('rope_theta', config.get('rope_theta', 10000.0))
    for key in ('stage_blocks', 'stage_strides', 'stage_channels'):
        if key in conf:
            conf[key] = tuple(conf[key])
    return conf


def _strip(key: str, prefix: str) -> str:
    return key[len(prefix):] if key.startswith(prefix) else key


def _key_list(keys, limit: int = 8) -> str:
    keys = sorted(keys)
    shown = ', '.join(keys[:limit])
    return f'{shown} (+{len(keys) - limit} more)' if len(keys) > limit else shown


def _load_torch_file(path: Path) -> Dict[str, torch.Tensor]:
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as error:  # torch raises many types for corrupt or foreign files
        msg = f'cannot read EfficientLoFTR checkpoint {path}: {type(error).__name__}: {error}'
        raise WeightsError(msg) from None
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get('state_dict'), dict):
        checkpoint = checkpoint['state_dict']
    if not isinstance(checkpoint, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in checkpoint.items()):
        msg = (f'{path}: not a state dict (expected a mapping of names to tensors, or a '
               'checkpoint with one under "state_dict")')
        raise WeightsError(msg)
    return checkpoint


def _load_safetensors(path: Path) -> Dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise WeightsError(f'cannot read safetensors file {path}: {error}') from None


def _read_hf_config(path: Path) -> Dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except OSError as error:
        raise WeightsError(f'cannot read {path}: {error.strerror}') from None
    except json.JSONDecodeError as error:
        raise WeightsError(f'{path} is not valid JSON: {error}') from None


def detect_layout(state_dict: Dict[str, torch.Tensor]) -> str:
    """'official', 'hf', 'native' or '' from the key names."""
    keys = list(state_dict)
    if any(k.startswith(HF_MODEL_PREFIX) for k in keys):
        return 'hf'
    stripped = [_strip(k, OFFICIAL_PREFIX) for k in keys]
    if any(k.startswith(('backbone.layer', 'loftr_coarse.', 'fine_preprocess.')) for k in stripped):
        return 'official'
    if any(k.startswith(('backbone.stages.', 'local_feature_transformer.')) for k in keys):
        return 'native'
    return ''


def read_weights(path: Union[str, Path]) -> Tuple[Dict[str, Any], Dict[str, torch.Tensor], str]:
    """(conf from the file's config or {}, state dict with the file's own keys, layout)."""
    path = Path(path)
    if not path.exists():
        raise WeightsError(f'EfficientLoFTR weights not found: {path}')
    conf: Dict[str, Any] = {}
    if path.is_dir():
        config_path, weights_path = path / 'config.json', path / 'model.safetensors'
        for required in (config_path, weights_path):
            if not required.is_file():
                msg = (f'{path}: not a Hugging Face EfficientLoFTR directory, {required.name} '
                       'is missing (expected config.json and model.safetensors)')
                raise WeightsError(msg)
        conf = conf_from_hf_config(_read_hf_config(config_path), str(config_path))
        state_dict = _load_safetensors(weights_path)
    elif path.suffix == '.safetensors':
        state_dict = _load_safetensors(path)
    else:
        state_dict = _load_torch_file(path)
    layout = detect_layout(state_dict)
    if not layout:
        msg = (f'{path}: not an EfficientLoFTR checkpoint, no known key layout '
               f'(first keys: {_key_list(list(state_dict)[:5], 5)})')
        raise WeightsError(msg)
    return conf, state_dict, layout


def to_native(state_dict: Dict[str, torch.Tensor], layout: str, conf: Dict[str, Any],
              source: str) -> Dict[str, torch.Tensor]:
    if layout == 'official':
        state_dict = official_to_hf(state_dict, conf, source)
    if layout in ('official', 'hf'):
        state_dict = hf_to_native(state_dict)
    return state_dict


def from_native_key(key: str, layout: str, conf: Dict[str, Any]) -> str:
    """A native key in the naming of `layout` (for error messages)."""
    if layout == 'native':
        return key
    hf_key = next(iter(native_to_hf({key: None})))
    if layout == 'hf':
        return hf_key
    module, _, name = hf_key.rpartition('.')
    modules = {hf: OFFICIAL_PREFIX + official for official, hf in official_to_hf_modules(conf)}
    return f'{modules.get(module, module)}.{name}'


def load_state_into(model: EfficientLoFTR, state_dict: Dict[str, torch.Tensor], layout: str,
                    source: str):
    """Load a native-keyed state dict strictly; WeightsError naming missing/unexpected keys
    (in the file's own naming) or mismatched shapes."""
    expected = model.state_dict()
    optional = {k for k in expected if k.endswith('num_batches_tracked')}
    missing = set(expected) - set(state_dict) - optional
    unexpected = set(state_dict) - set(expected)
    if missing or unexpected:
        parts = []
        if missing:
            names = [from_native_key(k, layout, model.conf) for k in missing]
            parts.append(f'missing keys {_key_list(names)}')
        if unexpected:
            names = [from_native_key(k, layout, model.conf) for k in unexpected]
            parts.append(f'unexpected keys {_key_list(names)}')
        msg = (f'{source}: checkpoint does not fit the EfficientLoFTR configuration: '
               f"{'; '.join(parts)}")
        raise WeightsError(msg)
    for key, value in state_dict.items():
        if value.shape != expected[key].shape:
            msg = (f'{source}: {from_native_key(key, layout, model.conf)} has shape '
                   f'{tuple(value.shape)}, the model expects {tuple(expected[key].shape)}')
            raise WeightsError(msg)
    model.load_state_dict(state_dict, strict=False)


def load_efficientloftr(path: Union[str, Path], conf: Optional[Dict[str, Any]] = None,
                        reparameterize: bool = True) -> EfficientLoFTR:
    """EfficientLoFTR (eval mode, on the CPU) with the weights at `path` in any supported
    format. `conf` overrides the file's configuration (matching options, or the architecture
    of an official checkpoint, which carries none). Raises WeightsError."""
    file_conf, state_dict, layout = read_weights(path)
    try:
        model = EfficientLoFTR({**file_conf, **(conf or {})})
    except ConfigError as error:
        raise WeightsError(f'{path}: {error}') from None
    native = to_native(state_dict, layout, model.conf, str(path))
    load_state_into(model, native, layout, str(path))
    if reparameterize:
        model.reparameterize()
    return model.eval()


def save_hf(model: EfficientLoFTR, directory: Union[str, Path]):
    """Write `model` (not re-parameterized) as a Hugging Face directory (config.json with the
    fields of HF_CONFIG_FIELDS, model.safetensors)."""
    from safetensors.torch import save_file
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fields = {key: field for field, key in HF_CONFIG_FIELDS.items()}
    config = {fields[key]: (list(value) if isinstance(value, tuple) else value)
              for key, value in model.conf.items() if key in fields}
    config['q_aggregation_stride'] = config['q_aggregation_kernel_size']
    config['kv_aggregation_stride'] = config['kv_aggregation_kernel_size']
    config['rope_parameters'] = {'rope_theta': model.conf['rope_theta'], 'rope_type': 'default',
                                 'partial_rotary_factor': 4.0}
    config.update(HF_FIXED_VALUES, model_type='efficientloftr',
                  architectures=['EfficientLoFTRForKeypointMatching'])
    (directory / 'config.json').write_text(json.dumps(config, indent=2))
    state = {k: v.contiguous() for k, v in native_to_hf(model.state_dict()).items()}
    save_file(state, str(directory / 'model.safetensors'))


def save_official(model: EfficientLoFTR, path: Union[str, Path]):
    """Write `model` (not re-parameterized) as an official checkpoint ({'state_dict': ...})."""
    hf_state = native_to_hf(model.state_dict())
    torch.save({'state_dict': hf_to_official(hf_state, model.conf)}, str(path))


@torch.no_grad()
def synthetic_weights(model: EfficientLoFTR, images: List[torch.Tensor], seed: int = 0,
                      feature_gain: float = 3.0) -> EfficientLoFTR:
    """Give `model` (not re-parameterized) random weights that match like a trained model in
    form: the batch-norm statistics are measured on `images` ([B x 1 x H x W], sides multiples
    of 32) so that activations stay standardized through the deep backbone, and the attention
    layers' output norms are scaled by `feature_gain` so that the coarse dual softmax is peaked
    and mutual matches exist. For tests and benchmarks where no trained weights are reachable;
    the matches mean nothing."""
    generator = torch.Generator().manual_seed(seed)
    for name, parameter in model.named_parameters():
        if parameter.dim() > 1:
            fan_in = parameter[0].numel()
            values = torch.randn(parameter.shape, generator=generator) * (2.0 / fan_in) ** 0.5
        elif name.endswith('weight'):
            values = torch.rand(parameter.shape, generator=generator) + 0.5
        else:
            values = torch.randn(parameter.shape, generator=generator) * 0.1
        parameter.copy_(values)
    for layer in model.local_feature_transformer.layers:
        for block in (layer.self_attention, layer.cross_attention):
            block.mlp.layer_norm.weight.mul_(feature_gain)
    batch_norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in batch_norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the calibration passes
    model.train()
    for image0 in images:
        for image1 in images:
            model(image0, image1)
    for norm in batch_norms:
        norm.momentum = 0.1
    return model.eval()
