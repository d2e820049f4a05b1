"""Synthetic image sequences with exact ground truth: real photos on a multi-plane scene.

The scene is a wall of photos 8 m in front of the origin plus three tilted photo patches at
other depths (a single plane would make relative pose degenerate). The photos are the ones
bundled with scikit-image (no download). A view is rendered for a pinhole camera ``K`` and a
pose ``(R, t)`` mapping world to camera coordinates (``x_cam = R @ x_world + t``), in the
OpenCV camera convention (x right, y down, z forward). The world frame is the camera frame of
a camera at the origin looking at the wall.

Rendering warps each photo onto the image with its plane's exact homography, keeps the nearest
plane per pixel (z-buffer on inverse depth) and supersamples to anti-alias; pixels that see no
plane keep the backdrop colour. OpenCV samples textures at 1/32-texel positions, so image
content is exact to about 0.03 px while poses, intrinsics and depth maps are exact.
"""
import functools
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import cv2
import numpy as np

from loftr_ros.core.camera import CameraModel, StereoCalibration, relative_camera_pose

# Photos bundled inside the scikit-image wheel (skimage/data/*.png|jpg): no network needed.
PHOTOS = ('astronaut', 'chelsea', 'coffee', 'rocket', 'motorcycle', 'immunohistochemistry',
          'camera', 'retina', 'gravel')
# Grey value of pixels that see no plane.
BACKDROP = 40


def load_photo(name: str) -> np.ndarray:
    """A photo bundled with scikit-image as HxWx3 uint8 BGR (grey photos are replicated)."""
    if name not in PHOTOS:
        raise ValueError(f"unknown photo '{name}', valid: {', '.join(PHOTOS)}")
    from skimage import data
    image = data.stereo_motorcycle()[0] if name == 'motorcycle' else getattr(data, name)()
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(image[..., :3], cv2.COLOR_RGB2BGR)


@dataclass(frozen=True)
class Pose:
    """Camera-from-world rigid transform: x_cam = R @ x_world + t."""

    R: np.ndarray
    t: np.ndarray

    @classmethod
    def look_at(cls, centre: Sequence[float], target: Sequence[float], roll_deg: float = 0.0):
        """A camera at `centre` whose optical axis points at `target`, image y towards world +y
        (down), then rolled about the optical axis."""
        centre = np.asarray(centre, np.float64)
        z = np.asarray(target, np.float64) - centre
        z /= np.linalg.norm(z)
        x = np.cross([0.0, 1.0, 0.0], z)
        x /= np.linalg.norm(x)
        y = np.cross(z, x)
        roll = np.deg2rad(roll_deg)
        c, s = np.cos(roll), np.sin(roll)
        R = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]]) @ np.stack([x, y, z])
        return cls(R, -R @ centre)

    @property
    def centre(self) -> np.ndarray:
        """Camera centre in world coordinates."""
        return -self.R.T @ self.t

    def world_from_camera(self) -> np.ndarray:
        """The inverse transform as a 4x4 matrix (what TUM/EuRoC ground truth files hold)."""
        T = np.eye(4)
        T[:3, :3] = self.R.T
        T[:3, 3] = self.centre
        return T


def relative_pose(pose0: Pose, pose1: Pose) -> Tuple[np.ndarray, np.ndarray]:
    """(R, t) of camera 0 in camera 1: x1 = R @ x0 + t."""
    return relative_camera_pose(pose0.world_from_camera(), pose1.world_from_camera())


@dataclass(frozen=True)
class TexturedPlane:
    """A photo on a rectangle: texture pixel (0, 0)'s outer corner sits at `origin`, `axis_u`
    spans the texture's full width and `axis_v` its full height (world vectors, metres)."""

    origin: np.ndarray
    axis_u: np.ndarray
    axis_v: np.ndarray
    texture: np.ndarray

    def texture_to_world(self) -> np.ndarray:
        """[3 x 3] A with world point = A @ (a, b, 1) for texture pixel centre (a, b)."""
        height, width = self.texture.shape[:2]
        offset = self.origin + 0.5 * (self.axis_u / width + self.axis_v / height)
        return np.stack([self.axis_u / width, self.axis_v / height, offset], axis=1)

    def world_point(self, a: float, b: float) -> np.ndarray:
        """World position of texture pixel coordinates (a, b)."""
        return self.texture_to_world() @ np.array([a, b, 1.0])


