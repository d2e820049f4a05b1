"""The Matcher around any backend: input handling, thresholds, ordering, verification, timings,
device and precision errors. Uses the opencv backend (no weights, fast), but for the settings
changed on a running Matcher, which every backend must honour."""
import dataclasses
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from loftr_ros.core.config import MatcherConfig
from loftr_ros.core.errors import ConfigError, ImageError, ImageTooLargeError
from loftr_ros.core.matcher import Matcher


@pytest.fixture(scope='module')
def matcher():
    return Matcher(MatcherConfig(backend='opencv', warmup=False))


@pytest.fixture(scope='module')
def stereo_pair(euroc_stereo_frames):
    _, left, right = euroc_stereo_frames[20]
    return left, right


def test_result_is_sorted_float_and_in_original_pixels(matcher, stereo_pair):
    left, right = stereo_pair
    result = matcher.match(left, right)
    assert result.keypoints0.dtype == np.float32 and result.scores.dtype == np.float32
    assert result.image_size0 == (752, 480) and result.image_size1 == (752, 480)
    assert np.all(np.diff(result.scores) <= 0)
    assert np.all(result.scores >= matcher.confidence_threshold)
    # Sub-pixel: not rounded to whole pixels anywhere on the way.
    assert np.any(result.keypoints0 != np.round(result.keypoints0))
    for points in (result.keypoints0, result.keypoints1):
        assert np.all((points >= -0.5) & (points < [751.5, 479.5]))
    assert result.inliers is None and result.geometry_model == ''
    assert set(result.timings) == {'preprocess', 'model', 'refine', 'verify', 'total'}
    assert result.timings['total'] >= result.timings['model'] > 0


def test_results_are_read_only_values_that_pickle(stereo_pair, euroc_calibration):
    """A result is shared by the node, the tools and consumers' callbacks: no array of it can be
    written through it, and it comes back from pickle equal (multiprocessing, caches)."""
    left, right = stereo_pair
    verifying = Matcher(MatcherConfig(backend='opencv', geometry='fundamental', warmup=False))
    result = verifying.match(left, right)
    assert len(result) > 100 and result.inliers is not None
    for array in (result.keypoints0, result.keypoints1, result.scores, result.inliers):
        assert not array.flags.writeable
        with pytest.raises(ValueError, match='read-only'):
            array[0] = 0
    # An array handed in stays its owner's: the result keeps a read-only copy.
    scores = result.scores.copy()
    own = dataclasses.replace(result, scores=scores)
    scores[0] = -1.0
    assert own.scores[0] == result.scores[0] and not own.scores.flags.writeable
    restored = pickle.loads(pickle.dumps(result))
    assert restored == result and restored is not result
    assert not restored.keypoints0.flags.writeable and restored.timings == result.timings
    moved = result.keypoints1.copy()
    moved[0] += 0.5
    assert dataclasses.replace(result, keypoints1=moved) != result
    assert dataclasses.replace(result, inliers=None) != result
    assert dataclasses.replace(result, scores=result.scores.astype(np.float64)) != result


def test_resize_maps_back_to_original_pixels(stereo_pair, euroc_calibration):
    """Matching at half resolution still gives keypoints in the 752x480 frame that obey the
    calibrated epipolar geometry."""
    from loftr_ros.core.camera import sampson_distances

    left, right = stereo_pair
    half = Matcher(MatcherConfig(backend='opencv', resize=376, warmup=False))
    result = half.match(left, right)
    assert result.keypoints0[:, 0].max() > 600
    errors = sampson_distances(result.keypoints0, result.keypoints1, euroc_calibration)
    assert np.median(errors) < 0.5


def test_max_matches_keeps_the_best(matcher, stereo_pair):
    left, right = stereo_pair
    everything = matcher.match(left, right)
    capped = Matcher(MatcherConfig(backend='opencv', max_matches=25, warmup=False)
                     ).match(left, right)
    assert len(capped) == 25
    np.testing.assert_array_equal(capped.scores, everything.scores[:25])


