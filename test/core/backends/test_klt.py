"""The klt backend (Shi-Tomasi corners + pyramidal Lucas-Kanade): sub-pixel positions on an image
moved by a known translation, the forward-backward check, the real EuRoC stereo pairs against
their calibrated epipolar geometry, its options, and the feature tracker running on it."""
import numpy as np
import pytest

from loftr_ros.core.backends.klt import KLTBackend
from loftr_ros.core.camera import sampson_distances
from loftr_ros.core.config import MatcherConfig
from loftr_ros.core.errors import BackendError, ConfigError
from loftr_ros.core.matcher import Matcher
from loftr_ros.core.tracking import Tracker

WIDTH, HEIGHT = 320, 240
# Image 1 is image 0 moved by this many pixels (x, y): more than a pyramid level's window
# half-side, and no whole number.
SHIFT = (12.37, -7.71)
# Stereo pairs spread over the 4.7 s EuRoC sample (indices into euroc_stereo_frames).
EUROC_PAIRS = (10, 45, 80)


def blobs(shift=(0.0, 0.0), seed=0, width=WIDTH, height=HEIGHT):
    """A uint8 image of random Gaussian blobs evaluated at each pixel centre minus `shift`: a
    continuous scene (the same for every size) moved by an exact sub-pixel translation (no
    resampling)."""
    rng = np.random.default_rng(seed)
    count = 500
    centres = rng.uniform([-30, -30], [WIDTH + 60, HEIGHT + 60], (count, 2))
    sigmas = rng.uniform(2.0, 6.0, count)[:, None]
    amplitudes = rng.uniform(-1.0, 1.0, count)
    along_x = np.exp(-(np.arange(width) - shift[0] - centres[:, :1]) ** 2 / (2 * sigmas ** 2))
    along_y = np.exp(-(np.arange(height) - shift[1] - centres[:, 1:]) ** 2 / (2 * sigmas ** 2))
    image = np.einsum('k,ky,kx->yx', amplitudes, along_y, along_x)
    return np.clip(np.rint(128 + 190 * image), 0, 255).astype(np.uint8)


@pytest.fixture(scope='module')
def matcher():
    return Matcher(MatcherConfig(backend='klt', warmup=False))


def errors_to_the_shift(result):
    """Each match's distance (px) from where the known translation puts its image-0 point."""
    return np.linalg.norm(result.keypoints1 - (result.keypoints0 + SHIFT), axis=1)


def test_lucas_kanade_finds_a_sub_pixel_translation():
    """Without equalization (both images of one exposure): Lucas-Kanade's own precision."""
    exact = Matcher(MatcherConfig(backend='klt', warmup=False, options={'equalize': 'none'}))
    result = exact.match(blobs(), blobs(SHIFT))
    assert len(result) >= 150
    errors = errors_to_the_shift(result)
    assert np.mean(errors < 0.05) >= 0.99
    # The forward-backward check bounds the rest (one match near the border here, 0.49 px).
    assert errors.max() <= KLTBackend.DEFAULT_CONF['max_backward_error']
    assert ((result.scores >= 0) & (result.scores <= 1)).all()
    assert np.all(np.diff(result.scores) <= 0)  # best first
    # Image 0's keypoints are its corners; those whose partner lies on image 1 are matched,
    # but for some of those within 20 px of its border (the pyramid's coarse windows leave it).
    corners = exact.keypoints(exact.prepare(blobs()))
    assert set(map(tuple, result.keypoints0.tolist())) <= set(map(tuple, corners.tolist()))
    partners = corners + SHIFT
    inner = ((partners >= 20) & (partners <= [WIDTH - 21, HEIGHT - 21])).all(axis=1)
    matched = set(map(tuple, result.keypoints0.tolist()))
    assert np.mean([tuple(point) in matched for point in corners[inner].tolist()]) >= 0.99


def test_equalization_keeps_the_translation_when_the_exposure_differs(matcher):
    """Image 1 10 % darker (another camera, or a change of exposure): by default (histogram
    equalization) the matches stay within a tenth of a pixel; without, Lucas-Kanade's brightness
    constancy breaks and they are off by most of a pixel."""
    darker = np.clip(np.rint(blobs(SHIFT) * 0.9 - 5), 0, 255).astype(np.uint8)
    for image1 in (blobs(SHIFT), darker):
        result = matcher.match(blobs(), image1)
        assert len(result) >= 150
        assert np.median(errors_to_the_shift(result)) < 0.1
    exact = Matcher(MatcherConfig(backend='klt', warmup=False, options={'equalize': 'none'}))
    assert np.median(errors_to_the_shift(exact.match(blobs(), darker))) > 0.3


