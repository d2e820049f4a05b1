"""The 'eloftr' backend: the native EfficientLoFTR behind the Matcher.

Weights are random (no trained weights are reachable here): the suite's `eloftr_hf_dir`, and
an official-format checkpoint written by a test; they make the code paths and the coordinate
handling checkable, not the match quality (the parity with transformers is tested in
test/core/models/test_efficientloftr.py).
"""
import numpy as np
import pytest
import torch

from loftr_ros.core.config import MatcherConfig
from loftr_ros.core.errors import ConfigError, WeightsError
from loftr_ros.core.matcher import Matcher
from loftr_ros.core.models.efficientloftr import EfficientLoFTR
from loftr_ros.core.models.efficientloftr_weights import save_official, synthetic_weights
from loftr_ros.core.synthetic import load_photo


def photo_frames(count, width, height, step=(3, 2)):
    """`count` grayscale crops of a real photo, each shifted by `step` pixels from the last."""
    import cv2
    gray = cv2.cvtColor(load_photo('astronaut'), cv2.COLOR_BGR2GRAY)
    gray = cv2.resize(gray, (width + 64, width + 64), interpolation=cv2.INTER_AREA)
    return [np.ascontiguousarray(gray[8 + t * step[1]:8 + t * step[1] + height,
                                      8 + t * step[0]:8 + t * step[0] + width])
            for t in range(count)]


def as_tensor(image):
    return torch.from_numpy(image.astype(np.float32) / 255)[None, None]


@pytest.fixture(scope='module')
def matcher(eloftr_hf_dir):
    return Matcher(MatcherConfig(backend='eloftr', weights=str(eloftr_hf_dir), device='cpu',
                                 resize=0, warmup=False))


def test_matches_are_the_models_in_original_pixels(matcher):
    """752x480 is padded to 768x480: the Matcher shifts the model's keypoints to the
    pixel-centre frame, keeps those inside the image and sorts them by score."""
    prepared = [matcher.prepare(frame) for frame in photo_frames(2, 752, 480, step=(2, 1))]
    assert prepared[0].tensor.shape[-2:] == (480, 768)
    result = matcher.match(*prepared)
    with torch.inference_mode():
        raw = matcher.backend.model.match_features(prepared[0].features, prepared[1].features)
    keypoints0 = raw['keypoints0'].numpy() - 0.5
    keypoints1 = raw['keypoints1'].numpy() - 0.5
    scores = raw['scores'].numpy()
    inside = ((keypoints0 < [752, 480]).all(1) & (keypoints1 < [752, 480]).all(1) &
              (keypoints0 >= -0.5).all(1) & (keypoints1 >= -0.5).all(1))
    assert inside.sum() >= 20
    order = np.argsort(-scores[inside], kind='stable')
    np.testing.assert_allclose(result.keypoints0, keypoints0[inside][order], atol=1e-4)
    np.testing.assert_allclose(result.keypoints1, keypoints1[inside][order], atol=1e-4)
    np.testing.assert_allclose(result.scores, scores[inside][order], atol=1e-6)
    assert result.keypoints0.dtype == np.float32 and result.image_size0 == (752, 480)
    assert matcher.model_name.startswith('eloftr:')


def test_colour_images_are_fed_as_the_demo_does(matcher, colour_stereo_pair):
    """EfficientLoFTR's demo reads an image with cv2.imread(path, IMREAD_GRAYSCALE) (OpenCV's
    luma on the uint8 image), brings its sides to multiples of 32 (480x320 already are) and
    scales it by 1/255: the model called on that finds the Matcher's matches."""
    import cv2

    greys = [torch.from_numpy(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))[None, None].float() / 255.
             for image in colour_stereo_pair]
    for image, grey in zip(colour_stereo_pair, greys):
        np.testing.assert_allclose(matcher.prepare(image).tensor.numpy(), grey.numpy(),
                                   atol=1e-7)
    with torch.inference_mode():
        raw = matcher.backend.model(*greys)
    result = matcher.match(*colour_stereo_pair)
    order = np.argsort(-raw['scores'].numpy(), kind='stable')
    assert len(order) >= 20
    for ours, theirs in ((result.keypoints0, raw['keypoints0']),
                         (result.keypoints1, raw['keypoints1'])):
        np.testing.assert_allclose(ours, theirs.numpy()[order] - 0.5, atol=1e-4)
    np.testing.assert_allclose(result.scores, raw['scores'].numpy()[order], atol=1e-6)


