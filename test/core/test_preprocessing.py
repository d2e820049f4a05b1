"""The resize/pad transform and input validation: coordinates map back exactly."""
import cv2
import numpy as np
import pytest

from loftr_ros.core.errors import ImageError
from loftr_ros.core.preprocessing import (ImageTransform, normalize_image, padded_size,
                                          resize_and_pad, resized_size)


@pytest.mark.parametrize('size, long_side, expected', [
    ((752, 480), 640, (640, 409)),
    ((480, 752), 640, (409, 640)),
    ((1280, 720), 320, (320, 180)),
    ((641, 479), 320, (320, 239)),
    ((641, 479), 0, (641, 479)),
    ((100, 50), 400, (400, 200)),
])
def test_resized_size_keeps_aspect(size, long_side, expected):
    assert resized_size(size, long_side) == expected


def test_padded_size_rounds_up_to_stride():
    assert padded_size((641, 479), 32) == (672, 480)
    assert padded_size((640, 480), 32) == (640, 480)
    assert padded_size((641, 479), 1) == (641, 479)


@pytest.mark.parametrize('size, long_side, stride', [
    ((752, 480), 640, 32), ((641, 479), 320, 8), ((1280, 720), 1504, 16), ((641, 479), 0, 32)])
def test_to_original_inverts_to_model(size, long_side, stride):
    transform = ImageTransform.create(size, long_side, stride)
    points = np.random.default_rng(0).uniform(-0.5, min(size) - 0.5, (100, 2))
    np.testing.assert_allclose(transform.to_original(transform.to_model(points)), points,
                               atol=1e-9)


def test_to_model_uses_pixel_centres():
    transform = ImageTransform.create((100, 50), 200, 1)
    # The first pixel's outer corner stays the outer corner; its centre maps to the centre of
    # the 2x2 block it becomes.
    np.testing.assert_allclose(transform.to_model([[-0.5, -0.5], [0.0, 0.0], [99.5, 49.5]]),
                               [[-0.5, -0.5], [0.5, 0.5], [199.5, 99.5]])


def _blob(size, centre, sigma):
    width, height = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    return np.exp(-((x - centre[0]) ** 2 + (y - centre[1]) ** 2) / (2 * sigma ** 2))


def _centroid(image):
    y, x = np.mgrid[0:image.shape[0], 0:image.shape[1]]
    return np.array([(x * image).sum(), (y * image).sum()]) / image.sum()


@pytest.mark.parametrize('size, long_side', [((641, 479), 320), ((752, 480), 640),
                                              ((300, 201), 905)])
def test_mapping_matches_what_cv2_resize_does(size, long_side):
    """A sub-pixel blob found in the resized, padded model input maps back onto where it is in
    the original image (shrinking with INTER_AREA, enlarging with INTER_LINEAR)."""
    centre = np.array([size[0] * 0.43 + 0.37, size[1] * 0.61 + 0.21])
    image = _blob(size, centre, sigma=12.0).astype(np.float32)
    transform = ImageTransform.create(size, long_side, 32)
    model_input = resize_and_pad(image, transform)
    assert model_input.shape == transform.padded_size[::-1]
    assert not model_input[transform.resized_size[1]:].any()
    assert not model_input[:, transform.resized_size[0]:].any()
    found = transform.to_original(_centroid(model_input.astype(np.float64))[None])[0]
    np.testing.assert_allclose(found, centre, atol=0.02)
    np.testing.assert_allclose(transform.to_model(centre[None])[0],
                               _centroid(model_input.astype(np.float64)), atol=0.02)


def test_inside_drops_padding_and_outside_points():
    transform = ImageTransform.create((641, 479), 320, 32)
    assert transform.resized_size == (320, 239) and transform.padded_size == (320, 256)
    points = np.array([[0.0, 0.0], [-0.5, -0.5], [319.49, 238.49], [319.5, 10.0],
                       [10.0, 238.5], [10.0, 250.0], [-0.6, 3.0]])
    assert transform.inside(points).tolist() == [True, True, True, False, False, False, False]


def test_normalize_scales_integer_types():
    values = np.array([[0, 128, 255]], np.uint8)
    np.testing.assert_allclose(normalize_image(values, True), [[0.0, 128 / 255, 1.0]], atol=1e-7)
    wide = values.astype(np.uint16) * 257
    np.testing.assert_allclose(normalize_image(wide, True), normalize_image(values, True),
                               atol=1e-7)
    floats = np.array([[-0.5, 0.25, 2.0]])
    np.testing.assert_allclose(normalize_image(floats, True), [[0.0, 0.25, 1.0]])


def test_normalize_colour_order_and_grayscale():
    bgr = np.zeros((2, 3, 3), np.uint8)
    bgr[..., 0] = 255  # blue
    rgb = normalize_image(bgr, False)
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.float32
    assert rgb[0, 0].tolist() == [0.0, 0.0, 1.0]
    mono = np.full((2, 3), 51, np.uint8)
    # A mono image stays one channel: the RGB models replicate or average it themselves.
    np.testing.assert_allclose(normalize_image(mono, False), np.full((2, 3), 0.2), atol=1e-7)
    bgra = np.dstack([bgr, np.full((2, 3), 7, np.uint8)])
    np.testing.assert_array_equal(normalize_image(bgra, False), rgb)
    np.testing.assert_array_equal(normalize_image(mono[:, :, None], True),
                                  normalize_image(mono, True))


def test_grey_is_opencvs_on_the_integers():
    """An integer colour image becomes the grey that cv2.cvtColor(BGR2GRAY) (and
    cv2.imread(IMREAD_GRAYSCALE)) give on its integers, whole grey levels, then scaled: what
    SIFT, ORB and the LoFTR demos see. A float image is converted in floats."""
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, (16, 24, 3), np.uint8)
    np.testing.assert_array_equal(normalize_image(bgr, True),
                                  cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.float32) / 255)
    wide = rng.integers(0, 65536, (16, 24, 3), np.uint16)
    np.testing.assert_array_equal(
        normalize_image(wide, True),
        cv2.cvtColor(wide, cv2.COLOR_BGR2GRAY).astype(np.float32) / 65535)
    floats = bgr.astype(np.float32) / 255
    np.testing.assert_allclose(normalize_image(floats, True),
                               cv2.cvtColor(floats, cv2.COLOR_BGR2GRAY), atol=1e-7)


@pytest.mark.parametrize('image, message', [
    (np.zeros((0, 5), np.uint8), 'empty'),
    (np.zeros((4, 5, 3, 1), np.uint8), 'HxW or HxWxC'),
    (np.zeros(5, np.uint8), 'HxW or HxWxC'),
    (np.zeros((4, 5, 2), np.uint8), 'channels'),
    (np.full((4, 5), np.nan, np.float32), 'NaN or infinite'),
    (np.full((4, 5), np.inf), 'NaN or infinite'),
    (np.zeros((4, 5), np.int32), 'unsupported image dtype int32'),
    (np.zeros((4, 5), bool), 'unsupported image dtype bool'),
    ([[0, 1]], 'numpy array'),
])
def test_normalize_rejects_bad_images(image, message):
    with pytest.raises(ImageError, match=message):
        normalize_image(image, True)
