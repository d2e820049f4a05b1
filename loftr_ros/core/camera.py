"""Camera models and stereo calibration: pinhole intrinsics with plumb_bob distortion, and
where a Kalibr/EuRoC calibration gives it, the camera's pose on the body (IMU) frame."""
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import yaml

from loftr_ros.core.errors import ConfigError


# Distortion vector lengths cv2.undistortPoints accepts: k1 k2 p1 p2 [k3 [k4 k5 k6 [s1 s2 s3 s4
# [tx ty]]]]; any other length makes it raise.
OPENCV_DISTORTION_COUNTS = (0, 4, 5, 8, 12, 14)
# sensor_msgs/CameraInfo distortion models the undistortion supports, with their coefficient
# counts (what ROS's camera_calibration writes): plumb_bob is k1 k2 p1 p2 k3, and also taken with
# 4 (k3 = 0, as OpenCV reads it); rational_polynomial adds k4 k5 k6.
CAMERA_INFO_DISTORTION_MODELS = {'plumb_bob': (5, 4), 'rational_polynomial': (8,)}


@dataclass(frozen=True)
class CameraModel:
    """K: [3 x 3] float64; dist: OpenCV distortion coefficients (k1 k2 p1 p2 [k3 ...]) or empty;
    size: (width, height) of the images the calibration is for, (0, 0) when unknown;
    T_body_cam: [4 x 4] float64 camera-to-body transform (x_body = T_body_cam @ x_camera, the
    optical frame: x right, y down, z forward) from a Kalibr/EuRoC calibration, None when
    unknown (camera_info has no extrinsics): what turns body (IMU) ground truth, such as
    EuRoC's, into camera poses.

    Checked when built (ConfigError with the reason): K finite, of the form [fx s cx; 0 fy cy;
    0 0 1] without skew (the undistortion ignores it) and with positive focal lengths; the
    distortion vector finite and of a length OpenCV accepts; T_body_cam a finite rigid
    transform. So `normalize` cannot fail on the model.
    """

    K: np.ndarray
    dist: np.ndarray
    size: tuple
    T_body_cam: Optional[np.ndarray] = None

    def __post_init__(self):
        K = np.asarray(self.K, np.float64)
        dist = np.asarray(self.dist, np.float64).reshape(-1)
        if K.shape != (3, 3) or not np.all(np.isfinite(K)):
            raise ConfigError(f'K must be 3x3 and finite, got {_numbers(K)}')
        if not (K[0, 0] > 0 and K[1, 1] > 0):
            msg = f'focal lengths must be positive, got fx {K[0, 0]:g}, fy {K[1, 1]:g}'
            raise ConfigError(msg)
        if K[1, 0] != 0 or np.any(K[2] != (0, 0, 1)) or abs(K[0, 1]) > 1e-9 * K[0, 0]:
            msg = (f'K must be [fx 0 cx; 0 fy cy; 0 0 1] (no skew: the undistortion ignores '
                   f'it), got {_numbers(K)}')
            raise ConfigError(msg)
        reason = _non_finite('the distortion coefficients', dist)
        if reason:
            raise ConfigError(reason)
        if dist.size not in OPENCV_DISTORTION_COUNTS:
            counts = ', '.join(str(count) for count in OPENCV_DISTORTION_COUNTS)
            raise ConfigError(f'{dist.size} distortion coefficients: OpenCV takes {counts}')
        if self.T_body_cam is not None:
            T = np.asarray(self.T_body_cam, np.float64)
            if (T.shape != (4, 4) or not np.all(np.isfinite(T)) or np.any(T[3] != (0, 0, 0, 1))
                    or not np.allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-6)):
                msg = f'T_body_cam must be a 4x4 rigid transform, got {_numbers(T)}'
                raise ConfigError(msg)
            object.__setattr__(self, 'T_body_cam', T)
        object.__setattr__(self, 'K', K)
        object.__setattr__(self, 'dist', dist)
        object.__setattr__(self, 'size', tuple(int(side) for side in self.size))

    @classmethod
    def from_intrinsics(cls, fx, fy, cx, cy, dist: Sequence[float] = (), size=(0, 0),
                        T_body_cam: Optional[Sequence[float]] = None):
        """From intrinsics; T_body_cam as a 4x4 matrix or 16 row-major numbers."""
        K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        if T_body_cam is not None:
            T_body_cam = np.asarray(T_body_cam, np.float64).reshape(4, 4)
        return cls(K, np.asarray(dist, np.float64), tuple(size), T_body_cam)

    @classmethod
    def from_camera_info(cls, k: Sequence[float], d: Sequence[float], width: int, height: int,
                         distortion_model: str = 'plumb_bob'):
        """From the fields of a sensor_msgs/CameraInfo (k row-major 3x3, d); ConfigError with
        the reason when they do not describe a camera the undistortion supports.

        D must have its model's length (CAMERA_INFO_DISTORTION_MODELS). Coefficients past it
        are accepted only when they are all zero (dropped), and a D of zeros alone means no
        distortion whatever the model; any other length or model is refused (OpenCV would
        raise on it, or read the coefficients as another model)."""
        k = np.asarray(k, np.float64).reshape(-1)
        if k.size != 9:
            raise ConfigError(f'K must have 9 entries, got {k.size}')
        d = np.asarray(d, np.float64).reshape(-1)
        reason = _non_finite('D', d)
        if reason:
            raise ConfigError(reason)
        if not np.any(d):
            d = d[:0]
        elif distortion_model not in CAMERA_INFO_DISTORTION_MODELS:
            supported = ', '.join(CAMERA_INFO_DISTORTION_MODELS)
            msg = f"unsupported distortion model '{distortion_model}'; supported: {supported}"
            raise ConfigError(msg)
        else:
            counts = CAMERA_INFO_DISTORTION_MODELS[distortion_model]
            length = next((count for count in counts if d.size == count or
                           (d.size > count and not np.any(d[count:]))), None)
            if length is None:
                expected = ' or '.join(str(count) for count in counts)
                msg = (f'{distortion_model} takes {expected} distortion coefficients (more '
                       f'only when the extra ones are zero), got {d.size}: {_numbers(d)}')
                raise ConfigError(msg)
            d = d[:length]
        if int(width) <= 0 or int(height) <= 0:
            raise ConfigError(f'no image size (width {width}, height {height})')
        return cls(k.reshape(3, 3), d, (int(width), int(height)))

    def size_mismatch(self, size) -> Optional[str]:
        """Why this camera does not describe images of `size` (width, height), or None when
        it does (or its size is unknown)."""
        if self.size == (0, 0) or tuple(size) == self.size:
            return None
        (width, height), (image_width, image_height) = self.size, size
        return (f'the calibration is for {width}x{height} images, not '
                f'{image_width}x{image_height}')

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


