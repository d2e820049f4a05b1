"""EfficientLoFTR weight formats: the official <-> Hugging Face key table in both directions,
loading either format, and the errors of malformed or mismatched checkpoints."""
import json

import pytest
import torch

from loftr_ros.core.errors import WeightsError
from loftr_ros.core.models.efficientloftr import EfficientLoFTR
from loftr_ros.core.models.efficientloftr_weights import (hf_to_official, load_efficientloftr,
                                                          native_to_hf, official_to_hf,
                                                          official_to_hf_modules, save_hf,
                                                          save_official)

SMALL_CONF = dict(stage_blocks=(1, 1, 2, 2), stage_channels=(16, 16, 32, 64), hidden_size=64,
                  num_layers=2)

# Read off the original module tree (zju3dv/EfficientLoFTR: backbone/backbone.py, repvgg.py,
# loftr_module/transformer.py, fine_preprocess.py) and transformers' modeling_efficientloftr.py.
KNOWN_PAIRS = [
    ('matcher.backbone.layer0.rbr_dense.conv.weight',
     'efficientloftr.backbone.stages.0.blocks.0.conv1.conv.weight'),
    ('matcher.backbone.layer2.0.rbr_1x1.bn.running_mean',
     'efficientloftr.backbone.stages.2.blocks.0.conv2.norm.running_mean'),
    ('matcher.backbone.layer3.13.rbr_identity.running_var',
     'efficientloftr.backbone.stages.3.blocks.13.identity.running_var'),
    ('matcher.loftr_coarse.layers.0.aggregate.weight',
     'efficientloftr.local_feature_transformer.layers.0.self_attention.aggregation.'
     'q_aggregation.weight'),
    ('matcher.loftr_coarse.layers.4.merge.weight',
     'efficientloftr.local_feature_transformer.layers.2.self_attention.attention.o_proj.weight'),
    ('matcher.loftr_coarse.layers.7.mlp.2.weight',
     'efficientloftr.local_feature_transformer.layers.3.cross_attention.mlp.fc2.weight'),
    ('matcher.loftr_coarse.layers.5.norm1.bias',
     'efficientloftr.local_feature_transformer.layers.2.cross_attention.aggregation.norm.bias'),
    ('matcher.fine_preprocess.layer3_outconv.weight', 'refinement_layer.out_conv.weight'),
    ('matcher.fine_preprocess.layer2_outconv.weight',
     'refinement_layer.out_conv_layers.0.out_conv1.weight'),
    ('matcher.fine_preprocess.layer2_outconv2.1.running_mean',
     'refinement_layer.out_conv_layers.0.batch_norm.running_mean'),
    ('matcher.fine_preprocess.layer1_outconv2.3.weight',
     'refinement_layer.out_conv_layers.1.out_conv3.weight'),
]


@pytest.fixture(scope='module')
def hf_state():
    """Hugging Face state dict of the published architecture."""
    return native_to_hf(EfficientLoFTR().state_dict())


def test_table_round_trips_in_both_directions(hf_state):
    conf = EfficientLoFTR.default_conf
    official = hf_to_official(hf_state, conf)
    assert official_to_hf(official, conf).keys() == hf_state.keys()
    assert hf_to_official(official_to_hf(official, conf), conf).keys() == official.keys()
    modules = official_to_hf_modules(conf)
    assert len({o for o, _ in modules}) == len({h for _, h in modules}) == len(modules)


@pytest.mark.parametrize('official_key, hf_key', KNOWN_PAIRS)
def test_table_maps_known_keys(hf_state, official_key, hf_key):
    conf = EfficientLoFTR.default_conf
    tensor = torch.zeros(1)
    assert hf_key in hf_state
    assert list(official_to_hf({official_key: tensor}, conf)) == [hf_key]
    assert list(hf_to_official({hf_key: tensor}, conf)) == [official_key]
    # The original loader accepts keys without the Lightning module's prefix.
    bare = official_key.removeprefix('matcher.')
    assert list(official_to_hf({bare: tensor}, conf)) == [hf_key]


def test_hf_keys_and_shapes_are_transformers(hf_state):
    transformers = pytest.importorskip('transformers')
    reference = transformers.EfficientLoFTRForKeypointMatching(transformers.EfficientLoFTRConfig())
    expected = reference.state_dict()
    assert hf_state.keys() == expected.keys()
    assert all(hf_state[k].shape == expected[k].shape for k in expected)


def test_saved_hf_directory_loads_in_transformers(tmp_path):
    transformers = pytest.importorskip('transformers')
    model = EfficientLoFTR(SMALL_CONF)
    save_hf(model, tmp_path)
    reference, info = transformers.EfficientLoFTRForKeypointMatching.from_pretrained(
        tmp_path, output_loading_info=True)
    assert not info['missing_keys'] and not info['unexpected_keys']
    assert reference.config.out_features == [16, 16, 32, 64]
    torch.testing.assert_close(reference.refinement_layer.out_conv.weight,
                               model.refinement_layer.out_conv.weight)


