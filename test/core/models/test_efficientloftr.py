"""Native EfficientLoFTR against transformers' EfficientLoFTRForKeypointMatching (the
reference), with the same random weights written in both published formats.

Every stage is compared with transformers': backbone maps, features after the attention layers,
the coarse confidence matrix, the coarse match set and the fine feature windows. The sub-pixel
refinement is compared with the original implementation's algorithm (zju3dv/EfficientLoFTR
`fine_matching.py`, transcribed below with the kornia functions it uses) applied to
transformers' fine windows, because transformers' own refinement departs from the original
(see the docstring of loftr_ros.core.models.efficientloftr): its pairing of coarse matches and
its stage-1 offsets are wrong, which `test_transformers_refinement_deviates` pins down so that
this reasoning is checked whenever transformers changes.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from loftr_ros.core.errors import ConfigError
from loftr_ros.core.models.efficientloftr import (EfficientLoFTR, dual_softmax, gather_windows,
                                                  rotary_embedding, upsample2)
from loftr_ros.core.models.efficientloftr_weights import (conf_from_hf_config, hf_to_native,
                                                          load_efficientloftr, native_to_hf,
                                                          save_official, synthetic_weights)

transformers = pytest.importorskip('transformers')

# A reduced architecture (fewer blocks and channels) so that transformers runs in about a second
# at 640x480; 8 heads as in the published model (transformers' rotary encoding assumes it).
SMALL_HF_CONFIG = dict(stage_num_blocks=[1, 1, 2, 2], out_features=[16, 16, 32, 64],
                       hidden_size=64, num_attention_layers=2)


def photo_pair(width, height, shift=(2, 1)):
    """A real photo (scikit-image's astronaut, grayscale) and a copy shifted by `shift` pixels,
    as [1 x 1 x H x W] float32 tensors in [0, 1]."""
    import cv2
    import skimage.data
    gray = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)
    gray = cv2.resize(gray, (width + 16, width + 16), interpolation=cv2.INTER_AREA)
    gray = gray.astype(np.float32) / 255
    dx, dy = shift
    image0 = gray[8:8 + height, 8:8 + width]
    image1 = gray[8 + dy:8 + dy + height, 8 + dx:8 + dx + width]
    return [torch.from_numpy(np.ascontiguousarray(i))[None, None] for i in (image0, image1)]


def small_conf():
    return conf_from_hf_config(transformers.EfficientLoFTRConfig(**SMALL_HF_CONFIG).to_dict(),
                               'test config')


def pad32(image):
    height, width = image.shape[-2:]
    return F.pad(image, [0, -width % 32, 0, -height % 32])


@pytest.fixture(scope='module')
def weights_dir(tmp_path_factory):
    """Random weights (batch norms calibrated on the photo, peaked coarse confidences) written
    by transformers' save_pretrained, and as an official checkpoint through our table."""
    directory = tmp_path_factory.mktemp('eloftr_weights')
    hf_config = transformers.EfficientLoFTRConfig(**SMALL_HF_CONFIG)
    model = EfficientLoFTR(small_conf())
    synthetic_weights(model, [photo_pair(640, 480)[0]], seed=1, feature_gain=3.0)
    reference = transformers.EfficientLoFTRForKeypointMatching(hf_config)
    reference.load_state_dict(native_to_hf(model.state_dict()), strict=True)
    reference.save_pretrained(directory / 'hf')
    save_official(model, directory / 'eloftr_official.ckpt')
    return directory


@pytest.fixture(scope='module')
def reference(weights_dir):
    model = transformers.EfficientLoFTRForKeypointMatching.from_pretrained(weights_dir / 'hf')
    return model.eval()


def run_reference(reference, image0, image1):
    """transformers' outputs and intermediate tensors for one pair (one forward pass)."""
    captured = {}

    def capture(module, name, key):
        method = getattr(module, name)

        def wrapper(*args, **kwargs):
            output = method(*args, **kwargs)
            captured[key] = output
            return output
        setattr(module, name, wrapper)

    capture(reference.efficientloftr.backbone, 'forward', 'backbone')
    capture(reference.efficientloftr.local_feature_transformer, 'forward', 'coarse')
    capture(reference.refinement_layer, 'forward', 'windows')
    match_scores = reference._get_matches_from_scores

    def capture_scores(scores):
        captured['confidence'] = scores.flatten(1, 2).flatten(2)
        return match_scores(scores)

    reference._get_matches_from_scores = capture_scores
    pixels = torch.stack([image0, image1], dim=1).expand(-1, -1, 3, -1, -1)
    try:
        with torch.inference_mode():
            outputs = reference(pixels)
    finally:
        for module, name in ((reference.efficientloftr.backbone, 'forward'),
                             (reference.efficientloftr.local_feature_transformer, 'forward'),
                             (reference.refinement_layer, 'forward'),
                             (reference, '_get_matches_from_scores')):
            delattr(module, name)
    captured['windows0'], captured['windows1'] = captured.pop('windows')
    return outputs, captured


@pytest.fixture(scope='module')
def reference_runs(reference):
    """transformers' run per image size, computed once for all tests of this module."""
    runs = {}

    def run(size):
        if size not in runs:
            image0, image1 = (pad32(image) for image in photo_pair(*size))
            runs[size] = (image0, image1, run_reference(reference, image0, image1))
        return runs[size]
    return run


def original_fine_matching(feat_0, feat_1, mkpts0_c, mkpts1_c, slicedim=8, temperature=10.0):
    """FineMatching.forward of zju3dv/EfficientLoFTR (src/loftr/utils/fine_matching.py) for
    one pair at scale 1, transcribed."""
    from kornia.geometry.subpix import dsnt
    from kornia.geometry import create_meshgrid
    M, WW, C = feat_0.shape
    W = int(WW ** 0.5)
    feat_f0, feat_f1 = feat_0[..., :-slicedim], feat_1[..., :-slicedim]
    feat_ff0, feat_ff1 = feat_0[..., -slicedim:], feat_1[..., -slicedim:]
    feat_f0, feat_f1 = feat_f0 / C**.5, feat_f1 / C**.5
    conf_matrix_f = torch.einsum('mlc,mrc->mlr', feat_f0, feat_f1)
    conf_matrix_ff = torch.einsum('mlc,mrc->mlr', feat_ff0, feat_ff1 / slicedim**.5)
    softmax_matrix_f = F.softmax(conf_matrix_f, 1) * F.softmax(conf_matrix_f, 2)
    softmax_matrix_f = softmax_matrix_f.reshape(M, WW, W + 2, W + 2)
    softmax_matrix_f = softmax_matrix_f[..., 1:-1, 1:-1].reshape(M, WW, WW)
    # get_fine_ds_match
    _, idx = torch.max(softmax_matrix_f.reshape(M, -1), dim=-1)
    idx = idx[:, None]
    idx_l, idx_r = idx // WW, idx % WW
    grid = create_meshgrid(W, W, False, feat_0.device) - W // 2 + 0.5
    grid = grid.reshape(1, -1, 2).expand(M, -1, -1)
    delta_l = torch.gather(grid, 1, idx_l.unsqueeze(-1).expand(-1, -1, 2))
    delta_r = torch.gather(grid, 1, idx_r.unsqueeze(-1).expand(-1, -1, 2))
    mkpts0_f = (mkpts0_c[:, None, :] + delta_l).reshape(-1, 2)
    mkpts1_f = (mkpts1_c[:, None, :] + delta_r).reshape(-1, 2)
    # second stage
    m_ids = torch.arange(M, dtype=torch.long).unsqueeze(-1)
    idx_r_iids, idx_r_jids = idx_r // W, idx_r % W
    m_ids, idx_l = m_ids.reshape(-1), idx_l.reshape(-1)
    idx_r_iids, idx_r_jids = idx_r_iids.reshape(-1), idx_r_jids.reshape(-1)
    delta = create_meshgrid(3, 3, True, feat_0.device).to(torch.long)
    m_ids = m_ids[..., None, None].expand(-1, 3, 3)
    idx_l = idx_l[..., None, None].expand(-1, 3, 3)
    idx_r_iids = idx_r_iids[..., None, None].expand(-1, 3, 3) + delta[None, ..., 1]
    idx_r_jids = idx_r_jids[..., None, None].expand(-1, 3, 3) + delta[None, ..., 0]
    conf_matrix_ff = conf_matrix_ff.reshape(M, WW, W + 2, W + 2)
    conf_matrix_ff = conf_matrix_ff[m_ids, idx_l, idx_r_iids, idx_r_jids].reshape(-1, 9)
    heatmap = F.softmax(conf_matrix_ff / temperature, -1).reshape(-1, 3, 3)
    coords_normalized = dsnt.spatial_expectation2d(heatmap[None], True)[0]
    return mkpts0_f, mkpts1_f + coords_normalized * (3 // 2)


def assert_close_scaled(actual, expected, name, tolerance=1e-4):
    """Within `tolerance` of the tensor's largest magnitude: the native model reorders some
    float operations (fused convolutions, the split MLP), so equal up to rounding."""
    atol = tolerance * max(1.0, expected.abs().max().item())
    torch.testing.assert_close(actual, expected, rtol=0, atol=atol,
                               msg=lambda m: f'{name}: {m}')


def assert_parity(native, reference_run, confidence_tolerance=1e-4):
    image0, image1, (outputs, expected) = reference_run
    width = image0.shape[-1]
    with torch.inference_mode():
        backbone = [native.backbone(image) for image in (image0, image1)]
        intermediates = {}
        result = native.match_features(native.extract(image0), native.extract(image1),
                                       intermediates)

    # Stages, so that a mismatch points at its stage.
    for index, name in enumerate(('1/2', '1/4', '1/8')):
        features = torch.cat([backbone[0][index], backbone[1][index]])
        assert_close_scaled(features, expected['backbone'][index], f'backbone {name}')
    for side in (0, 1):
        assert_close_scaled(intermediates[f'coarse{side}'], expected['coarse'][:, side],
                            f'image {side} after attention')
    torch.testing.assert_close(intermediates['confidence'], expected['confidence'], rtol=0,
                               atol=confidence_tolerance, msg=lambda m: f'coarse confidence: {m}')

    # The same coarse match set: transformers' matches[:, 1] gives image 0's partners.
    partners = outputs.matches[0, 1]
    ref_ids0 = torch.nonzero(partners > -1).squeeze(1)
    assert len(ref_ids0) >= 20, 'weights too flat for a meaningful comparison'
    assert torch.equal(intermediates['ids0'], ref_ids0)
    assert torch.equal(intermediates['ids1'], partners[ref_ids0])
    torch.testing.assert_close(result['scores'], outputs.matching_scores[0, 1, ref_ids0],
                               rtol=0, atol=confidence_tolerance)

    # Fine windows at the matched cells (transformers computes them for every cell).
    ids0, ids1 = intermediates['ids0'], intermediates['ids1']
    assert_close_scaled(intermediates['windows0'], expected['windows0'][0, ids0], 'windows 0')
    assert_close_scaled(intermediates['windows1'], expected['windows1'][0, ids1], 'windows 1')

    # Refinement of every match: the original algorithm on transformers' windows.
    grid_width = width // 8
    coarse0, coarse1 = (torch.stack([ids % grid_width, ids // grid_width], -1) * 8.0
                        for ids in (ids0, ids1))
    keypoints0, keypoints1 = original_fine_matching(
        expected['windows0'][0, ids0], expected['windows1'][0, ids1], coarse0, coarse1)
    torch.testing.assert_close(result['keypoints0'], keypoints0, rtol=0, atol=1e-3)
    torch.testing.assert_close(result['keypoints1'], keypoints1, rtol=0, atol=1e-3)
    return result


@pytest.mark.slow
@pytest.mark.parametrize('size', [(640, 480), (752, 480)])
def test_parity_with_transformers(weights_dir, reference_runs, size):
    """The three-branch model from the Hugging Face directory: the same arithmetic as the
    reference up to rounding."""
    native = load_efficientloftr(weights_dir / 'hf', reparameterize=False)
    result = assert_parity(native, reference_runs(size))
    # 752x480 is padded to 768x480: matches exist in the valid part (the Matcher drops the rest).
    assert (result['keypoints0'][:, 0] < size[0]).sum() >= 20


@pytest.mark.slow
def test_parity_from_official_checkpoint(weights_dir, reference_runs):
    """The official-format checkpoint (written through the key table) holds the very tensors of
    the Hugging Face directory, and matches like the reference. It carries no configuration:
    the reduced architecture is given."""
    official = load_efficientloftr(weights_dir / 'eloftr_official.ckpt', small_conf(),
                                   reparameterize=False)
    from_hf = load_efficientloftr(weights_dir / 'hf', reparameterize=False).state_dict()
    state = official.state_dict()
    assert state.keys() == from_hf.keys()
    assert all(torch.equal(state[key], from_hf[key]) for key in state)
    assert_parity(official, reference_runs((752, 480)))


@pytest.mark.slow
def test_parity_of_reparameterized_model(weights_dir, reference_runs):
    """The deployed (fused) model: one 3x3 convolution sums in another order than three
    branches, and the peaked test weights amplify the rounding in the coarse confidences
    (similarities up to ~700): 5e-4 there, everything else as tight."""
    native = load_efficientloftr(weights_dir / 'hf', reparameterize=True)
    assert_parity(native, reference_runs((640, 480)), confidence_tolerance=5e-4)


def test_reparameterized_model_equals_three_branch_model(weights_dir):
    three_branch = load_efficientloftr(weights_dir / 'hf', reparameterize=False)
    fused = load_efficientloftr(weights_dir / 'hf', reparameterize=True)
    assert fused.backbone.stages[3].blocks[1].conv1 is None
    image = photo_pair(320, 256)[0]
    with torch.inference_mode():
        for a, b in zip(three_branch.backbone(image), fused.backbone(image)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
        features = three_branch.extract(image)
        coarse = features.coarse / features.coarse.shape[1] ** 0.5
        torch.testing.assert_close(three_branch.refinement_layer(coarse, features.projected),
                                   fused.refinement_layer(coarse, features.projected),
                                   rtol=1e-4, atol=1e-4)


def test_reused_features_give_the_same_matches(weights_dir):
    """Consecutive pairs (t-1, t): features of frame t computed once, reused as reference."""
    model = load_efficientloftr(weights_dir / 'hf')
    frames = [photo_pair(320, 256, shift=(2 * t, t))[1] for t in range(3)]
    with torch.inference_mode():
        features = [model.extract(frame) for frame in frames]
        for t in (1, 2):
            reused = model.match_features(features[t - 1], features[t])
            scratch = model(frames[t - 1], frames[t])
            assert len(scratch['scores']) > 0
            for key in scratch:
                assert torch.equal(reused[key], scratch[key]), key


def test_different_image_sizes_match(weights_dir):
    model = load_efficientloftr(weights_dir / 'hf')
    image0 = photo_pair(320, 256)[0]
    image1 = pad32(photo_pair(384, 288)[1])
    with torch.inference_mode():
        result = model(image0, image1)
    assert result['keypoints0'].shape == result['keypoints1'].shape
    assert result['scores'].dtype == torch.float32


def test_rejects_input_not_padded_to_32():
    model = EfficientLoFTR(small_conf())
    with pytest.raises(ValueError, match='multiples of 32'):
        model.extract(torch.zeros(1, 1, 100, 96))
    with pytest.raises(ValueError, match='grayscale'):
        model.extract(torch.zeros(1, 3, 96, 96))


def test_hf_prefix_conversion_round_trip():
    model = EfficientLoFTR()
    native = model.state_dict()
    assert hf_to_native(native_to_hf(native)).keys() == native.keys()


def test_transformers_refinement_deviates(reference):
    """The two transformers defects the native model does not reproduce (see the module
    docstring): if this fails, transformers changed and the parity tests may compare more."""
    # Stage-1 offsets are gathered along the match dimension: with fewer matches than window
    # pixels the lookup leaves the tensor; otherwise every offset is the first pixel's.
    confidence = torch.zeros(1, 3, 64, 64)
    confidence[0, :, 10, 20] = 1.0
    with pytest.raises(RuntimeError, match='out of bounds'):
        reference._get_first_stage_fine_matching(confidence, torch.zeros(1, 2, 3, 2), 64, 1.0)
    confidence = torch.zeros(1, 70, 64, 64)
    confidence[0, :, 10, 20] = 1.0
    _, fine = reference._get_first_stage_fine_matching(confidence, torch.zeros(1, 2, 70, 2),
                                                       64, 1.0)
    assert torch.all(fine == -3.5)
    # Coarse partners: two crossing matches on a 6x6 grid (cells 14 <-> 15 and 15 <-> 14,
    # inside the 2-cell border) come out slot by slot as (15, 15) and (14, 14).
    scores = torch.zeros(1, 6, 6, 6, 6)
    scores[0, 2, 2, 2, 3] = scores[0, 2, 3, 2, 2] = 0.9
    matches, _ = reference._get_matches_from_scores(scores)
    slots = {(matches[0, 0, k].item(), matches[0, 1, k].item()) for k in (14, 15)}
    assert slots == {(15, 15), (14, 14)}


def test_optimized_mode_scores_are_dual_softmax_confidences(weights_dir):
    """Skipping the softmaxes selects by raw similarity; the reported scores are still the
    dual-softmax confidences of the selected entries."""
    model = load_efficientloftr(weights_dir / 'hf',
                                {'skip_softmax': True, 'coarse_threshold': 0.0})
    image0, image1 = photo_pair(320, 256)
    intermediates = {}
    with torch.inference_mode():
        result = model.match_features(model.extract(image0), model.extract(image1),
                                      intermediates)
    similarity = intermediates['confidence']
    confidence = similarity.softmax(dim=1) * similarity.softmax(dim=2)
    assert len(result['scores']) >= 20
    expected = confidence[0, intermediates['ids0'], intermediates['ids1']]
    torch.testing.assert_close(result['scores'], expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize('size, padding', [(8, 0), (10, 1)])
def test_windows_equal_unfolding_the_upsampled_map(size, padding):
    """gather_windows samples the full-resolution map without making it: equal to unfolding
    upsample2(half) at every cell, edge cells included (zeros outside the map)."""
    torch.manual_seed(0)
    half = torch.randn(2, 5, 24, 32)  # full map 48 x 64: a 6 x 8 coarse grid at stride 8
    full = upsample2(half)
    unfolded = F.unfold(full, size, stride=8, padding=padding)  # [B x C*size^2 x cells]
    unfolded = unfolded.reshape(2, 5, size * size, -1).permute(0, 3, 2, 1)
    batch_ids = torch.tensor([0, 0, 1, 1, 1])
    cell_ids = torch.tensor([0, 7, 40, 47, 20])  # corners, last row, interior
    windows = gather_windows(half, batch_ids, cell_ids, grid_width=8, stride=8, size=size,
                             padding=padding)
    torch.testing.assert_close(windows, unfolded[batch_ids, cell_ids], rtol=0, atol=1e-6)


@pytest.mark.parametrize('shape, spread, block_rows', [
    ((2, 300, 400), 1.0, None),        # flat: every entry matters
    ((1, 700, 1000), 30.0, None),      # rows not a multiple of the block
    ((1, 64, 900), 1000.0, None),      # peaked like trained coarse features: most exp underflow
    ((2, 300, 400), 30.0, 300),        # one block
    ((3, 701, 1000), 30.0, 64),        # batch: strided row-sum views, a partial last block
])
def test_dual_softmax_equals_the_two_softmaxes(shape, spread, block_rows):
    """The block-wise one-pass form equals softmax(dim=2) * softmax(dim=1), the reference's."""
    torch.manual_seed(0)
    similarity = torch.randn(shape) * spread + 600.0
    expected = similarity.softmax(dim=2) * similarity.softmax(dim=1)
    confidence = dual_softmax(similarity.clone(), block_rows)
    torch.testing.assert_close(confidence, expected, rtol=1e-5, atol=1e-7)
    # The mutual-nearest-neighbour choice is unchanged too.
    assert torch.equal(confidence.argmax(dim=2), expected.argmax(dim=2))


def original_rope(height, width, dim, npe):
    """The original's RoPEPositionEncodingSine tables (zju3dv/EfficientLoFTR
    position_encoding.py, float32) for an h x w grid, flattened to [h*w x dim]."""
    i_position = torch.ones(height, width).cumsum(0).float().unsqueeze(-1)
    j_position = torch.ones(height, width).cumsum(1).float().unsqueeze(-1)
    train_h, train_w, test_h, test_w = npe
    i_position, j_position = i_position * train_h / test_h, j_position * train_w / test_w
    div_term = torch.exp(torch.arange(0, dim // 4, 1).float() * (-np.log(10000.0) / (dim // 4)))
    sin = torch.zeros(height, width, dim // 2)
    cos = torch.zeros(height, width, dim // 2)
    sin[:, :, 0::2] = torch.sin(i_position * div_term)
    sin[:, :, 1::2] = torch.sin(j_position * div_term)
    cos[:, :, 0::2] = torch.cos(i_position * div_term)
    cos[:, :, 1::2] = torch.cos(j_position * div_term)
    return (cos.repeat_interleave(2, dim=-1).reshape(-1, dim),
            sin.repeat_interleave(2, dim=-1).reshape(-1, dim))


@pytest.mark.parametrize('npe', [(832, 832, 832, 832), (832, 832, 1280, 1280),
                                 (640, 480, 1280, 768)])
def test_rotary_positions_scale_as_the_original_npe(npe):
    cos, sin = rotary_embedding(23, 40, 256, 10000.0, torch.device('cpu'),
                                scale=(npe[0] / npe[2], npe[1] / npe[3]))
    expected_cos, expected_sin = original_rope(23, 40, 256, npe)
    torch.testing.assert_close(cos, expected_cos, rtol=0, atol=1e-5)
    torch.testing.assert_close(sin, expected_sin, rtol=0, atol=1e-5)


def test_npe_long_side_scales_by_832_over_the_inputs_long_side(weights_dir):
    """'long_side' is [832, 832, L, L] for each input size; 'off' leaves positions unscaled
    (what the parity tests check against transformers)."""
    image0, image1 = photo_pair(384, 256)
    results = {}
    with torch.inference_mode():
        for npe in ('off', 'long_side', (832, 832, 384, 384), (832, 832, 832, 832)):
            model = load_efficientloftr(weights_dir / 'hf', {'rope_npe': npe})
            results[npe] = model(image0, image1)
    for key in results['off']:
        assert torch.equal(results['long_side'][key], results[(832, 832, 384, 384)][key]), key
        assert torch.equal(results[(832, 832, 832, 832)][key], results['off'][key]), key
    assert not torch.equal(results['long_side']['keypoints0'], results['off']['keypoints0'])


@pytest.mark.parametrize('npe', ['auto', None, (832, 832, 640), (832, 0, 640, 640), True])
def test_invalid_npe_is_a_config_error(npe):
    with pytest.raises(ConfigError, match='rope_npe must be'):
        EfficientLoFTR({**small_conf(), 'rope_npe': npe})


def test_mixed_precision_runs_every_stage(weights_dir):
    """Under autocast (bfloat16 on the CPU here; float16 on CUDA goes through the same code)
    every stage runs, outputs are float32, and the matches are mostly float32's: the coarse
    similarity and the refinement run in float32 whatever the autocast dtype."""
    model = load_efficientloftr(weights_dir / 'hf')
    image0, image1 = photo_pair(320, 256)
    intermediates = {}
    with torch.inference_mode():
        expected = model(image0, image1)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            result = model.match_features(model.extract(image0), model.extract(image1),
                                          intermediates)
    assert intermediates['confidence'].dtype == torch.float32
    assert all(result[key].dtype == torch.float32 for key in ('keypoints0', 'keypoints1',
                                                              'scores'))
    # A match is the same when its image-0 keypoint is (same coarse cell, same refinement):
    # most of float32's are found, with their image-1 keypoints.
    gaps = torch.cdist(expected['keypoints0'], result['keypoints0'])
    nearest, partners = gaps.min(dim=1)
    same = nearest < 0.05
    assert same.sum() >= 0.75 * len(same) and len(same) >= 20
    distances = (expected['keypoints1'][same] - result['keypoints1'][partners[same]]).norm(dim=1)
    # (a cell may pick another partner: random weights are barely above the threshold there)
    assert distances.median() < 0.05 and (distances < 0.5).float().mean() >= 0.75


def test_dual_softmax_on_torch_without_is_compiling(monkeypatch):
    """setup.py allows torch >= 2.1; torch.compiler.is_compiling exists from 2.3."""
    monkeypatch.delattr(torch.compiler, 'is_compiling')
    similarity = torch.randn(1, 50, 60) * 10
    expected = similarity.softmax(dim=2) * similarity.softmax(dim=1)
    torch.testing.assert_close(dual_softmax(similarity.clone()), expected, rtol=1e-5, atol=1e-7)
