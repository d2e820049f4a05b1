"""The temporal reprojection error of feature tracks against ground-truth camera poses
(``loftr-ros eval --mode tracks --ground-truth``).

A track claims to be one physical point seen frame after frame. Given the true pose of the
camera at each of its observations, the point is triangulated from all of them, and each
observation's distance to the projection of that point says how far the track strays from
being one point: noise, drift, or a slide onto a neighbouring surface. The fit is plain least
squares over every observation, not a robust one: a slide spreads its error over the track's
observations, which is what this metric is there to show.

Triangulation, vectorised over all tracks at once: the point nearest to all the track's rays
(the midpoint method generalised to n rays: the X solving sum_i (I - d_i d_i^T)(X - c_i) = 0
for ray directions d_i from camera centres c_i), then GAUSS_NEWTON_STEPS Gauss-Newton steps on
the reprojection error itself. The error of an observation is in pixels: its distance in the
undistorted normalized image plane scaled by its camera's focal length, the unit of eval's
epipolar errors (lens distortion changes it by well under 1 % near the image centre).

Tracks that cannot be measured are counted, never hidden: those seen in fewer than two frames
with a ground-truth pose; those whose rays are less than MIN_PARALLAX_DEG apart (nearly
parallel rays leave the depth free: the point moves along them and absorbs the observations'
errors along the epipolar lines, so a sliding track would look fine); and those whose point
lies behind one of its cameras (rays that meet only behind the cameras). In stereo with the
calibrated extrinsics the right observations join the triangulation and are measured alike:
the known baseline gives the points of a camera that barely moves their parallax.
"""
from dataclasses import dataclass
from typing import Any, Dict, List, NamedTuple, Optional

import numpy as np

from loftr_ros.core.camera import CameraModel, StereoCalibration
from loftr_ros.core.tracking.frame import TrackedFrame

# Smallest angle between a track's rays for its point to be measured (degrees). ORB-SLAM2
# triangulates a map point from two keyframes only when their rays are at least acos(0.9998) =
# 1.15 degrees apart (LocalMapping::CreateNewMapPoints); at EuRoC's 458 px focal length one
# degree is 8 px of disparity.
MIN_PARALLAX_DEG = 1.0
# Gauss-Newton steps after the linear point: it lies within the observations' noise of the
# optimum, from where the steps converge quadratically (three reach 1e-9 px on exact data).
GAUSS_NEWTON_STEPS = 5
# Reprojection error under which an observation counts as on its point (pixels).
CORRECT_PX = 1.0

# What became of a track (Triangulation.status).
MEASURED, LOW_PARALLAX, BEHIND = 'measured', 'low_parallax', 'behind_camera'


@dataclass(frozen=True)
class Triangulation:
    """The tracks of triangulate_tracks.

    points: [K x 3] world points, NaN where not measured; parallax_deg: [K] the largest angle
    between a track's first ray and any other of its rays (for a camera moving on, its first
    and last view; never less than half the largest angle between any two of its rays);
    status: [K] MEASURED, LOW_PARALLAX or BEHIND; errors_px: [N] the reprojection error of each
    observation, NaN for the tracks not measured.
    """

    points: np.ndarray
    parallax_deg: np.ndarray
    status: np.ndarray
    errors_px: np.ndarray

    @property
    def measured(self) -> np.ndarray:
        return self.status == MEASURED


