"""Ground-truth trajectories (TUM text format, EuRoC CSV) interpolated to image stamps.

TUM: ``timestamp tx ty tz qx qy qz qw`` per line (seconds, world-from-camera), ``#`` comments;
the poses are those of the camera's optical frame (x right, y down, z forward), as in the TUM
RGB-D benchmark. EuRoC (state_groundtruth_estimate0/data.csv): ``#timestamp [ns], p_x, p_y, p_z,
q_w, q_x, q_y, q_z, ...`` (further columns ignored); the poses are those of the body (IMU)
frame, which the camera's T_body_cam (from the calibration) turns into camera poses. Poses are
world-from-sensor 4x4 matrices; positions are interpolated linearly and rotations by slerp. A
stamp outside the recorded range has no pose.
"""
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from loftr_ros.core.camera import relative_camera_pose
from loftr_ros.core.errors import ConfigError

# Frames a trajectory's poses can be given in.
CAMERA_FRAME = 'camera'
BODY_FRAME = 'body'


def rotation_from_quaternion(x: float, y: float, z: float, w: float) -> np.ndarray:
    q = np.array([x, y, z, w], np.float64)
    x, y, z, w = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _slerp(q0: np.ndarray, q1: np.ndarray, fraction: float) -> np.ndarray:
    if np.dot(q0, q1) < 0:
        q1 = -q1
    cosine = np.clip(np.dot(q0, q1), -1.0, 1.0)
    angle = np.arccos(cosine)
    if angle < 1e-9:
        return q0
    return (np.sin((1 - fraction) * angle) * q0 + np.sin(fraction * angle) * q1) / np.sin(angle)


class Trajectory:
    """Stamped world-from-sensor poses, sorted by stamp.

    stamps_ns: [N] int64; positions: [N x 3]; quaternions: [N x 4] (x, y, z, w); frame: the
    sensor whose poses they are, CAMERA_FRAME (optical) or BODY_FRAME (IMU).
    """

    def __init__(self, stamps_ns: np.ndarray, positions: np.ndarray, quaternions: np.ndarray,
                 frame: str = CAMERA_FRAME):
        self.frame = frame
        order = np.argsort(stamps_ns, kind='stable')
        self.stamps_ns = np.asarray(stamps_ns, np.int64)[order]
        self.positions = np.asarray(positions, np.float64)[order]
        quaternions = np.asarray(quaternions, np.float64)[order]
        self.quaternions = quaternions / np.linalg.norm(quaternions, axis=1, keepdims=True)

    def __len__(self):
        return len(self.stamps_ns)

    @property
    def time_range_ns(self):
        return int(self.stamps_ns[0]), int(self.stamps_ns[-1])

    def pose_at(self, stamp_ns: int) -> Optional[np.ndarray]:
        """4x4 world-from-sensor pose at `stamp_ns`, or None outside the recorded range."""
        first, last = self.time_range_ns
        if not first <= stamp_ns <= last:
            return None
        index = int(np.searchsorted(self.stamps_ns, stamp_ns, side='right')) - 1
        index = min(index, len(self) - 2) if len(self) > 1 else 0
        T = np.eye(4)
        if len(self) == 1:
            fraction = 0.0
            q, p = self.quaternions[0], self.positions[0]
        else:
            span = self.stamps_ns[index + 1] - self.stamps_ns[index]
            fraction = (stamp_ns - self.stamps_ns[index]) / span if span else 0.0
            q = _slerp(self.quaternions[index], self.quaternions[index + 1], fraction)
            p = (1 - fraction) * self.positions[index] + fraction * self.positions[index + 1]
        T[:3, :3] = rotation_from_quaternion(*q)
        T[:3, 3] = p
        return T

    def camera_pose(self, stamp_ns: int, T_body_cam: Optional[np.ndarray] = None,
                    ) -> Optional[np.ndarray]:
        """4x4 world-from-camera pose at `stamp_ns`, or None outside the recorded range. Body
        poses are turned into camera poses with T_body_cam (camera-to-body); ConfigError
        without it."""
        if self.frame == BODY_FRAME and T_body_cam is None:
            msg = ('the ground truth holds body (IMU) poses: the camera\'s T_body_cam is '
                   'needed to score camera motion')
            raise ConfigError(msg)
        pose = self.pose_at(stamp_ns)
        if pose is None or self.frame != BODY_FRAME:
            return pose
        return pose @ T_body_cam

    def camera_motion(self, stamp0_ns: int, stamp1_ns: int,
                      T_body_cam: Optional[np.ndarray] = None,
                      ) -> Optional[Tuple[np.ndarray, np.ndarray]]:
        """(R, t) of the camera at stamp0 in the camera at stamp1 (x1 = R x0 + t, metres), or
        None when a stamp lies outside the recorded range (see camera_pose)."""
        poses = [self.camera_pose(stamp, T_body_cam) for stamp in (stamp0_ns, stamp1_ns)]
        if any(pose is None for pose in poses):
            return None
        return relative_camera_pose(*poses)


def load_trajectory(path) -> Trajectory:
    """Read a TUM text file (camera poses) or a EuRoC ground-truth CSV (body poses; detected by
    the comma separator)."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise ConfigError(f'cannot read ground truth {path}: {error.strerror}') from None
    rows = [(number, line) for number, line in enumerate(lines, 1)
            if line.strip() and not line.lstrip().startswith('#')]
    if not rows:
        raise ConfigError(f'ground truth {path} holds no poses')
    euroc = ',' in rows[0][1]
    stamps, positions, quaternions = [], [], []
    for number, line in rows:
        fields = line.split(',') if euroc else line.split()
        try:
            if euroc:
                stamp = int(fields[0])
                position = [float(v) for v in fields[1:4]]
                w, x, y, z = (float(v) for v in fields[4:8])
            else:
                stamp = int(round(float(fields[0]) * 1e9))
                position = [float(v) for v in fields[1:4]]
                x, y, z, w = (float(v) for v in fields[4:8])
        except (ValueError, IndexError):
            kind = 'EuRoC CSV' if euroc else 'TUM'
            raise ConfigError(f'ground truth {path} line {number} is not a {kind} pose: '
                              f'{line.strip()[:80]!r}') from None
        stamps.append(stamp)
        positions.append(position)
        quaternions.append([x, y, z, w])
    return Trajectory(np.array(stamps), np.array(positions), np.array(quaternions),
                      BODY_FRAME if euroc else CAMERA_FRAME)