def load_euroc_cameras(path) -> Dict[str, CameraModel]:
    """Every camera of a EuRoC/Kalibr-style YAML (name -> CameraModel), each entry a mapping
    with intrinsics_fu_fv_cu_cv, distortion_coefficients, resolution and T_body_cam (4x4
    row-major, camera-to-body)."""
    try:
        document = yaml.safe_load(Path(path).read_text())
        if not isinstance(document, dict):
            raise TypeError('not a mapping of cameras')
        cameras = {name: _euroc_camera(entry) for name, entry in document.items()
                   if isinstance(entry, dict) and 'intrinsics_fu_fv_cu_cv' in entry}
    except OSError as error:
        raise ConfigError(f'cannot read calibration {path}: {error.strerror}') from None
    except (KeyError, TypeError, ValueError, yaml.YAMLError) as error:
        raise ConfigError(f'calibration {path} is malformed: {error!r}') from None
    except ConfigError as error:
        raise ConfigError(f'calibration {path}: {error}') from None
    if not cameras:
        raise ConfigError(f'calibration {path} holds no camera (entries with '
                          f'intrinsics_fu_fv_cu_cv)')
    return cameras


def load_euroc_calibration(path, camera0: str = 'cam0', camera1: str = 'cam1',
                           ) -> StereoCalibration:
    """The stereo calibration of two cameras of a EuRoC/Kalibr-style YAML (load_euroc_cameras);
    each camera keeps its T_body_cam."""
    cameras = load_euroc_cameras(path)
    missing = [name for name in (camera0, camera1) if name not in cameras]
    if missing:
        raise ConfigError(f"calibration {path} has no camera {', '.join(missing)} (it has "
                          f"{', '.join(cameras)})")
    model0, model1 = cameras[camera0], cameras[camera1]
    return StereoCalibration(model0, model1,
                             *relative_camera_pose(model0.T_body_cam, model1.T_body_cam))


def _numbers(values: np.ndarray) -> str:
    """Up to 20 values for a message (an attacker's 10,000-entry D would flood the log)."""
    flat = np.asarray(values, np.float64).reshape(-1)
    text = ', '.join(f'{value:g}' for value in flat[:20])
    return f'[{text}{", ..." if flat.size > 20 else ""}]'


def _non_finite(name: str, values: np.ndarray) -> Optional[str]:
    """Why `values` are not all finite, naming the first entry that is not (an inf or a NaN in
    D would make every undistorted point NaN), or None."""
    bad = np.flatnonzero(~np.isfinite(values))
    if not bad.size:
        return None
    more = f' (and {bad.size - 1} more)' if bad.size > 1 else ''
    return (f'{name} must be finite: entry {bad[0]} is {values[bad[0]]:g}{more}, got '
            f'{_numbers(values)}')


def _euroc_camera(entry) -> CameraModel:
    fu, fv, cu, cv = entry['intrinsics_fu_fv_cu_cv']
    return CameraModel.from_intrinsics(fu, fv, cu, cv, entry.get('distortion_coefficients', ()),
                                       tuple(entry.get('resolution', (0, 0))),
                                       entry['T_body_cam'])


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
