"""The synthetic renderer: its images and depth agree with an independent pinhole projection."""
import cv2
import numpy as np
import pytest

from loftr_ros.core import synthetic
from loftr_ros.core.camera import sampson_distances


def project(K, pose, world_points):
    camera_points = world_points @ pose.R.T + pose.t
    pixels = camera_points @ K.T
    return pixels[:, :2] / pixels[:, 2:], camera_points[:, 2]


def sample(image, points):
    maps = points.astype(np.float32).reshape(-1, 1, 2)
    return cv2.remap(image.astype(np.float32), maps[..., 0], maps[..., 1],
                     cv2.INTER_LINEAR).reshape(len(points), -1)


@pytest.fixture(scope='module')
def camera():
    return synthetic.default_camera()


def test_projected_texture_points_show_their_texture(camera):
    pose = synthetic.camera_path(5)[3]
    image, depth = synthetic.render(camera, pose)
    astronaut = synthetic.default_scene()[1]
    ys, xs = np.mgrid[40:360:16, 40:360:16]
    texture_points = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)
    world = np.array([astronaut.world_point(a, b) for a, b in texture_points])
    pixels, z = project(camera.K, pose, world)
    assert np.all((pixels > 5).all(axis=1) & (pixels < (630, 470)).all(axis=1))
    texture_values = astronaut.texture[ys.ravel(), xs.ravel()].astype(np.float32)
    error = np.abs(sample(image, pixels) - texture_values).mean(axis=1)
    shifted = np.abs(sample(image, pixels + (3.0, 0.0)) - texture_values).mean(axis=1)
    assert np.median(error) < 6 and np.median(shifted) > 2 * np.median(error)
    # The depth map holds the z of the very points projected there (the patch is in front).
    depth_at = depth[np.rint(pixels[:, 1]).astype(int), np.rint(pixels[:, 0]).astype(int)]
    np.testing.assert_allclose(depth_at, z, rtol=0.02)


def test_depth_back_projects_onto_a_scene_plane(camera):
    pose = synthetic.camera_path(9)[8]
    _, depth = synthetic.render(camera, pose)
    ys, xs = np.mgrid[3:480:37, 5:640:41]
    d = depth[ys, xs].astype(np.float64).ravel()
    assert np.isfinite(d).all()
    rays = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)], axis=1) @ np.linalg.inv(camera.K).T
    world = (rays * d[:, None] - pose.t) @ pose.R
    distances = []
    for plane in synthetic.default_scene():
        normal = np.cross(plane.axis_u, plane.axis_v)
        distances.append(np.abs((world - plane.origin) @ normal / np.linalg.norm(normal)))
    assert np.min(distances, axis=0).max() < 1e-4


def test_stereo_views_obey_the_calibrated_epipolar_geometry(camera):
    left_pose, right_pose = synthetic.stereo_pair(synthetic.camera_path(3)[2], baseline_m=0.3)
    left, depth = synthetic.render(camera, left_pose)
    right, _ = synthetic.render(camera, right_pose)
    ys, xs = np.mgrid[20:460:23, 20:620:29]
    points0 = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)
    d = depth[ys, xs].astype(np.float64).ravel()
    camera_points = np.concatenate([points0, np.ones((len(d), 1))], axis=1) @ np.linalg.inv(
        camera.K).T * d[:, None]
    world = (camera_points - left_pose.t) @ left_pose.R
    points1, _ = project(camera.K, right_pose, world)
    calibration = synthetic.stereo_calibration(camera, baseline_m=0.3)
    assert np.max(sampson_distances(points0, points1, calibration)) < 1e-3
    # Wrong-sign baseline: the same correspondences violate it by pixels.
    wrong = synthetic.stereo_calibration(camera, baseline_m=-0.3)
    assert np.median(sampson_distances(points0, points1 + (0.0, 2.0), wrong)) > 0.5
    # And the right image really shows, at points1, what the left shows at points0 (away from
    # occlusion boundaries most do).
    inside = (points1 > 2).all(axis=1) & (points1 < (637, 477)).all(axis=1)
    difference = np.abs(sample(left, points0[inside]) - sample(right, points1[inside]))
    assert np.median(difference) < 4


def test_relative_pose_convention():
    pose0, pose1 = synthetic.camera_path(2)
    R, t = synthetic.relative_pose(pose0, pose1)
    world = np.array([[0.3, -0.2, 5.0], [1.0, 1.0, 7.0]])
    x0 = world @ pose0.R.T + pose0.t
    np.testing.assert_allclose(x0 @ R.T + t, world @ pose1.R.T + pose1.t, atol=1e-12)
    T = pose1.world_from_camera()
    np.testing.assert_allclose(T[:3, 3], pose1.centre)
    np.testing.assert_allclose(T[:3, :3] @ pose1.R, np.eye(3), atol=1e-12)


def test_pan_leaves_the_scene(camera):
    poses = synthetic.pan_path(4, end_yaw_deg=90.0)
    covered = [np.isfinite(synthetic.render(camera, pose)[1]).mean() for pose in poses]
    assert covered[0] == 1.0 and covered[-1] == 0.0
    assert all(a >= b for a, b in zip(covered, covered[1:]))


def test_render_views_are_stamped_and_sized():
    views = synthetic.render_views(synthetic.camera_path(2), synthetic.default_camera(320, 240),
                                   fps=10.0, start_ns=5)
    assert [v.stamp_ns for v in views] == [5, 100_000_005]
    assert views[0].image.shape == (240, 320, 3) and views[0].image.dtype == np.uint8


def test_unknown_photo_lists_valid_names():
    with pytest.raises(ValueError, match='astronaut'):
        synthetic.load_photo('lena')