@dataclass(frozen=True)
class View:
    """One rendered image with its exact ground truth.

    image: HxWx3 uint8 BGR; depth: HxW float32 z in the camera frame (metres) of the plane seen
    through each pixel centre, inf where no plane is seen; stamp_ns: nanoseconds.
    """

    image: np.ndarray
    depth: np.ndarray
    camera: CameraModel
    pose: Pose
    stamp_ns: int


def default_camera(width: int = 640, height: int = 480, focal: float = 500.0) -> CameraModel:
    """A distortion-free pinhole camera with its principal point at the image centre."""
    return CameraModel.from_intrinsics(focal, focal, (width - 1) / 2, (height - 1) / 2,
                                       size=(width, height))


def _rotation(axis: str, degrees: float) -> np.ndarray:
    c, s = np.cos(np.deg2rad(degrees)), np.sin(np.deg2rad(degrees))
    if axis == 'x':
        return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _patch(photo: np.ndarray, centre, width_m: float, rotation: np.ndarray) -> TexturedPlane:
    height_m = width_m * photo.shape[0] / photo.shape[1]
    axis_u = rotation @ np.array([width_m, 0.0, 0.0])
    axis_v = rotation @ np.array([0.0, height_m, 0.0])
    origin = np.asarray(centre, np.float64) - (axis_u + axis_v) / 2
    return TexturedPlane(origin, axis_u, axis_v, photo)