@pytest.mark.parametrize('form', ['hf', 'official', 'official-bare', 'safetensors'])
def test_loads_every_format(tmp_path, form):
    from safetensors.torch import save_file
    model = EfficientLoFTR(SMALL_CONF)
    with torch.no_grad():
        model.backbone.stages[0].blocks[0].conv1.conv.weight.fill_(0.25)
    conf = SMALL_CONF
    if form == 'hf':
        save_hf(model, tmp_path / 'hf')
        path, conf = tmp_path / 'hf', None
    elif form == 'official':
        path = tmp_path / 'model.ckpt'
        save_official(model, path)
    elif form == 'official-bare':
        path = tmp_path / 'model.pth'
        state = hf_to_official(native_to_hf(model.state_dict()), model.conf)
        torch.save({k.removeprefix('matcher.'): v for k, v in state.items()}, path)
    else:
        path = tmp_path / 'model.safetensors'
        save_file(native_to_hf(model.state_dict()), str(path))
    loaded = load_efficientloftr(path, conf, reparameterize=False)
    assert loaded.conf['stage_blocks'] == (1, 1, 2, 2)
    assert torch.all(loaded.backbone.stages[0].blocks[0].conv1.conv.weight == 0.25)


@pytest.fixture
def official_state():
    model = EfficientLoFTR(SMALL_CONF)
    return hf_to_official(native_to_hf(model.state_dict()), model.conf)


def test_missing_key_is_named(tmp_path, official_state):
    del official_state['matcher.backbone.layer2.1.rbr_dense.conv.weight']
    torch.save({'state_dict': official_state}, tmp_path / 'model.ckpt')
    with pytest.raises(WeightsError,
                       match=r'model\.ckpt: .*missing keys matcher\.backbone\.layer2\.1\.rbr_dense'
                             r'\.conv\.weight'):
        load_efficientloftr(tmp_path / 'model.ckpt', SMALL_CONF)


def test_unexpected_official_key_is_named(tmp_path, official_state):
    # A re-parameterized (deploy) checkpoint has fused convolutions the table does not know.
    official_state['matcher.backbone.layer1.0.rbr_reparam.weight'] = torch.zeros(16, 16, 3, 3)
    torch.save({'state_dict': official_state}, tmp_path / 'model.ckpt')
    with pytest.raises(WeightsError,
                       match=r'unexpected keys matcher\.backbone\.layer1\.0\.rbr_reparam\.weight'):
        load_efficientloftr(tmp_path / 'model.ckpt', SMALL_CONF)


def test_unexpected_hf_key_is_named(tmp_path):
    save_hf(EfficientLoFTR(SMALL_CONF), tmp_path)
    from safetensors.torch import load_file, save_file
    state = load_file(tmp_path / 'model.safetensors')
    state['efficientloftr.backbone.stages.3.blocks.2.conv1.conv.weight'] = torch.zeros(1)
    save_file(state, str(tmp_path / 'model.safetensors'))
    with pytest.raises(WeightsError, match=r'unexpected keys efficientloftr\.backbone\.stages\.3'
                                           r'\.blocks\.2\.conv1\.conv\.weight'):
        load_efficientloftr(tmp_path)


def test_architecture_mismatch_is_named(tmp_path):
    """A reduced-architecture official checkpoint loaded as the published architecture."""
    save_official(EfficientLoFTR(SMALL_CONF), tmp_path / 'small.ckpt')
    with pytest.raises(WeightsError, match=r'missing keys matcher\.backbone\.layer1\.1\.rbr_1x1'):
        load_efficientloftr(tmp_path / 'small.ckpt')


def test_shape_mismatch_is_named(tmp_path, official_state):
    official_state['matcher.loftr_coarse.layers.1.merge.weight'] = torch.zeros(3, 3)
    torch.save({'state_dict': official_state}, tmp_path / 'model.ckpt')
    with pytest.raises(WeightsError, match=r'matcher\.loftr_coarse\.layers\.1\.merge\.weight has '
                                           r'shape \(3, 3\), the model expects \(64, 64\)'):
        load_efficientloftr(tmp_path / 'model.ckpt', SMALL_CONF)


def test_unreadable_or_foreign_files(tmp_path):
    with pytest.raises(WeightsError, match='weights not found: .*absent.ckpt'):
        load_efficientloftr(tmp_path / 'absent.ckpt')
    (tmp_path / 'garbage.ckpt').write_bytes(b'not a checkpoint')
    with pytest.raises(WeightsError, match='cannot read EfficientLoFTR checkpoint .*garbage.ckpt'):
        load_efficientloftr(tmp_path / 'garbage.ckpt')
    torch.save({'state_dict': {'encoder.weight': torch.zeros(1)}}, tmp_path / 'other.ckpt')
    with pytest.raises(WeightsError, match=r'other.ckpt: not an EfficientLoFTR checkpoint.*'
                                           r'encoder\.weight'):
        load_efficientloftr(tmp_path / 'other.ckpt')
    torch.save([1, 2], tmp_path / 'list.pt')
    with pytest.raises(WeightsError, match='list.pt: not a state dict'):
        load_efficientloftr(tmp_path / 'list.pt')


def test_bad_hf_directories(tmp_path):
    save_hf(EfficientLoFTR(SMALL_CONF), tmp_path)
    config = json.loads((tmp_path / 'config.json').read_text())
    (tmp_path / 'config.json').write_text(json.dumps({**config, 'model_type': 'lightglue'}))
    with pytest.raises(WeightsError, match="config.json: model_type is 'lightglue'"):
        load_efficientloftr(tmp_path)
    (tmp_path / 'config.json').write_text(json.dumps({**config, 'activation_function': 'gelu'}))
    with pytest.raises(WeightsError, match="activation_function='gelu' is not supported"):
        load_efficientloftr(tmp_path)
    (tmp_path / 'config.json').write_text('{')
    with pytest.raises(WeightsError, match='config.json is not valid JSON'):
        load_efficientloftr(tmp_path)
    (tmp_path / 'config.json').unlink()
    with pytest.raises(WeightsError, match='config.json is missing'):
        load_efficientloftr(tmp_path)