def test_confidence_threshold_minus_one_is_the_backends_default(stereo_pair):
    """-1, the default, uses the backend's own threshold: opencv's is 0, so that its ratio
    option alone decides (a global 0.2 cut ratio 0.9 back to 0.8)."""
    left, right = stereo_pair
    loose = Matcher(MatcherConfig(backend='opencv', options={'ratio': 0.9}, warmup=False))
    assert loose.config.confidence_threshold == -1 and loose.confidence_threshold == 0.0
    result = loose.match(left, right)
    assert result.scores.min() < 0.2  # ratios between 0.8 and 0.9 are kept
    cut = Matcher(MatcherConfig(backend='opencv', options={'ratio': 0.9}, warmup=False,
                                confidence_threshold=0.2)).match(left, right)
    assert 0 < len(cut) < len(result) and cut.scores.min() >= 0.2
    with pytest.raises(ConfigError, match=r'in \[0, 1\] or -1'):
        MatcherConfig(confidence_threshold=-0.5)


def test_confidence_threshold_filters(stereo_pair):
    left, right = stereo_pair
    strict = Matcher(MatcherConfig(backend='opencv', confidence_threshold=0.6, warmup=False))
    result = strict.match(left, right)
    assert len(result) > 0 and result.scores.min() >= 0.6


def test_input_types_give_the_same_matches(matcher, stereo_pair):
    left, right = stereo_pair
    reference = matcher.match(left, right)
    variants = [
        (left.astype(np.uint16) * 257, right.astype(np.uint16) * 257),
        (left.astype(np.float32) / 255, right.astype(np.float64) / 255),
        (np.dstack([left] * 3), right[:, :, None]),
    ]
    for image0, image1 in variants:
        result = matcher.match(image0, image1)
        np.testing.assert_array_equal(result.keypoints0, reference.keypoints0)
        np.testing.assert_array_equal(result.scores, reference.scores)


def test_prepared_frames_and_their_preparation_time(matcher, stereo_pair):
    """A frame prepared once (consecutive mode) gives the same matches; its preparation time
    is what add_preparation counts into the pair's timings."""
    left, right = stereo_pair
    reference = matcher.match(left, right)
    prepared_left, prepared_right = matcher.prepare(left), matcher.prepare(right)
    assert prepared_right.timings['model'] > 0 and prepared_right.timings['preprocess'] > 0
    result = matcher.match(prepared_left, prepared_right)
    np.testing.assert_array_equal(result.keypoints1, reference.keypoints1)
    before = dict(result.timings)
    counted = matcher.add_preparation(result, prepared_right)
    # A new result: the one given stays as it was, and no result changes in place.
    assert counted is not result and dict(result.timings) == before
    with pytest.raises(TypeError):
        counted.timings['total'] = 0.0
    np.testing.assert_array_equal(counted.keypoints1, result.keypoints1)
    spent = prepared_right.timings
    assert counted.timings['model'] == pytest.approx(before['model'] + spent['model'])
    assert counted.timings['preprocess'] == pytest.approx(before['preprocess']
                                                          + spent['preprocess'])
    assert counted.timings['total'] == pytest.approx(before['total'] + spent['model']
                                                     + spent['preprocess'])


def test_images_of_different_sizes(matcher, stereo_pair):
    left, right = stereo_pair
    result = matcher.match(left, right[40:, 60:])
    assert result.image_size1 == (692, 440)
    assert len(result) > 50
    # right[40:, 60:] moves every point of the right image by (-60, -40): the same left
    # keypoint finds the same right point, shifted back into the full frame.
    full = matcher.match(left, right)
    full_by_point = {tuple(p): q for p, q in zip(full.keypoints0.tolist(), full.keypoints1)}
    shifted = [(full_by_point[tuple(p)], q + [60, 40])
               for p, q in zip(result.keypoints0.tolist(), result.keypoints1)
               if tuple(p) in full_by_point]
    assert len(shifted) > 20
    distances = [np.linalg.norm(a - b) for a, b in shifted]
    assert np.median(distances) < 0.05


@pytest.mark.parametrize('geometry, expected', [('fundamental', 'fundamental'),
                                                ('essential', 'essential'),
                                                ('homography', 'homography')])
def test_verification_fills_inliers(stereo_pair, euroc_calibration, geometry, expected):
    left, right = stereo_pair
    verifying = Matcher(MatcherConfig(backend='opencv', geometry=geometry, warmup=False))
    result = verifying.match(left, right, euroc_calibration.camera0, euroc_calibration.camera1)
    assert result.geometry_model == expected
    assert result.inliers.dtype == np.uint8 and result.inliers.shape == (len(result),)
    assert 0 < result.num_inliers <= len(result)


def test_essential_without_cameras_is_fundamental(stereo_pair):
    left, right = stereo_pair
    verifying = Matcher(MatcherConfig(backend='opencv', geometry='essential', warmup=False))
    assert verifying.match(left, right).geometry_model == 'fundamental'


