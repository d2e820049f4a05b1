"""Temporal reprojection error of tracks (loftr_ros.core.reprojection): exact observations of
the rendered sequence give ~0, injected noise shows as itself, a track that slides to another
point stands out, and tracks without parallax or behind a camera are counted, not measured.

The tracks here are the exact projections of scene points (core/synthetic.py's rendered
sequence and depth, or points placed in front of the camera), so that the metric is tested
alone; the tracker on rendered and real frames is test/tools/test_evaluate_tracks.py's.
"""
import numpy as np
import pytest

from loftr_ros.core import synthetic
from loftr_ros.core.reprojection import (BEHIND, LOW_PARALLAX, MEASURED, MIN_PARALLAX_DEG,
                                         TrackReprojection, triangulate_tracks)
from loftr_ros.core.tracking import TrackedFrame

WIDTH, HEIGHT, FOCAL = 320, 240, 250.0
CAMERA = synthetic.default_camera(WIDTH, HEIGHT, FOCAL)


@pytest.fixture(scope='module')
def views():
    return synthetic.render_views(synthetic.tracking_path(12), CAMERA)


def point_tracks(views, step=16):
    """World points [K x 3] (the first view's depth on a grid) and, per view, the indices and
    pixels of those in sight; a point out of sight once is never seen again (a tracker does not
    revive a track)."""
    columns, rows = np.meshgrid(np.arange(8, WIDTH - 8, step, dtype=np.float64),
                                np.arange(8, HEIGHT - 8, step, dtype=np.float64))
    world, defined = synthetic.back_project(views[0], np.stack([columns.ravel(),
                                                                rows.ravel()], axis=1))
    world = world[defined]
    alive = np.ones(len(world), bool)
    seen = []
    for view in views:
        pixels, visible = synthetic.project_visible(view, world)
        alive &= visible
        seen.append((np.flatnonzero(alive), pixels[alive]))
    return world, seen


def tracked_frame(view, ids, pixels, camera=CAMERA, right=None):
    """A TrackedFrame of observations at `pixels` (their normalized coordinates from `camera`);
    `right`: (valid, right pixels) of a stereo frame."""
    count = len(ids)
    fields = {}
    if right is not None:
        valid, right_pixels = right
        right_normalized = np.full((count, 2), np.nan)
        right_normalized[valid] = camera.normalize(right_pixels[valid])
        fields = dict(right_image_size=camera.size, right_keypoints=right_pixels,
                      right_valid=valid, right_normalized=right_normalized)
    return TrackedFrame(view.stamp_ns, camera.size, np.asarray(ids, np.int64),
                        pixels.astype(np.float32), np.ones(count, np.int64),
                        np.ones(count, np.float32), normalized=camera.normalize(pixels),
                        **fields)


def summary_of(views, noise_px=0.0, without_pose=(), seed=0):
    rng = np.random.default_rng(seed)
    _, seen = point_tracks(views)
    reprojection = TrackReprojection(CAMERA)
    for index, (view, (ids, pixels)) in enumerate(zip(views, seen)):
        noisy = pixels + rng.normal(0.0, noise_px, pixels.shape)
        pose = None if index in without_pose else view.pose.world_from_camera()
        reprojection.add(tracked_frame(view, ids, noisy), pose)
    return reprojection.summary(), seen


def test_exact_observations_have_no_error_and_every_track_is_counted_once(views):
    summary, seen = summary_of(views, without_pose=(5,))
    print(summary)
    assert summary['tracks_measured'] >= 100
    assert summary['median_px'] < 1e-6 and summary['p90_px'] < 1e-6
    assert summary['within_1px'] == 1.0
    # Tracks are counted when they end (out of sight) or the run does, each once; those seen
    # in fewer than two frames with a pose (frame 5 has none) are too short.
    ids = np.concatenate([ids for index, (ids, _) in enumerate(seen) if index != 5])
    tracks = len(np.unique(np.concatenate([ids for ids, _ in seen])))
    short = tracks - int(np.sum(np.bincount(ids) >= 2))
    assert summary['tracks_skipped']['short'] == short
    assert summary['tracks_measured'] + sum(summary['tracks_skipped'].values()) == tracks
    # The observations of frame 5 are left out; those of the tracks skipped for their
    # parallax (in sight for two or three frames, far away) too.
    assert 0.9 * len(ids) < summary['observations_measured'] <= len(ids)
    assert summary['right_observations_measured'] == 0


def test_injected_noise_shows_as_itself(views):
    """Gaussian noise of sigma px per coordinate: the distance of a 2D observation to its
    point's projection has a median of 1.18 sigma (Rayleigh), a little less after the point is
    fitted to the observations themselves."""
    medians = {sigma: summary_of(views, sigma)[0]['median_px'] for sigma in (0.25, 0.5)}
    print(medians)
    for sigma, median in medians.items():
        assert 0.9 * sigma < median < 1.18 * sigma
    assert medians[0.5] / medians[0.25] == pytest.approx(2.0, rel=0.15)