def test_points_that_do_not_come_back_are_dropped(matcher):
    """Where image 1 shows something else (a patch of another scene), Lucas-Kanade still
    converges somewhere: 84 of 301 matches are wrong without the forward-backward check, 6 of
    195 with it (those are for the geometric verification to find)."""
    image1 = blobs(SHIFT)
    image1[60:180, 80:240] = blobs(seed=1)[60:180, 80:240]
    loose = Matcher(MatcherConfig(backend='klt', warmup=False,
                                  options={'max_backward_error': 100.0}))
    unchecked = loose.match(blobs(), image1)
    assert np.sum(errors_to_the_shift(unchecked) > 1.0) >= 50
    checked = matcher.match(blobs(), image1)
    assert len(checked) >= 100
    assert np.mean(errors_to_the_shift(checked) > 1.0) <= 0.05


def test_images_of_different_sizes(matcher):
    image1 = blobs(SHIFT, width=WIDTH + 24, height=HEIGHT + 10)
    result = matcher.match(blobs(), image1)
    assert len(result) >= 150
    assert np.median(errors_to_the_shift(result)) < 0.1
    assert (result.keypoints1 < [WIDTH + 24 - 0.5, HEIGHT + 10 - 0.5]).all()


def test_euroc_stereo_matches_obey_the_calibrated_geometry(matcher, euroc_stereo_frames,
                                                           euroc_calibration):
    for index in EUROC_PAIRS:
        _, left, right = euroc_stereo_frames[index]
        result = matcher.match(left, right)
        errors = sampson_distances(result.keypoints0, result.keypoints1, euroc_calibration)
        print(f'pair {index}: {len(result)} matches, {np.mean(errors < 1.0):.3f} within 1 px')
        assert len(result) >= 300
        assert np.mean(errors < 1.0) >= 0.95


@pytest.mark.parametrize('options, message', [
    ({'window_size': 21}, r"unknown option\(s\) window_size for backend 'klt'; valid: "
                          'block_size, epsilon, equalize, iterations, levels, max_backward_error, '
                          'max_corners, min_distance, quality_level, window'),
    ({'levels': -1}, r'klt backend: levels must be in \[0, 10\], got -1'),
    ({'window': 21.5}, 'klt backend: window must be an integer, got the double 21.5'),
    ({'quality_level': 0.0}, r'klt backend: quality_level must be in \[1e-06, 1.0\]'),
    ({'max_backward_error': 0.0}, 'klt backend: max_backward_error must be in'),
])
def test_bad_options_are_config_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        Matcher(MatcherConfig(backend='klt', options=options, warmup=False))


def test_no_weights_and_no_onnx_runtime():
    with pytest.raises(ConfigError, match="klt backend: has no weights; leave 'weights' empty"):
        Matcher(MatcherConfig(backend='klt', weights='model.pt', warmup=False))
    with pytest.raises(BackendError, match="backend 'klt' has no runtime 'onnxruntime'"):
        Matcher(MatcherConfig(backend='klt', runtime='onnxruntime', warmup=False))


def test_tracks_mode_on_euroc_mono_and_stereo(matcher, euroc_stereo_frames, euroc_calibration):
    frames = euroc_stereo_frames[20:32]
    mono = Tracker(matcher)
    tracked = [mono.track(stamp, left) for stamp, left, _ in frames]
    assert len(tracked[-1]) >= 100
    assert np.median(tracked[-1].track_lengths) >= 6  # most features live on from the start
    stereo = Tracker(matcher)
    # Camera models only: the tracker's stereo check is RANSAC's, the calibration judges.
    stereo.set_cameras(euroc_calibration.camera0, euroc_calibration.camera1)
    tracked = [stereo.track(stamp, left, right) for stamp, left, right in frames]
    assert np.median(tracked[-1].track_lengths) >= 6
    assert np.concatenate([frame.right_valid for frame in tracked]).mean() >= 0.5
    left = np.concatenate([frame.keypoints[frame.right_valid] for frame in tracked])
    right = np.concatenate([frame.right_keypoints[frame.right_valid] for frame in tracked])
    assert np.mean(sampson_distances(left, right, euroc_calibration) <= 1.0) >= 0.95