def test_too_few_matches_leaves_inliers_unset():
    verifying = Matcher(MatcherConfig(backend='opencv', geometry='fundamental', warmup=False))
    blank = np.zeros((120, 160), np.uint8)
    result = verifying.match(blank, blank)
    assert len(result) == 0 and result.inliers is None


@pytest.mark.parametrize('image, message', [
    (np.zeros((0, 10), np.uint8), 'empty'),
    (np.zeros((10, 10, 2), np.uint8), 'channels'),
    (np.full((10, 10), np.nan, np.float32), 'NaN'),
    (np.zeros((10, 10), np.int64), 'unsupported image dtype'),
])
def test_bad_images_raise_image_error(matcher, image, message):
    with pytest.raises(ImageError, match=message):
        matcher.prepare(image)
    with pytest.raises(ImageError, match=message):
        matcher.match(np.zeros((10, 10), np.uint8), image)


def test_images_above_the_pixel_limit_are_refused_before_any_copy():
    limited = Matcher(MatcherConfig(backend='opencv', warmup=False, max_image_pixels=100 * 99))
    limited.prepare(np.zeros((99, 100), np.uint8))
    # A read-only broadcast view of 4 GB: normalizing it would allocate 16 GB of float32.
    huge = np.broadcast_to(np.zeros(1, np.uint8), (65536, 65536))
    for image in (np.zeros((100, 100), np.uint8), huge):
        with pytest.raises(ImageTooLargeError, match='above the limit max_image_pixels = 9900'):
            limited.prepare(image)
    with pytest.raises(ImageTooLargeError, match='65536x65536 image has 4295.0 MP'):
        Matcher(MatcherConfig(backend='opencv', warmup=False)).match(huge, huge)
    with pytest.raises(ConfigError, match=r'max_image_pixels must be in \[1, '):
        MatcherConfig(max_image_pixels=0)


def test_prepared_image_of_another_matcher_is_refused(matcher):
    other = Matcher(MatcherConfig(backend='opencv', warmup=False))
    prepared = other.prepare(np.zeros((10, 10), np.uint8))
    with pytest.raises(ConfigError, match='another Matcher'):
        matcher.match(prepared, prepared)


def test_half_precision_on_cpu_is_a_config_error():
    with pytest.raises(ConfigError, match="precision 'fp16' needs a CUDA device"):
        Matcher(MatcherConfig(backend='opencv', device='cpu', precision='fp16'))
    # bf16 runs on a CPU only for backends tested under CPU autocast (eloftr).
    with pytest.raises(ConfigError, match="precision 'bf16' needs a CUDA device.*'fp32' on CPU$"):
        Matcher(MatcherConfig(backend='opencv', device='cpu', precision='bf16'))


@pytest.mark.skipif(torch.cuda.is_available(), reason='CUDA is available here')
def test_cuda_without_a_gpu_is_a_config_error():
    with pytest.raises(ConfigError, match="device 'cuda:1' requested but CUDA is not available"):
        Matcher(MatcherConfig(backend='opencv', device='cuda:1'))


def test_model_name_and_warmup():
    warmed = Matcher(MatcherConfig(backend='opencv', warmup=True))
    assert warmed.model_name == 'opencv:sift'
    assert warmed.device == torch.device('cuda' if torch.cuda.is_available() else 'cpu')


def test_core_imports_no_ros():
    """The engine is usable without ROS: importing it pulls in no rclpy."""
    code = ('import sys, loftr_ros.core.matcher, loftr_ros.core.drawing, loftr_ros.tools.match; '
            "assert 'rclpy' not in sys.modules, 'rclpy imported'")
    subprocess.run([sys.executable, '-c', code], check=True)


def test_refinement_with_every_input_type_and_different_sizes(stereo_pair):
    """The refinement works on the original images whatever their type, channels and sizes:
    the same refined keypoints for every input form, and a crop of the right image gives the
    same right points, shifted."""
    left, right = stereo_pair
    matcher = Matcher(MatcherConfig(backend='opencv', refinement='ncc', warmup=False))
    reference = matcher.match(left, right)
    assert reference.timings['refine'] > 0
    for image0, image1 in [(left.astype(np.uint16) * 257, right.astype(np.uint16) * 257),
                           (np.dstack([left] * 3), right[:, :, None].astype(np.float32) / 255)]:
        result = matcher.match(image0, image1)
        np.testing.assert_array_equal(result.keypoints0, reference.keypoints0)
        np.testing.assert_allclose(result.keypoints1, reference.keypoints1, atol=1e-3)
    cropped = matcher.match(left, right[40:, 60:])
    by_point = {tuple(p): q for p, q in zip(reference.keypoints0.tolist(), reference.keypoints1)}
    shifted = [(by_point[tuple(p)], q + [60, 40])
               for p, q in zip(cropped.keypoints0.tolist(), cropped.keypoints1)
               if tuple(p) in by_point]
    assert len(shifted) > 20
    assert np.median([np.linalg.norm(a - b) for a, b in shifted]) < 0.05