def test_a_track_that_slides_to_another_point_stands_out(views):
    """Track 0 follows one point for six frames, then the point beside it (12 px away in the
    first view, on another surface's depth or the same); the other tracks stay on theirs."""
    world, seen = point_tracks(views, step=12)
    shared = np.flatnonzero(np.all([np.isin(np.arange(len(world)), ids) for ids, _ in seen],
                                   axis=0))
    first, neighbour = shared[0], shared[1]
    others = shared[2:40]
    track, normalized, rotations, translations = [], [], [], []
    for index, view in enumerate(views):
        slid = neighbour if index >= 6 else first
        points = np.concatenate([[world[slid]], world[others]])
        camera_points = points @ view.pose.R.T + view.pose.t
        normalized.append(camera_points[:, :2] / camera_points[:, 2:])
        track.append(np.arange(len(points)))
        rotations.append(np.broadcast_to(view.pose.R, (len(points), 3, 3)))
        translations.append(np.broadcast_to(view.pose.t, (len(points), 3)))
    track = np.concatenate(track)
    result = triangulate_tracks(track, np.concatenate(normalized), np.concatenate(rotations),
                                np.concatenate(translations), np.full(len(track), FOCAL),
                                len(others) + 1)
    assert (result.status == MEASURED).all()
    slid_errors = result.errors_px[track == 0]
    print(f'slid track: {np.round(slid_errors, 2)} px')
    assert np.median(slid_errors) > 2.0 and slid_errors.max() > 4.0
    assert result.errors_px[track != 0].max() < 1e-6
    np.testing.assert_allclose(result.points[1:], world[others], atol=1e-6)
    # Its point is the one of least squared reprojection error: a millimetre off it in any
    # direction, its observations are farther.
    rows = track == 0
    R, t = np.concatenate(rotations)[rows], np.concatenate(translations)[rows]
    observed = np.concatenate(normalized)[rows]
    for step in np.concatenate([np.eye(3), -np.eye(3)]) * 1e-3:
        camera_points = R @ (result.points[0] + step) + t
        residuals = FOCAL * (camera_points[:, :2] / camera_points[:, 2:] - observed)
        assert np.sum(residuals ** 2) > np.sum(slid_errors ** 2)


def static_stereo_frames(count=4, baseline_m=0.11):
    """A camera that does not move, 60 points 3-8 m in front of it, seen by it and a right
    camera `baseline_m` beside it: (frames, world-from-left pose, calibration, the angle in
    degrees between each point's rays from the two cameras)."""
    rng = np.random.default_rng(1)
    depth = rng.uniform(3.0, 8.0, 60)
    pixels = rng.uniform([10, 10], [WIDTH - 10, HEIGHT - 10], (60, 2))
    left_rays = np.column_stack([(pixels - CAMERA.K[:2, 2]) / FOCAL, np.ones(60)])
    camera_points = left_rays * depth[:, None]
    right_rays = camera_points - [baseline_m, 0.0, 0.0]
    right_pixels = right_rays[:, :2] / right_rays[:, 2:] * FOCAL + CAMERA.K[:2, 2]
    cosines = np.sum(camera_points * right_rays, axis=1) / (
        np.linalg.norm(camera_points, axis=1) * np.linalg.norm(right_rays, axis=1))
    pose = synthetic.tracking_path(2)[0]
    calibration = synthetic.stereo_calibration(CAMERA, baseline_m)
    views = [synthetic.View(None, None, CAMERA, pose, 1_000_000_000 + i * 50_000_000)
             for i in range(count)]
    right = (np.ones(60, bool), right_pixels)
    frames = [tracked_frame(view, np.arange(60), pixels, right=right) for view in views]
    return frames, pose.world_from_camera(), calibration, np.degrees(np.arccos(cosines))


def test_a_static_camera_needs_the_stereo_baseline():
    frames, pose, calibration, stereo_angles = static_stereo_frames()
    mono, stereo = TrackReprojection(CAMERA), TrackReprojection(CAMERA, calibration)
    for frame in frames:
        mono.add(frame, pose)
        stereo.add(frame, pose)
    mono, stereo = mono.summary(), stereo.summary()
    # One camera position: every ray of a point is the same ray, the depth is unknown.
    assert mono['tracks_measured'] == 0 and mono['observations_measured'] == 0
    assert mono['tracks_skipped'][LOW_PARALLAX] == 60 and np.isnan(mono['median_px'])
    assert mono['min_parallax_deg'] == MIN_PARALLAX_DEG
    # The right camera 11 cm beside it: the points whose rays are a degree apart or more (up
    # to about 6 m away) are measured, the others counted.
    wide = int(np.sum(stereo_angles >= MIN_PARALLAX_DEG))
    assert 20 <= wide < 60
    assert stereo['tracks_measured'] == wide
    assert stereo['tracks_skipped'][LOW_PARALLAX] == 60 - wide
    assert stereo['right_observations_measured'] == 4 * wide
    assert stereo['observations_measured'] == 8 * wide
    assert stereo['p90_px'] < 1e-6


def test_rays_that_meet_behind_the_cameras_are_counted():
    """Two cameras 1 m apart looking the same way, whose rays diverge: they meet 5 m behind."""
    result = triangulate_tracks(np.array([0, 0]), np.array([[-0.1, 0.0], [0.1, 0.0]]),
                                np.stack([np.eye(3)] * 2), np.array([[0.0, 0, 0], [-1.0, 0, 0]]),
                                np.full(2, FOCAL), 1)
    assert list(result.status) == [BEHIND]
    assert np.isnan(result.errors_px).all() and np.isnan(result.points).all()
    assert result.parallax_deg[0] == pytest.approx(11.42, abs=0.01)