def test_reused_frame_features_equal_matching_from_scratch(matcher):
    """Consecutive mode: each frame is prepared once and is the reference of the next pair."""
    frames = photo_frames(3, 320, 256)
    prepared = [matcher.prepare(frame) for frame in frames]
    for t in (1, 2):
        reused = matcher.match(prepared[t - 1], prepared[t])
        scratch = matcher.match(frames[t - 1], frames[t])
        assert len(scratch.scores) > 0
        np.testing.assert_array_equal(reused.keypoints0, scratch.keypoints0)
        np.testing.assert_array_equal(reused.keypoints1, scratch.keypoints1)
        np.testing.assert_array_equal(reused.scores, scratch.scores)


def test_confidence_threshold_is_the_coarse_threshold(eloftr_hf_dir, monkeypatch):
    config = MatcherConfig(backend='eloftr', weights=str(eloftr_hf_dir), device='cpu', resize=0,
                           warmup=False, confidence_threshold=0.6)
    matcher = Matcher(config)
    model, coarse_thresholds = matcher.backend.model, []

    def match_features(*args, coarse_threshold, **kwargs):
        coarse_thresholds.append(coarse_threshold)
        return type(model).match_features(model, *args, coarse_threshold=coarse_threshold,
                                          **kwargs)
    monkeypatch.setattr(model, 'match_features', match_features)
    result = matcher.match(*photo_frames(2, 384, 288))
    assert coarse_thresholds == [0.6]
    assert (result.scores >= 0.6).all()


def test_bf16_on_a_cpu(eloftr_hf_dir, matcher):
    """precision bf16 runs the model under CPU autocast; the matches stay float32's (the
    model-level comparison is test_mixed_precision_runs_every_stage)."""
    bf16 = Matcher(MatcherConfig(backend='eloftr', weights=str(eloftr_hf_dir), device='cpu',
                                 resize=0, warmup=False, precision='bf16'))
    assert bf16.dtype == torch.bfloat16
    frames = photo_frames(2, 320, 256)
    expected, result = matcher.match(*frames), bf16.match(*frames)
    assert result.keypoints0.dtype == np.float32 and result.scores.dtype == np.float32
    assert len(expected.scores) >= 20
    assert 0.75 * len(expected.scores) <= len(result.scores) <= 1.25 * len(expected.scores)
    with pytest.raises(ConfigError, match="precision 'fp16' needs a CUDA device.*or 'bf16'"):
        Matcher(MatcherConfig(backend='eloftr', weights=str(eloftr_hf_dir), device='cpu',
                              precision='fp16'))


def test_npe_option_reaches_the_model(eloftr_hf_dir, assert_same_matches):
    """A ROS parameter list (matcher.options.rope_npe) scales the rotary positions: two lists
    of the same scales (train/test 0.65 for rows, 0.5 for columns) give the same matches, and
    other ones than without it."""
    frames = photo_frames(2, 320, 256)

    def match(npe):
        options = {} if npe is None else {'rope_npe': npe}
        return Matcher(MatcherConfig(backend='eloftr', weights=str(eloftr_hf_dir), device='cpu',
                                     warmup=False, resize=0, confidence_threshold=0.0,
                                     options=options)).match(*frames)

    scaled = match([832, 640, 1280, 1280])  # train_h, train_w, test_h, test_w
    assert len(scaled) >= 20
    assert_same_matches(match([416, 320, 640, 640]), scaled, atol=1e-5, score_atol=1e-6)
    unscaled = match(None)
    assert_same_matches(match([640, 640, 640, 640]), unscaled, atol=1e-5, score_atol=1e-6)
    assert not (len(unscaled) == len(scaled) and
                np.allclose(unscaled.scores, scaled.scores, atol=1e-3))


@pytest.mark.slow
def test_official_checkpoint_full_and_optimized_modes(tmp_path):
    """The published architecture from an official-format checkpoint, both configurations."""
    model = EfficientLoFTR()
    synthetic_weights(model, [as_tensor(photo_frames(1, 160, 128)[0])], seed=3)
    path = tmp_path / 'eloftr_outdoor.ckpt'
    save_official(model, path)
    frames = photo_frames(2, 160, 128)
    for mode in ('full', 'optimized'):
        config = MatcherConfig(backend='eloftr', weights=str(path), device='cpu', resize=0,
                               warmup=False, confidence_threshold=0.0, options={'mode': mode})
        matcher = Matcher(config)
        result = matcher.match(*frames)
        assert matcher.model_name == f'eloftr:{path}'
        assert len(result.scores) > 0
        assert ((result.scores >= 0) & (result.scores <= 1)).all()


def test_missing_weights_path(tmp_path):
    config = MatcherConfig(backend='eloftr', weights=str(tmp_path / 'none.ckpt'), device='cpu')
    with pytest.raises(WeightsError, match='none.ckpt'):
        Matcher(config)


