"""Match pictures: sizes, colours by confidence, outliers, every input format."""
import numpy as np
import pytest

from loftr_ros.core.drawing import confidence_colour, draw_flow, draw_matches, to_display
from loftr_ros.core.types import MatchResult


def _result(inliers=None):
    keypoints0 = np.array([[10.0, 20.0], [30.25, 40.75]], np.float32)
    keypoints1 = np.array([[15.0, 25.0], [5.5, 8.5]], np.float32)
    return MatchResult(keypoints0, keypoints1, np.array([0.9, 0.1], np.float32), (64, 48),
                       (50, 60), inliers=inliers)


def test_draw_matches_puts_images_side_by_side():
    image0 = np.full((48, 64), 40, np.uint8)
    image1 = np.full((60, 50, 3), 80, np.uint8)
    canvas = draw_matches(image0, image1, _result())
    assert canvas.shape == (60, 114, 3) and canvas.dtype == np.uint8
    assert canvas[47, 0].tolist() == [40, 40, 40]
    assert canvas[55, 10].tolist() == [0, 0, 0]  # below the shorter left image
    assert canvas[59, 113].tolist() == [80, 80, 80]
    # The confident match is green, drawn from (10, 20) to (64 + 15, 25).
    middle = canvas[22, 40]
    assert middle[1] > 150 and middle[2] < 100


def test_outliers_are_grey_and_max_lines_limits():
    canvas = draw_matches(np.zeros((48, 64), np.uint8), np.zeros((60, 50), np.uint8),
                          _result(inliers=np.array([0, 1], np.uint8)), max_lines=1)
    line = canvas[22, 40]
    assert line[0] == line[1] == line[2] and line[0] > 0
    # The second (low-confidence) match, from (30.25, 40.75) up to the right image, is not
    # drawn with max_lines=1.
    assert canvas[30:45, 20:40].sum() == 0


def test_draw_flow_on_the_current_image():
    canvas = draw_flow(np.zeros((60, 50), np.uint16), _result())
    assert canvas.shape == (60, 50, 3)
    assert canvas[25, 15, 1] > 150  # dot at the confident match's current position


@pytest.mark.parametrize('image', [
    np.full((4, 5), 0.5, np.float32), np.full((4, 5, 1), 128, np.uint8),
    np.full((4, 5), 32896, np.uint16), np.full((4, 5, 4), 128, np.uint8),
])
def test_to_display_handles_every_input_format(image):
    shown = to_display(image)
    assert shown.shape == (4, 5, 3) and shown.dtype == np.uint8
    assert shown[0, 0].tolist() == [128, 128, 128]


def test_confidence_colours():
    assert confidence_colour(1.0) == (0, 255, 0)
    assert confidence_colour(0.0) == (0, 0, 255)
    assert confidence_colour(0.5) == (0, 255, 255)
