"""Camera models and stereo calibration: pinhole intrinsics with plumb_bob distortion."""
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import yaml

from loftr_ros.core.errors import ConfigError


@dataclass(frozen=True)
class CameraModel:
    """K: [3 x 3] float64; dist: OpenCV distortion coefficients (k1 k2 p1 p2 [k3 ...]) or empty;
    size: (width, height) of the images the calibration is for."""

    K: np.ndarray
    dist: np.ndarray
    size: tuple

    @classmethod
    def from_intrinsics(cls, fx, fy, cx, cy, dist: Sequence[float] = (), size=(0, 0)):
        K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        return cls(K, np.asarray(dist, np.float64), tuple(size))

    @classmethod
    def from_camera_info(cls, k: Sequence[float], d: Sequence[float], width: int, height: int,
                         distortion_model: str = 'plumb_bob'):
        """From the fields of a sensor_msgs/CameraInfo (k row-major 3x3, d)."""
        if distortion_model not in ('plumb_bob', 'rational_polynomial', '') and any(d):
            raise ConfigError(f"unsupported distortion model '{distortion_model}'")
        K = np.asarray(k, np.float64).reshape(3, 3)
        if K[0, 0] <= 0 or K[1, 1] <= 0:
            raise ConfigError('camera_info has no intrinsics (K is zero)')
        return cls(K, np.asarray(d, np.float64), (int(width), int(height)))

    @property
    def focal(self) -> float:
        return float((self.K[0, 0] + self.K[1, 1]) / 2)

    def normalize(self, points: np.ndarray) -> np.ndarray:
        """Pixel points [N x 2] to undistorted normalized image coordinates [N x 2]."""
        import cv2
        points = np.asarray(points, np.float64).reshape(-1, 1, 2)
        if len(points) == 0:
            return np.zeros((0, 2))
        dist = self.dist if self.dist.size else None
        return cv2.undistortPoints(points, self.K, dist).reshape(-1, 2)


@dataclass(frozen=True)
class StereoCalibration:
    """Two cameras and the pose of camera 0 in camera 1: x1 = R @ x0 + t (metres)."""

    camera0: CameraModel
    camera1: CameraModel
    R: np.ndarray
    t: np.ndarray

    @property
    def baseline(self) -> float:
        return float(np.linalg.norm(self.t))


def load_euroc_calibration(path, camera0: str = 'cam0', camera1: str = 'cam1',
                           ) -> StereoCalibration:
    """Read a EuRoC/Kalibr-style YAML with intrinsics_fu_fv_cu_cv, distortion_coefficients and
    T_body_cam (4x4 row-major, camera-to-body) per camera."""
    try:
        document = yaml.safe_load(Path(path).read_text())
        cams = [_euroc_camera(document[name]) for name in (camera0, camera1)]
    except OSError as error:
        raise ConfigError(f'cannot read calibration {path}: {error.strerror}') from None
    except (KeyError, TypeError, ValueError, yaml.YAMLError) as error:
        raise ConfigError(f'calibration {path} is malformed: {error!r}') from None
    (model0, T_body_cam0), (model1, T_body_cam1) = cams
    return StereoCalibration(model0, model1, *relative_camera_pose(T_body_cam0, T_body_cam1))


def _euroc_camera(entry):
    fu, fv, cu, cv = entry['intrinsics_fu_fv_cu_cv']
    model = CameraModel.from_intrinsics(fu, fv, cu, cv, entry.get('distortion_coefficients', ()),
                                        tuple(entry.get('resolution', (0, 0))))
    T = np.asarray(entry['T_body_cam'], np.float64).reshape(4, 4)
    return model, T


def relative_camera_pose(world_from_camera0: np.ndarray, world_from_camera1: np.ndarray):
    """(R, t) of camera 0 in camera 1 (x1 = R x0 + t) from two 4x4 world-from-camera poses."""
    camera1_from_camera0 = np.linalg.inv(world_from_camera1) @ world_from_camera0
    return camera1_from_camera0[:3, :3], camera1_from_camera0[:3, 3]


def skew(v: np.ndarray) -> np.ndarray:
    x, y, z = np.asarray(v, np.float64).ravel()
    return np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])


def essential_from_pose(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """E with x1^T E x0 = 0 for normalized points, given x1 = R x0 + t."""
    return skew(t) @ np.asarray(R, np.float64)


def sampson_distances(keypoints0: np.ndarray, keypoints1: np.ndarray,
                      calibration: StereoCalibration) -> np.ndarray:
    """Sampson distance of each match to the calibrated epipolar geometry.

    The points are undistorted and normalized with each camera's model; the distance is then
    scaled by the mean focal length of the two cameras so that it reads in pixels.
    """
    x0 = calibration.camera0.normalize(keypoints0)
    x1 = calibration.camera1.normalize(keypoints1)
    E = essential_from_pose(calibration.R, calibration.t)
    focal = (calibration.camera0.focal + calibration.camera1.focal) / 2
    return sampson_distances_normalized(x0, x1, E) * focal


def sampson_distances_normalized(x0: np.ndarray, x1: np.ndarray, E: np.ndarray,
                                 ) -> np.ndarray:
    """First-order geometric error of x1^T E x0 = 0 for normalized points [N x 2]."""
    h0 = np.concatenate([x0, np.ones((len(x0), 1))], axis=1)
    h1 = np.concatenate([x1, np.ones((len(x1), 1))], axis=1)
    Ex0 = h0 @ E.T
    Etx1 = h1 @ E
    numerator = np.einsum('ij,ij->i', h1, Ex0)
    denominator = Ex0[:, 0] ** 2 + Ex0[:, 1] ** 2 + Etx1[:, 0] ** 2 + Etx1[:, 1] ** 2
    return np.abs(numerator) / np.sqrt(np.maximum(denominator, 1e-30))