def _photo_pair():
    """Two 224x160 grayscale crops of a real photo, 6 px apart (small: LoFTR is slow on CPU)."""
    import cv2

    from loftr_ros.core.synthetic import load_photo
    gray = cv2.resize(cv2.cvtColor(load_photo('astronaut'), cv2.COLOR_BGR2GRAY), (256, 256),
                      interpolation=cv2.INTER_AREA)
    return gray[40:200, 16:240].copy(), gray[44:204, 22:246].copy()


# What each backend needs to load here: the suite's random EfficientLoFTR weights for eloftr and
# hf, a random kornia checkpoint for loftr, the shipped weights of xfeat and lightglue.
BACKEND_SETTINGS = {
    'eloftr': lambda request: {'weights': str(request.getfixturevalue('eloftr_hf_dir'))},
    'hf': lambda request: {'weights': str(request.getfixturevalue('eloftr_hf_dir'))},
    'loftr': lambda request: {'weights': str(request.getfixturevalue('loftr_checkpoint'))},
    'xfeat': lambda request: {},
    'lightglue': lambda request: {'options': {'max_keypoints': 512}},
    'opencv': lambda request: {},
}


@pytest.mark.slow
@pytest.mark.parametrize('backend', list(BACKEND_SETTINGS))
def test_confidence_threshold_changed_on_a_running_matcher_acts_on_the_next_match(
        backend, request):
    """The Matcher's config is the threshold's only copy: lowered, then raised again on a
    running Matcher (as the node does on `ros2 param set`), each match is that of a Matcher
    built with the new threshold. eloftr, hf, loftr, lightglue and xfeat drop matches under
    the threshold inside the model, so a backend that kept its start value fails here."""
    settings = dict(backend=backend, device='cpu', resize=0, warmup=False,
                    **BACKEND_SETTINGS[backend](request))
    images = _photo_pair()
    fresh = Matcher(MatcherConfig(**settings, confidence_threshold=0.0))
    # Prepared one by one as `running`'s frames are (a batch of both, what match does with two
    # arrays, may differ by float rounding).
    everything = fresh.match(*[fresh.prepare(image) for image in images])
    strict_threshold = float(np.median(everything.scores))
    running = Matcher(MatcherConfig(**settings, confidence_threshold=strict_threshold))
    # Prepared before the change, as the node's reference frame is.
    prepared = [running.prepare(image) for image in images]
    strict = running.match(*prepared)
    assert 0 < len(strict) < len(everything), (len(strict), len(everything))
    for threshold, expected in ((0.0, everything), (strict_threshold, strict)):
        running.config = running.config.replace(confidence_threshold=threshold)
        result = running.match(*prepared)
        assert len(result) == len(expected), (threshold, len(result), len(expected))
        np.testing.assert_allclose(result.keypoints0, expected.keypoints0, atol=1e-4)
        np.testing.assert_allclose(result.keypoints1, expected.keypoints1, atol=1e-4)
        np.testing.assert_allclose(result.scores, expected.scores, atol=1e-5)


def test_only_runtime_settings_change_on_a_running_matcher(matcher):
    changed = matcher.config.replace(max_matches=7, confidence_threshold=0.5)
    with pytest.raises(ConfigError, match='geometry, ransac_threshold cannot change while the '
                                          'matcher runs .*build a new Matcher'):
        matcher.config = changed.replace(geometry='homography', ransac_threshold=2.0)
    assert matcher.config.max_matches == 0


def test_threads_sets_the_models_threads_and_0_leaves_them():
    before = torch.get_num_threads()
    try:
        Matcher(MatcherConfig(backend='opencv', warmup=False, threads=before + 3))
        assert torch.get_num_threads() == before + 3
        Matcher(MatcherConfig(backend='opencv', warmup=False))
        assert torch.get_num_threads() == before + 3
    finally:
        torch.set_num_threads(before)
