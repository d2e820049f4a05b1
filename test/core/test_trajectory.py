"""Ground-truth files (TUM, EuRoC CSV) and interpolation to image stamps."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation, Slerp

from loftr_ros.core.camera import relative_camera_pose
from loftr_ros.core.errors import ConfigError
from loftr_ros.core.evaluation import rotation_error_deg, translation_error_deg
from loftr_ros.core.trajectory import BODY_FRAME, CAMERA_FRAME, load_trajectory

STAMPS_NS = np.array([1_000_000_000, 1_100_000_000, 1_200_000_000])
ROTATIONS = Rotation.from_euler('xyz', [[0, 0, 0], [10, 20, -5], [30, 25, 10]], degrees=True)
POSITIONS = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 0.5], [1.5, 2.0, 1.0]])


# A camera mounted as EuRoC's cam0 on its IMU (camera-to-body): optical axis along the body's
# x, image right along the body's -y, a few centimetres off the IMU.
T_BODY_CAM = np.eye(4)
T_BODY_CAM[:3, :3] = Rotation.from_euler('zx', [90, 1.5], degrees=True).as_matrix()
T_BODY_CAM[:3, 3] = [-0.0216, -0.0647, 0.0098]


def write_tum(path, rotations=ROTATIONS, positions=POSITIONS):
    lines = ['# timestamp tx ty tz qx qy qz qw']
    for stamp, p, q in zip(STAMPS_NS, positions, rotations.as_quat()):
        lines.append(f'{stamp / 1e9:.9f} ' + ' '.join(repr(float(v)) for v in [*p, *q]))
    path.write_text('\n'.join(lines) + '\n')
    return path


def write_euroc(path, rotations=ROTATIONS, positions=POSITIONS):
    lines = ['#timestamp, p_RS_R_x [m], p_RS_R_y [m], p_RS_R_z [m], q_RS_w [], q_RS_x [], '
             'q_RS_y [], q_RS_z [], v_RS_R_x [m s^-1]']
    for stamp, p, q in zip(STAMPS_NS, positions, rotations.as_quat()):
        values = [*p, q[3], q[0], q[1], q[2], 0.0]
        lines.append(','.join([str(int(stamp))] + [repr(float(v)) for v in values]))
    path.write_text('\n'.join(lines) + '\n')
    return path


@pytest.mark.parametrize('writer', [write_tum, write_euroc])
def test_interpolated_poses_match_scipy(tmp_path, writer):
    trajectory = load_trajectory(writer(tmp_path / 'gt.txt'))
    slerp = Slerp(STAMPS_NS / 1e9, ROTATIONS)
    for stamp in (1_000_000_000, 1_030_000_000, 1_100_000_000, 1_175_000_000, 1_200_000_000):
        T = trajectory.pose_at(stamp)
        np.testing.assert_allclose(T[:3, :3], slerp(stamp / 1e9).as_matrix(), atol=1e-7)
        expected = np.array([np.interp(stamp, STAMPS_NS, POSITIONS[:, i]) for i in range(3)])
        np.testing.assert_allclose(T[:3, 3], expected, atol=1e-7)
    assert trajectory.pose_at(999_999_999) is None and trajectory.pose_at(1_200_000_001) is None


def test_relative_camera_pose():
    T0, T1 = np.eye(4), np.eye(4)
    T1[:3, :3] = ROTATIONS[1].as_matrix()
    T1[:3, 3] = [1.0, 0.0, 0.0]
    R, t = relative_camera_pose(T0, T1)
    world = np.array([0.3, 0.4, 5.0])
    in_camera1 = np.linalg.inv(T1) @ np.append(world, 1)
    np.testing.assert_allclose(R @ world + t, in_camera1[:3], atol=1e-12)


def test_camera_motion_from_each_format(tmp_path):
    """The same camera motion given as TUM camera poses and as EuRoC body (IMU) poses with the
    camera's T_body_cam is scored as that motion (~0 error); the body poses taken as camera
    poses, or turned with a wrong mounting, are far off it."""
    world_from_camera = [np.eye(4) for _ in STAMPS_NS]
    for T, rotation, position in zip(world_from_camera, ROTATIONS, POSITIONS):
        T[:3, :3], T[:3, 3] = rotation.as_matrix(), position
    world_from_body = [T @ np.linalg.inv(T_BODY_CAM) for T in world_from_camera]
    tum = load_trajectory(write_tum(tmp_path / 'gt.tum'))
    euroc = load_trajectory(write_euroc(
        tmp_path / 'gt.csv', Rotation.from_matrix([T[:3, :3] for T in world_from_body]),
        [T[:3, 3] for T in world_from_body]))
    assert (tum.frame, euroc.frame) == (CAMERA_FRAME, BODY_FRAME)
    for first, second in ((0, 1), (0, 2), (2, 1)):
        R, t = relative_camera_pose(world_from_camera[first], world_from_camera[second])
        stamps = STAMPS_NS[first], STAMPS_NS[second]
        for motion in (tum.camera_motion(*stamps), tum.camera_motion(*stamps, T_BODY_CAM),
                       euroc.camera_motion(*stamps, T_BODY_CAM)):
            np.testing.assert_allclose(motion[0], R, atol=1e-9)
            np.testing.assert_allclose(motion[1], t, atol=1e-9)
        # The body poses scored as if they were the camera's (what eval did before #14).
        R_wrong, t_wrong = euroc.camera_motion(*stamps, np.eye(4))
        assert max(rotation_error_deg(R_wrong, R), translation_error_deg(t_wrong, t)) > 10
    with pytest.raises(ConfigError, match="body \\(IMU\\) poses: the camera's T_body_cam"):
        euroc.camera_motion(*STAMPS_NS[:2])
    assert euroc.camera_motion(STAMPS_NS[0], STAMPS_NS[-1] + 1, T_BODY_CAM) is None


def test_bad_lines_and_files(tmp_path):
    bad = tmp_path / 'bad.txt'
    bad.write_text('1.0 0 0 0 0 0 0 1\n2.0 0 0 zero 0 0 0 1\n')
    with pytest.raises(ConfigError, match=r'bad.txt line 2 is not a TUM pose'):
        load_trajectory(bad)
    with pytest.raises(ConfigError, match='cannot read ground truth'):
        load_trajectory(tmp_path / 'missing.txt')
    empty = tmp_path / 'empty.txt'
    empty.write_text('# nothing\n')
    with pytest.raises(ConfigError, match='holds no poses'):
        load_trajectory(empty)