def test_invalid_options(eloftr_hf_dir):
    with pytest.raises(ConfigError, match="unknown option.*valid: channels_last, compile"):
        Matcher(MatcherConfig(backend='eloftr', weights=str(eloftr_hf_dir), device='cpu',
                              options={'refine_all': True}))
    with pytest.raises(ConfigError, match="unknown mode 'fast', valid: full, optimized"):
        Matcher(MatcherConfig(backend='eloftr', weights=str(eloftr_hf_dir), device='cpu',
                              options={'mode': 'fast'}))
    with pytest.raises(ConfigError, match="rope_npe must be 'off', 'long_side' or four"):
        Matcher(MatcherConfig(backend='eloftr', weights=str(eloftr_hf_dir), device='cpu',
                              options={'rope_npe': [832, 832]}))
    with pytest.raises(ConfigError, match="unknown compile 'cudagraphs', valid: off, default, "
                                          "reduce-overhead, max-autotune"):
        Matcher(MatcherConfig(backend='eloftr', weights=str(eloftr_hf_dir), device='cpu',
                              options={'compile': 'cudagraphs'}))


def _assert_compiled_matches_eager(eager, compiled):
    """Frames prepared once and each reused in two pairs, as in consecutive mode."""
    frames = photo_frames(3, 320, 256)
    eager_frames = [eager.prepare(frame) for frame in frames]
    compiled_frames = [compiled.prepare(frame) for frame in frames]
    for index in (0, 1):
        expected = eager.match(eager_frames[index], eager_frames[index + 1])
        result = compiled.match(compiled_frames[index], compiled_frames[index + 1])
        assert len(expected) > 0 and len(result) == len(expected)
        np.testing.assert_allclose(result.keypoints1, expected.keypoints1, atol=1e-3)
        np.testing.assert_allclose(result.scores, expected.scores, atol=1e-4)


@pytest.mark.slow
def test_compiled_model_gives_the_same_matches(eloftr_hf_dir, matcher):
    """torch.compile in the CUDA-graph mode (on the CPU its graphs are compiled without CUDA
    graphs): the same matches as the eager model, for reused frames too. About 25 s of
    compilation on two cores."""
    compiled = Matcher(MatcherConfig(backend='eloftr', weights=str(eloftr_hf_dir), device='cpu',
                                     resize=0, warmup=False,
                                     options={'compile': 'reduce-overhead'}))
    _assert_compiled_matches_eager(matcher, compiled)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='CUDA graphs need a CUDA device')
def test_cuda_graphs_keep_reused_frames_intact(eloftr_hf_dir):
    """With CUDA graphs a later replay overwrites the graph's outputs: a frame kept for the
    next pair must not change when the next frame is prepared."""
    def matcher_on_cuda(compile_mode):
        return Matcher(MatcherConfig(backend='eloftr', weights=str(eloftr_hf_dir), device='cuda',
                                     resize=0, warmup=False,
                                     options={'compile': compile_mode}))
    compiled = matcher_on_cuda('reduce-overhead')
    assert compiled.backend.cuda_graphs
    _assert_compiled_matches_eager(matcher_on_cuda('off'), compiled)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
@pytest.mark.parametrize('precision', ['fp32', 'fp16', 'bf16'])
def test_cuda_matches_the_cpu(eloftr_hf_dir, matcher, precision, monkeypatch):
    """The model on CUDA finds the CPU's matches: all of them at the same sub-pixel positions in
    fp32 (TF32 off), most of them in half precision (the coarse similarity, dual softmax and
    refinement stay float32 there)."""
    monkeypatch.setattr(torch.backends.cuda.matmul, 'allow_tf32', False)
    monkeypatch.setattr(torch.backends.cudnn, 'allow_tf32', False)
    on_cuda = Matcher(MatcherConfig(backend='eloftr', weights=str(eloftr_hf_dir), device='cuda',
                                    resize=0, warmup=False, precision=precision))
    frames = photo_frames(2, 384, 288)
    expected, result = matcher.match(*frames), on_cuda.match(*frames)
    assert len(expected.scores) >= 20
    # A match is the same when its image-0 keypoint is (same coarse cell, same refinement).
    gaps = np.linalg.norm(expected.keypoints0[:, None] - result.keypoints0[None], axis=2)
    pairs = [(index, int(gaps[index].argmin())) for index in range(len(gaps))
             if gaps[index].min() < 0.05]
    distances = np.linalg.norm(expected.keypoints1[[a for a, _ in pairs]]
                               - result.keypoints1[[b for _, b in pairs]], axis=1)
    if precision == 'fp32':
        # oneDNN and cuDNN round differently (~1e-6): a match at the threshold or an argmax
        # tie may flip, nothing more.
        assert abs(len(result.scores) - len(expected.scores)) <= 2
        assert len(pairs) >= len(expected.scores) - 2
        assert (distances < 1e-2).mean() >= 0.95
    else:
        assert len(pairs) >= 0.75 * len(expected.scores)
        assert np.median(distances) < 0.05 and (distances < 0.5).mean() >= 0.75
