"""Camera models from camera_info are checked when they arrive: what the undistortion cannot
take is refused with the reason, and a model that is accepted always normalizes."""
import cv2
import numpy as np
import pytest

from loftr_ros.core.camera import CameraModel, load_euroc_calibration
from loftr_ros.core.errors import ConfigError

K = (458.0, 0.0, 367.0, 0.0, 457.0, 248.0, 0.0, 0.0, 1.0)
PLUMB_BOB = (-0.28, 0.07, 0.0002, 0.00002, 0.001)
POINTS = np.array([[10.0, 20.0], [367.0, 248.0], [700.0, 470.0]])


def from_info(k=K, d=PLUMB_BOB, width=752, height=480, model='plumb_bob'):
    return CameraModel.from_camera_info(k, d, width, height, model)


@pytest.mark.parametrize('fields, reason', [
    (dict(d=PLUMB_BOB + (0.3,)), 'plumb_bob takes 5 or 4 distortion coefficients .* got 6'),
    (dict(d=tuple(np.linspace(0.01, 0.2, 20))), 'plumb_bob takes 5 or 4 .* got 20'),
    (dict(d=PLUMB_BOB[:3]), 'got 3'),
    (dict(d=PLUMB_BOB + (0.1, 0.2, 0.3, 0.4)), 'rational_polynomial|got 9'),
    (dict(d=PLUMB_BOB[:4], model='rational_polynomial'), 'rational_polynomial takes 8'),
    (dict(k=(np.nan,) + K[1:]), 'K must be 3x3 and finite, got \\[nan'),
    (dict(k=K[:4] + (np.inf,) + K[5:]), 'K must be 3x3 and finite'),
    (dict(d=(np.nan,) + PLUMB_BOB[1:]), r'D must be finite: entry 0 is nan, got \[nan'),
    (dict(d=PLUMB_BOB[:2] + (np.inf,) + PLUMB_BOB[3:]), r'D must be finite: entry 2 is inf, got'),
    (dict(d=PLUMB_BOB[:4] + (-np.inf,)), r'D must be finite: entry 4 is -inf, got'),
    # Past the model's length, where zeros would be dropped, an inf is no zero either.
    (dict(d=PLUMB_BOB + (0.0, np.inf, np.inf)), r'entry 6 is inf \(and 1 more\)'),
    (dict(k=(0.0,) + K[1:]), 'focal lengths must be positive, got fx 0'),
    (dict(k=K[:4] + (-457.0,) + K[5:]), 'fy -457'),
    (dict(k=(0.0,) * 9), 'focal lengths must be positive'),
    (dict(k=K[:1] + (3.0,) + K[2:]), 'no skew'),
    (dict(k=K[:8] + (2.0,)), r'\[fx 0 cx; 0 fy cy; 0 0 1\]'),
    (dict(k=K[:6]), 'K must have 9 entries, got 6'),
    (dict(model='equidistant', d=PLUMB_BOB[:4]),
     "unsupported distortion model 'equidistant'; supported: plumb_bob, rational_polynomial"),
    (dict(model=''), "unsupported distortion model ''"),
    (dict(width=0, height=0), 'no image size'),
])
def test_camera_info_the_undistortion_cannot_take_is_refused_with_the_reason(fields, reason):
    with pytest.raises(ConfigError, match=reason):
        from_info(**fields)


def test_a_long_distortion_vector_is_shown_cut_short():
    with pytest.raises(ConfigError) as error:
        from_info(d=np.full(10_000, 0.5))
    assert len(str(error.value)) < 300 and str(error.value).endswith(', ...]')


def test_accepted_lengths_and_what_they_mean():
    five = from_info()
    np.testing.assert_array_equal(five.dist, PLUMB_BOB)
    # 4 coefficients: k3 = 0, as OpenCV reads them.
    four = from_info(d=PLUMB_BOB[:4])
    np.testing.assert_allclose(four.normalize(POINTS), from_info(d=PLUMB_BOB[:4] + (0.0,))
                               .normalize(POINTS), atol=1e-12)
    # Zeros past the model's length are dropped; zeros alone mean no distortion, any model.
    padded = from_info(d=PLUMB_BOB + (0.0,) * 3)
    assert padded.dist.size == 5
    none = from_info(d=(0.0,) * 20, model='equidistant')
    assert none.dist.size == 0
    np.testing.assert_allclose(none.normalize(POINTS),
                               (POINTS - (367.0, 248.0)) / (458.0, 457.0))
    rational = from_info(d=PLUMB_BOB + (0.01, 0.002, 0.0003), model='rational_polynomial')
    assert rational.dist.size == 8 and rational.size == (752, 480)


def test_every_camera_info_is_refused_or_normalizes():
    """Hostile camera_info (random lengths, NaN/inf, zeros, unknown models): each is either
    refused with a ConfigError or gives a model whose normalize works (no cv2.error)."""
    rng = np.random.default_rng(7)
    specials = np.array([np.nan, np.inf, -np.inf, 0.0, 1e300, -1.0])
    accepted = 0
    for _ in range(400):
        k = np.array(K) * rng.uniform(0.5, 1.5, 9)
        k[[1, 3, 6, 7]] = 0.0
        k[8] = 1.0
        d = rng.normal(0, 0.1, rng.integers(0, 21))
        if rng.random() < 0.3:
            k[rng.integers(0, 9)] = rng.choice(specials)
        if rng.random() < 0.3 and d.size:
            d[rng.integers(0, d.size)] = rng.choice(specials)
        if rng.random() < 0.2:
            d[rng.integers(0, d.size + 1):] = 0.0
        model = rng.choice(['plumb_bob', 'rational_polynomial', 'equidistant', ''])
        try:
            camera = from_info(k, d, model=model)
        except ConfigError:
            continue
        accepted += 1
        assert camera.normalize(POINTS).shape == (3, 2)
    assert accepted > 20


def test_size_mismatch_names_both_sizes():
    camera = from_info()
    assert camera.size_mismatch((752, 480)) is None
    assert camera.size_mismatch((640, 480)) == (
        'the calibration is for 752x480 images, not 640x480')
    assert CameraModel.from_intrinsics(458, 457, 367, 248).size_mismatch((640, 480)) is None


def test_intrinsics_are_checked_too(tmp_path):
    with pytest.raises(ConfigError, match='focal lengths must be positive'):
        CameraModel.from_intrinsics(0.0, 457.0, 367.0, 248.0)
    with pytest.raises(ConfigError, match='6 distortion coefficients: OpenCV takes 0, 4, 5'):
        CameraModel(np.array(K).reshape(3, 3), np.zeros(6), (752, 480))
    path = tmp_path / 'calibration.yaml'
    camera = {'intrinsics_fu_fv_cu_cv': [458.0, 457.0, float('nan'), 248.0],
              'distortion_coefficients': [0.0] * 4, 'T_body_cam': np.eye(4).ravel().tolist()}
    import yaml
    path.write_text(yaml.safe_dump({'cam0': camera, 'cam1': camera}))
    with pytest.raises(ConfigError, match=f'calibration {path}: K must be 3x3 and finite'):
        load_euroc_calibration(path)


def test_normalize_agrees_with_opencv():
    camera = from_info()
    expected = cv2.undistortPoints(POINTS.reshape(-1, 1, 2), camera.K, camera.dist)
    np.testing.assert_allclose(camera.normalize(POINTS), expected.reshape(-1, 2))