def triangulate_tracks(track: np.ndarray, normalized: np.ndarray, rotations: np.ndarray,
                       translations: np.ndarray, focal: np.ndarray, count: int,
                       ) -> Triangulation:
    """Triangulate `count` tracks from their observations and measure each observation's
    reprojection error (see the module docstring).

    Observation i belongs to track `track[i]` (0 <= track < count; each track needs two
    observations or more) and is the undistorted normalized point `normalized[i]` (x, y on the
    z = 1 plane) seen by a camera whose pose is camera-from-world: x_camera = rotations[i] @
    x_world + translations[i]; `focal[i]` (pixels) turns its error into pixels.
    """
    track = np.asarray(track, np.intp)
    homogeneous = np.concatenate([np.asarray(normalized, np.float64),
                                  np.ones((len(track), 1))], axis=1)
    R = np.asarray(rotations, np.float64)
    t = np.asarray(translations, np.float64)
    focal = np.asarray(focal, np.float64)
    # World rays: direction R^T (x, y, 1) from the camera centre -R^T t.
    directions = np.einsum('nji,nj->ni', R, homogeneous)
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    centres = -np.einsum('nji,nj->ni', R, t)

    parallax = _parallax_deg(track, directions, count)
    status = np.where(parallax >= MIN_PARALLAX_DEG, MEASURED, LOW_PARALLAX).astype(object)
    points = np.full((count, 3), np.nan)
    chosen = status == MEASURED
    # Nearest point to the rays: the projections off each ray, I - d d^T, summed per track.
    off_ray = np.eye(3) - directions[:, :, None] * directions[:, None, :]
    A = _sum_by_track(off_ray, track, count)
    b = _sum_by_track(np.einsum('nij,nj->ni', off_ray, centres), track, count)
    if chosen.any():
        points[chosen] = np.linalg.solve(A[chosen], b[chosen][..., None])[..., 0]
    # Out of the Gauss-Newton steps too, which divide by the point's depth in each camera.
    status[chosen & _behind(points, track, R, t, count)] = BEHIND

    for _ in range(GAUSS_NEWTON_STEPS):
        chosen = status == MEASURED
        if not chosen.any():
            break
        rows = chosen[track]
        residuals, jacobians = _residuals(points[track[rows]], R[rows], t[rows],
                                          homogeneous[rows, :2], focal[rows])
        H = _sum_by_track(np.einsum('nki,nkj->nij', jacobians, jacobians), track[rows], count)
        g = _sum_by_track(np.einsum('nki,nk->ni', jacobians, residuals), track[rows], count)
        points[chosen] -= np.linalg.solve(H[chosen], g[chosen][..., None])[..., 0]
    status[(status == MEASURED) & _behind(points, track, R, t, count)] = BEHIND

    measured = status == MEASURED
    points[~measured] = np.nan
    errors = np.full(len(track), np.nan)
    rows = measured[track]
    residuals, _ = _residuals(points[track[rows]], R[rows], t[rows], homogeneous[rows, :2],
                              focal[rows])
    errors[rows] = np.linalg.norm(residuals, axis=1)
    return Triangulation(points, parallax, status.astype(str), errors)


def _sum_by_track(values: np.ndarray, track: np.ndarray, count: int) -> np.ndarray:
    """Per-observation values [N x ...] summed per track [count x ...]."""
    sums = np.zeros((count,) + values.shape[1:])
    np.add.at(sums, track, values)
    return sums


def _parallax_deg(track: np.ndarray, directions: np.ndarray, count: int) -> np.ndarray:
    """The largest angle (degrees) between each track's first ray and its other rays."""
    _, first = np.unique(track, return_index=True)
    first_ray = np.zeros((count, 3))
    first_ray[track[first]] = directions[first]
    cosines = np.ones(count)
    np.minimum.at(cosines, track, np.einsum('ni,ni->n', directions, first_ray[track]))
    return np.degrees(np.arccos(np.clip(cosines, -1.0, 1.0)))


def _behind(points: np.ndarray, track: np.ndarray, R: np.ndarray, t: np.ndarray, count: int,
            ) -> np.ndarray:
    """[count] whether a track's point lies behind (or on the plane of) one of its cameras."""
    with np.errstate(invalid='ignore'):
        depth = np.einsum('nj,nj->n', R[:, 2], points[track]) + t[:, 2]
        behind = ~(depth > 0)
    flags = np.zeros(count, bool)
    flags[track[behind]] = True
    return flags


def _residuals(points: np.ndarray, R: np.ndarray, t: np.ndarray, observed: np.ndarray,
               focal: np.ndarray):
    """Reprojection residuals [N x 2] in pixels and their Jacobians [N x 2 x 3] with respect
    to the world point."""
    camera = np.einsum('nij,nj->ni', R, points) + t
    depth = camera[:, 2]
    projected = camera[:, :2] / depth[:, None]
    residuals = focal[:, None] * (projected - observed)
    # d(projection)/d(camera point) = [[1, 0, -x], [0, 1, -y]] / z, then through R.
    d_projection = np.zeros((len(depth), 2, 3))
    d_projection[:, 0, 0] = d_projection[:, 1, 1] = 1.0
    d_projection[:, :, 2] = -projected
    d_projection *= (focal / depth)[:, None, None]
    return residuals, d_projection @ R


class _Observations(NamedTuple):
    """Stored observations, one row each: the track id, whether it is a left one (one per
    frame), its normalized point, and its camera's camera-from-world pose and focal length."""

    ids: np.ndarray
    left: np.ndarray
    normalized: np.ndarray
    rotations: np.ndarray
    translations: np.ndarray
    focal: np.ndarray

    @classmethod
    def empty(cls) -> '_Observations':
        return cls(np.zeros(0, np.int64), np.zeros(0, bool), np.zeros((0, 2)),
                   np.zeros((0, 3, 3)), np.zeros((0, 3)), np.zeros(0))

    @classmethod
    def of_camera(cls, ids: np.ndarray, left: bool, normalized: np.ndarray,
                  world_from_camera: np.ndarray, focal: float) -> '_Observations':
        camera_from_world = np.linalg.inv(world_from_camera)
        count = len(ids)
        return cls(np.asarray(ids, np.int64), np.full(count, left),
                   np.asarray(normalized, np.float64),
                   np.broadcast_to(camera_from_world[:3, :3], (count, 3, 3)),
                   np.broadcast_to(camera_from_world[:3, 3], (count, 3)), np.full(count, focal))

    def take(self, rows: np.ndarray) -> '_Observations':
        return _Observations(*(values[rows] for values in self))

    def extend(self, others: List['_Observations']) -> '_Observations':
        return _Observations(*(np.concatenate(parts) for parts in zip(self, *others)))


