"""USAC (MAGSAC++) verification separates planted outliers from exact correspondences."""
import cv2
import numpy as np
import pytest

from loftr_ros.core.camera import CameraModel
from loftr_ros.core.geometry import verify_matches

CAMERA0 = CameraModel.from_intrinsics(458.0, 457.0, 367.0, 248.0,
                                      (-0.28, 0.07, 0.0002, 0.00002), (752, 480))
CAMERA1 = CameraModel.from_intrinsics(457.0, 456.0, 379.0, 255.0,
                                      (-0.28, 0.07, -0.0001, -0.00003), (752, 480))
ROTATION = cv2.Rodrigues(np.array([0.02, -0.05, 0.01]))[0]
TRANSLATION = np.array([-0.11, 0.002, 0.001])


def _project(camera, points, rotation=np.eye(3), translation=np.zeros(3)):
    image_points, _ = cv2.projectPoints(points, cv2.Rodrigues(rotation)[0], translation,
                                        camera.K, camera.dist)
    return image_points.reshape(-1, 2)


def _scene_with_outliers(camera0=CAMERA0, camera1=CAMERA1, count=300, outlier_fraction=0.2,
                         planar=False, seed=0):
    """Exact projections of random 3D points in both cameras, with a fraction of the matches in
    image 1 replaced by random points. Returns points0, points1 and the true inlier mask."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(-1.5, 1.5, (count, 2))
    depth = np.full(count, 4.0) if planar else rng.uniform(2.0, 8.0, count)
    points = np.column_stack([xy * depth[:, None] / 2.5, depth])
    points0 = _project(camera0, points)
    points1 = _project(camera1, points, ROTATION, TRANSLATION)
    truth = np.ones(count, np.uint8)
    outliers = rng.choice(count, int(count * outlier_fraction), replace=False)
    points1[outliers] = rng.uniform([0, 0], [752, 480], (len(outliers), 2))
    # A random replacement can land near the true point by chance; it is then an inlier.
    true_points1 = _project(camera1, points, ROTATION, TRANSLATION)
    truth[outliers] = np.linalg.norm(points1[outliers] - true_points1[outliers], axis=1) < 1.0
    return points0, points1, truth


def test_essential_with_cameras_finds_the_planted_outliers():
    points0, points1, truth = _scene_with_outliers()
    inliers, model = verify_matches(points0, points1, 'essential', 1.0, 0.999, CAMERA0, CAMERA1)
    assert model == 'essential'
    assert inliers.dtype == np.uint8 and inliers.shape == truth.shape
    # An outlier can fall near its epipolar line by chance; none of the true matches is lost.
    assert inliers[truth == 1].all()
    assert inliers[truth == 0].mean() < 0.1


def test_essential_without_cameras_falls_back_to_fundamental():
    points0, points1, truth = _scene_with_outliers()
    inliers, model = verify_matches(points0, points1, 'essential', 1.0, 0.999, CAMERA0, None)
    assert model == 'fundamental'
    assert inliers[truth == 1].mean() > 0.95
    assert inliers[truth == 0].mean() < 0.1


def test_homography_on_a_plane():
    undistorted0 = CameraModel.from_intrinsics(458.0, 457.0, 367.0, 248.0, (), (752, 480))
    undistorted1 = CameraModel.from_intrinsics(457.0, 456.0, 379.0, 255.0, (), (752, 480))
    points0, points1, truth = _scene_with_outliers(undistorted0, undistorted1, planar=True)
    inliers, model = verify_matches(points0, points1, 'homography', 1.0, 0.999)
    assert model == 'homography'
    np.testing.assert_array_equal(inliers, truth)


@pytest.mark.parametrize('model, needed', [('fundamental', 8), ('homography', 4),
                                           ('essential', 5)])
def test_too_few_matches_gives_no_mask(model, needed):
    points = np.random.default_rng(1).uniform(0, 400, (needed - 1, 2))
    inliers, used = verify_matches(points, points + 3, model, camera0=CAMERA0, camera1=CAMERA1)
    assert inliers is None and used == model


def test_none_means_no_verification():
    points = np.random.default_rng(1).uniform(0, 400, (50, 2))
    assert verify_matches(points, points, 'none') == (None, '')