def _fit(photo: np.ndarray, width: int, height: int) -> np.ndarray:
    """Centre-crop to the aspect ratio of width x height, then resize."""
    h, w = photo.shape[:2]
    if w * height > h * width:
        crop = h * width // height
        photo = photo[:, (w - crop) // 2:(w - crop) // 2 + crop]
    else:
        crop = w * height // width
        photo = photo[(h - crop) // 2:(h - crop) // 2 + crop]
    shrink = photo.shape[1] > width
    return cv2.resize(photo, (width, height),
                      interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


@functools.lru_cache(maxsize=1)
def default_scene() -> Tuple[TexturedPlane, ...]:
    """The wall (24 m x 12 m at z = 8 m, six photos) and three patches at 2.8-5 m, each tilted.

    From the origin the wall fills a 640x480, f=500 view; a camera that yaws more than about
    25 degrees away from +z starts to see past the wall's edge.
    """
    tiles = [_fit(load_photo(name), 640, 480) for name in
             ('rocket', 'coffee', 'motorcycle', 'immunohistochemistry', 'camera', 'retina')]
    wall_texture = np.concatenate([np.concatenate(tiles[:3], axis=1),
                                   np.concatenate(tiles[3:], axis=1)], axis=0)
    wall = TexturedPlane(np.array([-12.0, -6.0, 8.0]), np.array([24.0, 0.0, 0.0]),
                         np.array([0.0, 12.0, 0.0]), wall_texture)
    astronaut = _patch(_fit(load_photo('astronaut'), 400, 400), (-1.6, -0.6, 4.0), 1.8,
                       _rotation('y', 30.0))
    chelsea = _patch(_fit(load_photo('chelsea'), 450, 300), (1.9, 0.9, 5.0), 2.4,
                     _rotation('y', -15.0) @ _rotation('x', -25.0))
    gravel = _patch(_fit(load_photo('gravel'), 300, 300), (0.3, 1.2, 2.8), 1.0,
                    _rotation('x', 55.0))
    return (wall, astronaut, chelsea, gravel)


def _affine_map(coefficients: np.ndarray, width: int, height: int) -> np.ndarray:
    """c0 * x + c1 * y + c2 at every pixel centre [H x W] (float64), by broadcasting."""
    xs = np.arange(width, dtype=np.float64)[None, :]
    ys = np.arange(height, dtype=np.float64)[:, None]
    return coefficients[0] * xs + (coefficients[1] * ys + coefficients[2])


def _inverse_depth(plane: TexturedPlane, K: np.ndarray, pose: Pose, width: int, height: int):
    """1/z of the plane along each pixel's ray (affine in the pixel for a plane);
    negative or zero where the plane is behind the camera or seen edge-on."""
    normal = pose.R @ np.cross(plane.axis_u, plane.axis_v)
    distance = normal @ (pose.R @ plane.origin + pose.t)
    coefficients = np.linalg.inv(K).T @ normal / distance
    return _affine_map(coefficients, width, height)


def _inside(plane: TexturedPlane, K: np.ndarray, pose: Pose, width: int, height: int,
            ) -> np.ndarray:
    """Whether each pixel's ray meets the plane's rectangle (texture coords in range)."""
    to_texture = np.linalg.inv(_texture_to_image(plane, K, pose))
    a, b, w = (_affine_map(row, width, height) for row in to_texture)
    a /= w
    b /= w
    texture_height, texture_width = plane.texture.shape[:2]
    return ((a >= -0.5) & (a <= texture_width - 0.5) &
            (b >= -0.5) & (b <= texture_height - 0.5))


def _texture_to_image(plane: TexturedPlane, K: np.ndarray, pose: Pose) -> np.ndarray:
    """Homography from texture pixel coordinates to image pixel coordinates."""
    A = plane.texture_to_world()
    # World point = A @ (a, b, 1); camera point = R @ world + t = (R @ A + t e3^T) @ (a, b, 1).
    camera_from_texture = pose.R @ A
    camera_from_texture[:, 2] += pose.t
    return K @ camera_from_texture


def render(camera: CameraModel, pose: Pose, planes: Sequence[TexturedPlane] = None,
           supersample: int = 2) -> Tuple[np.ndarray, np.ndarray]:
    """Image (HxWx3 uint8 BGR) and depth (HxW float32, inf where empty) of the scene.

    The camera must have no distortion; its size is the image size.
    """
    if camera.dist.size and np.any(camera.dist):
        raise ValueError('render supports distortion-free cameras only')
    planes = default_scene() if planes is None else planes
    width, height = camera.size
    # Supersampled pixel (x', y') = s * x + (s - 1) / 2 keeps pixel centres aligned.
    s = int(supersample)
    scale = np.array([[s, 0.0, (s - 1) / 2], [0.0, s, (s - 1) / 2], [0.0, 0.0, 1.0]])
    K_fine = scale @ camera.K
    colour = np.full((height * s, width * s, 3), float(BACKDROP), np.float32)
    nearest = np.zeros((height * s, width * s), np.float64)
    # Back to front (farthest plane centre first), so that coverage blending at a patch's edge
    # mixes it with what lies behind it; the inverse-depth test keeps occlusion exact.
    order = sorted(planes, key=lambda p: -np.linalg.norm(
        pose.R @ (p.origin + (p.axis_u + p.axis_v) / 2) + pose.t))
    for plane in order:
        H = _texture_to_image(plane, K_fine, pose)
        # Colour plus a coverage channel, warped together with a zero border: premultiplied
        # alpha, so a plane's edge blends with what lies behind it.
        texture = np.dstack([plane.texture.astype(np.float32),
                             np.ones(plane.texture.shape[:2], np.float32)])
        warped = cv2.warpPerspective(texture, H, (width * s, height * s),
                                     flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        coverage = warped[..., 3]
        inverse_depth = _inverse_depth(plane, K_fine, pose, width * s, height * s)
        visible = (inverse_depth > 1e-6) & (inverse_depth > nearest) & (coverage > 0)
        rows, cols = np.nonzero(visible)
        alpha = coverage[rows, cols, None]
        colour[rows, cols] = warped[rows, cols, :3] + (1 - alpha) * colour[rows, cols]
        nearest = np.where(visible & (coverage >= 0.5), inverse_depth, nearest)
    if s > 1:
        colour = cv2.resize(colour, (width, height), interpolation=cv2.INTER_AREA)
    image = np.clip(np.rint(colour), 0, 255).astype(np.uint8)
    return image, _depth(camera.K, pose, planes, width, height)


def _depth(K: np.ndarray, pose: Pose, planes: Sequence[TexturedPlane], width: int, height: int):
    nearest = np.zeros((height, width), np.float64)
    for plane in planes:
        inverse_depth = _inverse_depth(plane, K, pose, width, height)
        hit = (inverse_depth > 1e-6) & _inside(plane, K, pose, width, height)
        nearest = np.where(hit & (inverse_depth > nearest), inverse_depth, nearest)
    with np.errstate(divide='ignore'):
        return np.where(nearest > 0, 1.0 / nearest, np.inf).astype(np.float32)


def render_views(poses: Sequence[Pose], camera: CameraModel = None, fps: float = 20.0,
                 start_ns: int = 1_000_000_000, planes: Sequence[TexturedPlane] = None,
                 ) -> List[View]:
    """One view per pose, stamped at `fps` from `start_ns`."""
    camera = camera or default_camera()
    period_ns = int(round(1e9 / fps))
    views = []
    for index, pose in enumerate(poses):
        image, depth = render(camera, pose, planes)
        views.append(View(image, depth, camera, pose, start_ns + index * period_ns))
    return views


def camera_path(num_frames: int, step_m: float = 0.25, target=(0.0, 0.0, 6.0)) -> List[Pose]:
    """A smooth figure-of-eight in front of the scene, always looking near `target`.

    Consecutive frames are about `step_m` apart (at the fastest point) and turn by a few
    degrees, with some roll: enough parallax for relative pose from consecutive pairs.
    """
    period = 2 * np.pi * 1.2 / step_m  # frames per loop for a 1.2 m x-amplitude
    poses = []
    for index in range(num_frames):
        phase = 2 * np.pi * index / period
        centre = (1.2 * np.sin(phase), 0.4 * np.sin(2 * phase), 0.3 * np.sin(0.5 * phase))
        look = (target[0] + 0.5 * np.cos(phase), target[1] + 0.3 * np.cos(1.5 * phase), target[2])
        poses.append(Pose.look_at(centre, look, roll_deg=4.0 * np.sin(phase)))
    return poses


def pan_path(num_frames: int, end_yaw_deg: float = 70.0) -> List[Pose]:
    """A camera at the origin yawing from facing the wall to `end_yaw_deg` (to the right).

    Beyond about 25 degrees the view starts to leave the scene: the overlap with the first
    frame shrinks to nothing and the last frames show mostly the empty backdrop.
    """
    poses = []
    for yaw in np.linspace(0.0, end_yaw_deg, num_frames):
        R = _rotation('y', float(yaw)).T
        poses.append(Pose(R, np.zeros(3)))
    return poses


def stereo_pair(pose: Pose, baseline_m: float = 0.11) -> Tuple[Pose, Pose]:
    """Left camera at `pose`, right camera `baseline_m` along the left camera's x axis."""
    return pose, Pose(pose.R.copy(), pose.t - np.array([baseline_m, 0.0, 0.0]))


def stereo_calibration(camera: CameraModel, baseline_m: float = 0.11) -> StereoCalibration:
    """The calibration of :func:`stereo_pair` for two identical cameras."""
    return StereoCalibration(camera, camera, np.eye(3), np.array([-baseline_m, 0.0, 0.0]))


def tracking_path(num_frames: int) -> List[Pose]:
    """A slow, smooth path for feature tracking: the camera drifts 1.2 m sideways and 0.8 m
    towards the scene while it turns by up to 6 degrees (yaw and pitch) and rolls by up to 4,
    so that points stay in view for dozens of frames while the views keep changing."""
    poses = []
    for s in np.linspace(0.0, 1.0, num_frames):
        centre = (-0.6 + 1.2 * s, 0.15 * np.sin(2 * np.pi * s), 0.8 * s)
        target = (1.2 * np.sin(np.pi * s) - 0.6, 0.5 * np.sin(3 * np.pi * s), 8.0)
        poses.append(Pose.look_at(centre, target, roll_deg=4.0 * np.sin(2 * np.pi * s)))
    return poses


def turning_path(num_frames: int) -> List[Pose]:
    """A smooth path that turns one way only: the camera drifts 1.2 m sideways and 0.8 m
    towards the scene while it turns by about 6 degrees right and 6 up and rolls from -3 to +3
    degrees. Where tracking_path's turns reverse, so that what comes into view at one border
    soon leaves it again, here a point that comes into view stays for a while: tracks can last
    longer, and new features start in places tracking_path never tests."""
    poses = []
    for s in np.linspace(0.0, 1.0, num_frames):
        centre = (-0.6 + 1.2 * s, -0.1 + 0.2 * s * s, 0.8 * s)
        target = (-0.6 + 2.0 * s, 0.3 - 0.6 * s, 8.0)
        poses.append(Pose.look_at(centre, target, roll_deg=-3.0 + 6.0 * s))
    return poses


def _inverse_depth_at(view: View, points: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """1/z at sub-pixel points [N x 2] by bilinear interpolation of the depth map's inverse
    (exact on a plane, where 1/z is affine in the pixel), and whether the four pixels around
    each point see one surface (no edge, nothing empty, inside the image)."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    height, width = view.depth.shape
    x0 = np.floor(points[:, 0]).astype(np.intp)
    y0 = np.floor(points[:, 1]).astype(np.intp)
    valid = (x0 >= 0) & (y0 >= 0) & (x0 < width - 1) & (y0 < height - 1)
    x0, y0 = np.where(valid, x0, 0), np.where(valid, y0, 0)
    fx, fy = points[:, 0] - x0, points[:, 1] - y0
    with np.errstate(divide='ignore'):
        inverse = 1.0 / view.depth.astype(np.float64)
    corners = np.stack([inverse[y0, x0], inverse[y0, x0 + 1], inverse[y0 + 1, x0],
                        inverse[y0 + 1, x0 + 1]], axis=1)
    # On one plane the four inverse depths differ by the plane's slope only (well under 1 %).
    valid &= (corners.min(axis=1) > 0) & (corners.max(axis=1) < 1.01 * corners.min(axis=1))
    value = ((1 - fy) * ((1 - fx) * corners[:, 0] + fx * corners[:, 1]) +
             fy * ((1 - fx) * corners[:, 2] + fx * corners[:, 3]))
    return np.where(valid, value, np.nan), valid


def back_project(view: View, points: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """World points [N x 3] seen at pixel points [N x 2] of a view (depth from its depth map),
    and whether each was well defined (one surface around it, see _inverse_depth_at)."""
    inverse, valid = _inverse_depth_at(view, points)
    rays = np.concatenate([np.asarray(points, np.float64).reshape(-1, 2),
                           np.ones((len(inverse), 1))], axis=1) @ np.linalg.inv(view.camera.K).T
    camera_points = rays / inverse[:, None]
    return (camera_points - view.pose.t) @ view.pose.R, valid


def project_visible(view: View, world: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Pixels [N x 2] of world points [N x 3] in a view, and whether each is visible there: in
    front of the camera, inside the image, and the surface the view sees at that pixel is the
    point's own (its depth agrees within 0.5 %: not occluded)."""
    camera_points = np.asarray(world, np.float64).reshape(-1, 3) @ view.pose.R.T + view.pose.t
    z = camera_points[:, 2]
    with np.errstate(divide='ignore', invalid='ignore'):
        pixels = (camera_points @ view.camera.K.T)[:, :2] / z[:, None]
    inverse, valid = _inverse_depth_at(view, np.nan_to_num(pixels, nan=-1.0))
    with np.errstate(invalid='ignore'):
        valid &= (z > 0) & (np.abs(inverse * z - 1.0) < 0.005)
    return pixels, valid