class TrackReprojection:
    """The temporal reprojection error of a run's tracks, fed frame by frame.

    Each frame's observations are kept with the ground-truth pose of their camera until their
    track ends (it is missing from a frame: the tracker never revives an id) or the run does
    (`summary`); then the track is triangulated (triangulate_tracks). Memory holds the live
    tracks' observations and one float per measured observation, however long the run.

    `left`: the left (or only) camera. `stereo`: the calibrated stereo pair, whose right
    observations then join with the right camera's pose from the extrinsics; None: the left
    observations only (mono, or no extrinsics).
    """

    def __init__(self, left: CameraModel, stereo: Optional[StereoCalibration] = None):
        self._left_focal = left.focal
        self._stereo = stereo
        if stereo is not None:
            right_from_left = np.eye(4)
            right_from_left[:3, :3], right_from_left[:3, 3] = stereo.R, stereo.t
            self._left_from_right = np.linalg.inv(right_from_left)
        self._live = np.zeros(0, np.int64)
        self._stored = _Observations.empty()
        self._errors: List[np.ndarray] = []
        self._right_measured = 0
        self._tracks = {MEASURED: 0, LOW_PARALLAX: 0, BEHIND: 0, 'short': 0}

    def add(self, frame: TrackedFrame, world_from_camera: Optional[np.ndarray]):
        """A tracked frame (with its left camera's normalized coordinates) and the ground-truth
        world-from-camera pose [4 x 4] of its left camera, None where the ground truth has
        none (its observations are left out; the tracks go on)."""
        ended = np.setdiff1d(self._live, frame.ids)
        self._live = np.asarray(frame.ids, np.int64)
        if world_from_camera is not None:
            if frame.normalized is None:
                raise ValueError('the reprojection error needs the normalized coordinates of '
                                 'the left observations (the tracker\'s left camera model)')
            new = [_Observations.of_camera(frame.ids, True, frame.normalized, world_from_camera,
                                           self._left_focal)]
            if self._stereo is not None and frame.right_normalized is not None:
                valid = frame.right_valid
                new.append(_Observations.of_camera(
                    frame.ids[valid], False, frame.right_normalized[valid],
                    world_from_camera @ self._left_from_right, self._stereo.camera1.focal))
            self._stored = self._stored.extend(new)
        if ended.size:
            self._measure(np.isin(self._stored.ids, ended), ended.size)

    def summary(self) -> Dict[str, Any]:
        """The run's figures, every live track ended first: the error of every measured
        observation ('median_px', 'p90_px', 'within_1px', 'observations_measured',
        'right_observations_measured'), 'tracks_measured', and 'tracks_skipped' by cause
        ('short': fewer than two frames with a pose, 'low_parallax', 'behind_camera'), with
        'min_parallax_deg'."""
        if self._live.size:
            self._measure(np.ones(len(self._stored.ids), bool), self._live.size)
            self._live = np.zeros(0, np.int64)
        errors = np.concatenate([np.zeros(0, np.float32)] + self._errors)
        if errors.size:
            figures = {'median_px': float(np.median(errors)),
                       'p90_px': float(np.percentile(errors, 90)),
                       'within_1px': float(np.mean(errors < CORRECT_PX))}
        else:
            figures = dict.fromkeys(('median_px', 'p90_px', 'within_1px'), float('nan'))
        return {**figures, 'observations_measured': int(errors.size),
                'right_observations_measured': self._right_measured,
                'tracks_measured': self._tracks[MEASURED],
                'tracks_skipped': {cause: self._tracks[cause]
                                   for cause in ('short', LOW_PARALLAX, BEHIND)},
                'min_parallax_deg': MIN_PARALLAX_DEG}

    def _measure(self, rows: np.ndarray, ended: int):
        """Triangulate the `ended` tracks whose stored observations are `rows`."""
        observations, self._stored = self._stored.take(rows), self._stored.take(~rows)
        _, track = np.unique(observations.ids, return_inverse=True)
        frames = np.bincount(track, weights=observations.left.astype(np.float64))
        observations = observations.take(frames[track] >= 2)
        ids, track = np.unique(observations.ids, return_inverse=True)
        self._tracks['short'] += ended - len(ids)
        if not len(ids):
            return
        result = triangulate_tracks(track, observations.normalized, observations.rotations,
                                    observations.translations, observations.focal, len(ids))
        for status in (MEASURED, LOW_PARALLAX, BEHIND):
            self._tracks[status] += int(np.sum(result.status == status))
        measured = result.measured[track]
        self._errors.append(result.errors_px[measured].astype(np.float32))
        self._right_measured += int(np.sum(measured & ~observations.left))
