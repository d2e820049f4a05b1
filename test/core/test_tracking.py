"""Feature tracker (loftr_ros.core.tracking): purity on rendered ground truth, stereo tracks on
the real EuRoC pairs, ids across resets, masks (issue 11, acceptance 1, 2, 4 and 5 in the core).

Purity: every track's 3D point is the rendered depth at its first observation; each later
observation must lie within 1 px of that point's projection. The sequences are
core/synthetic.py's tracking_path and turning_path: 60 frames each, translation and rotation,
points in view for most of them (tracking_path's turns reverse, turning_path's do not).
"""
import numpy as np
import pytest

from loftr_ros.core import synthetic
from loftr_ros.core.backends.base import PreparedImage
from loftr_ros.core.camera import sampson_distances
from loftr_ros.core.config import MatcherConfig
from loftr_ros.core.errors import ConfigError, MaskError
from loftr_ros.core.masks import combine
from loftr_ros.core.matcher import Matcher
from loftr_ros.core.preprocessing import ImageTransform, image_size, normalize_image
from loftr_ros.core.tracking import Tracker, TrackerConfig
from loftr_ros.core.types import MatchResult

NUM_FRAMES = 60
WIDTH, HEIGHT, FOCAL = 320, 240, 250.0
TRACKER = TrackerConfig(max_features=150, min_distance=15.0)


def rendered(path):
    camera = synthetic.default_camera(WIDTH, HEIGHT, FOCAL)
    return synthetic.render_views(path(NUM_FRAMES), camera)


@pytest.fixture(scope='module')
def views():
    return rendered(synthetic.tracking_path)


@pytest.fixture(scope='module')
def turning_views():
    return rendered(synthetic.turning_path)


@pytest.fixture(scope='module')
def sequences(views, turning_views):
    """Path name ('tracking', 'turning') -> its rendered views."""
    return {'tracking': views, 'turning': turning_views}


class GridMatcher:
    """A matcher with LoFTR-shaped output on rendered views: image-0 keypoints on the 8 px
    coarse grid (where image 0 sees a surface that image 1 sees too), image-1 keypoints at
    their exact ground-truth positions plus 0.3 px Gaussian noise; no per-image keypoints.
    It knows each image's view by the array's identity (the tracker hands them through)."""

    refinement = None

    def __init__(self, views, noise_px=0.3, seed=0):
        self._views = {id(view.image): view for view in views}
        self._rng = np.random.default_rng(seed)
        self._noise = noise_px

    def prepare_batch(self, images, masks=None):
        masks = masks or [None] * len(images)
        return [PreparedImage(None, ImageTransform.create(image_size(image), 0, 1),
                              self._views[id(image)], id(self),
                              normalize_image(image, True, 10 ** 8),
                              {'preprocess': 0.0, 'model': 0.0},
                              combine(image_size(image), mask))
                for image, mask in zip(images, masks)]

    def keypoints(self, image):
        return None

    def match(self, image0, image1, refine=True):
        view0, view1 = image0.features, image1.features
        columns, rows = np.meshgrid(np.arange(0, WIDTH, 8.0), np.arange(0, HEIGHT, 8.0))
        grid = np.stack([columns.ravel(), rows.ravel()], axis=1)
        world, defined = synthetic.back_project(view0, grid)
        projected, visible = synthetic.project_visible(view1, world)
        keep = defined & visible
        keypoints1 = projected[keep] + self._rng.normal(0, self._noise, (keep.sum(), 2))
        count = int(keep.sum())
        return MatchResult(grid[keep].astype(np.float32), keypoints1.astype(np.float32),
                           np.ones(count, np.float32), view0.camera.size, view1.camera.size)


def track_errors(tracker, views):
    """Per observation (id, track length, error to the projection of its first observation's
    3D point in px); observations whose point is not visible are left out. Also the frames."""
    world, rows, frames = {}, [], []
    for view in views:
        frame = tracker.track(view.stamp_ns, view.image)
        frames.append(frame)
        for track_id, position, length in zip(frame.ids, frame.keypoints,
                                              frame.track_lengths):
            if track_id not in world:
                point, defined = synthetic.back_project(view, position[None])
                world[track_id] = point[0] if defined[0] else None
            if world[track_id] is None:
                continue
            projected, visible = synthetic.project_visible(view, world[track_id][None])
            if visible[0]:
                rows.append((track_id, length, np.linalg.norm(projected[0] - position)))
    return np.array(rows), frames


def track_lengths(frames):
    """Total frames each track was seen in."""
    lengths = {}
    for frame in frames:
        for track_id, length in zip(frame.ids.tolist(), frame.track_lengths.tolist()):
            lengths[track_id] = length
    return np.array(list(lengths.values()))


def purity(errors, frames, label):
    """(share of observations within 1 px, worst error of any track in px), printed with the
    median track length."""
    within = float(np.mean(errors[:, 2] <= 1.0))
    worst = float(errors[:, 2].max())
    print(f'{label}: {len(errors)} observations, {within:.2%} within 1 px, worst {worst:.2f} px, '
          f'median track length {np.median(track_lengths(frames))}, '
          f'{len(track_lengths(frames))} tracks')
    return within, worst


# xfeat with mutual nearest neighbours: LighterGlue costs several times more on a CPU.
DETECTORS = {'xfeat': MatcherConfig(backend='xfeat', options={'matcher': 'mnn'}, warmup=False),
             'opencv': MatcherConfig(backend='opencv', warmup=False)}


@pytest.fixture(scope='module')
def detector_tracks(sequences):
    """(backend, path) -> (errors, frames) of that rendered sequence, tracked once per module."""
    cache = {}

    def tracks(backend, path='tracking'):
        if (backend, path) not in cache:
            tracker = Tracker(Matcher(DETECTORS[backend]), TRACKER)
            cache[backend, path] = track_errors(tracker, sequences[path])
        return cache[backend, path]
    return tracks


@pytest.mark.slow
@pytest.mark.parametrize('path', ['tracking', 'turning'])
@pytest.mark.parametrize('backend', ['xfeat', 'opencv'])
def test_detector_track_observations_lie_on_their_3d_points(detector_tracks, backend, path):
    errors, frames = detector_tracks(backend, path)
    within, _ = purity(errors, frames, f'{backend} on {path}_path')
    assert within >= 0.99
    ids = np.concatenate([frame.ids for frame in frames])
    # Tracks are lost and new ones start (frame 0 starts none, frame 1 the first ones).
    assert len(frames[0]) == 0 and len(np.unique(ids)) > len(frames[1])


# A track that moves to another 3D point drifts off its own without bound: one beside an
# occluding edge (its point on one surface, its patch following the other's edge) went 4.25 px
# off before new features were checked for another motion around them, and 15 px without the
# tracks' slide check.
@pytest.mark.parametrize('path', ['tracking', 'turning'])
@pytest.mark.parametrize('backend', ['xfeat', 'opencv'])
def test_no_detector_track_moves_to_another_3d_point(detector_tracks, backend, path):
    errors, frames = detector_tracks(backend, path)
    assert purity(errors, frames, f'{backend} on {path}_path')[1] <= 3.0


def frames_in_view(views, seed=0):
    """Mean number of frames a scene point is in view, over points sampled uniformly in every
    fifth view (200 pixels each) where the rendered depth defines them."""
    rng = np.random.default_rng(seed)
    points = []
    for view in views[::5]:
        pixels = np.stack([rng.uniform(0, WIDTH, 200), rng.uniform(0, HEIGHT, 200)], axis=1)
        world, defined = synthetic.back_project(view, pixels)
        points.append(world[defined])
    points = np.concatenate(points)
    return np.mean(sum(synthetic.project_visible(view, points)[1] for view in views))


@pytest.mark.parametrize('path', ['tracking', 'turning'])
def test_scene_points_stay_in_view_for_30_frames_on_average(sequences, path):
    # The premise of acceptance 1: tracks have room to last (both paths: ~50 of 60 frames).
    in_view = frames_in_view(sequences[path])
    print(f'{path}_path: a scene point is in view for {in_view:.1f} frames on average')
    assert in_view >= 30


# Acceptance 1's median on turning_path. On tracking_path, whose turns reverse, what comes into
# view at a border soon leaves it again: new features there cannot last, and the median is 11
# (it was 11 too with the rendered ground truth in place of the tracker's slide and two-motion
# checks, and the first frame's unchecked features).
@pytest.mark.parametrize('path', [pytest.param('tracking', marks=pytest.mark.xfail(
    strict=True, reason='tracking_path: new features at the borders soon leave the view (README)')),
    'turning'])
def test_xfeat_tracks_last(detector_tracks, path):
    errors, frames = detector_tracks('xfeat', path)
    assert np.median(track_lengths(frames)) >= 15


@pytest.mark.parametrize('path', ['tracking', 'turning'])
def test_detector_free_propagation_does_not_drift(sequences, path):
    views = sequences[path]
    errors, frames = track_errors(Tracker(GridMatcher(views), TRACKER), views)
    within, worst = purity(errors, frames, f'grid matcher on {path}_path')
    assert within >= 0.99 and worst <= 3.0
    # The same tracks after 2 and after 30 frames: no larger error (0.2 px).
    long_lived = np.unique(errors[errors[:, 1] == 30, 0])
    assert len(long_lived) >= 20
    after = {length: np.mean([errors[(errors[:, 0] == i) & (errors[:, 1] == length), 2].mean()
                              for i in long_lived]) for length in (2, 30)}
    print(f'mean error after 2 frames {after[2]:.3f} px, after 30 {after[30]:.3f} px')
    assert after[30] <= after[2] + 0.2


def test_stamps_going_backwards_reset_with_new_ids(views):
    tracker = Tracker(GridMatcher(views), TRACKER)
    first = [tracker.track(view.stamp_ns, view.image) for view in views[:3]]
    # The first frame starts nothing: no previous frame checks its new features.
    assert len(first[0]) == 0 and len(first[1]) > 0
    seen = set(np.concatenate([frame.ids for frame in first]).tolist())
    restarted = tracker.track(views[0].stamp_ns, views[0].image)
    assert restarted.reset and restarted.lost['reset'] == len(first[-1])
    assert len(restarted) == 0
    following = tracker.track(views[1].stamp_ns, views[1].image)
    assert not following.reset and len(following) > 0
    assert (following.track_lengths == 1).all() and not seen & set(following.ids.tolist())
    assert following.ids.min() > max(seen)


@pytest.mark.slow
@pytest.mark.parametrize('backend', ['xfeat', 'opencv'])
def test_euroc_stereo_tracks_obey_the_calibration_and_persist(euroc_stereo_frames,
                                                              euroc_calibration, backend):
    tracker = Tracker(Matcher(DETECTORS[backend]))
    # Camera models only: the stereo check is then RANSAC's essential matrix per frame, and
    # the calibrated epipolar geometry judges the result (with the calibration the tracker
    # itself keeps only observations within 1 px of it).
    tracker.set_cameras(euroc_calibration.camera0, euroc_calibration.camera1)
    frames = [tracker.track(stamp, left, right) for stamp, left, right in euroc_stereo_frames]
    left = np.concatenate([frame.keypoints[frame.right_valid] for frame in frames])
    right = np.concatenate([frame.right_keypoints[frame.right_valid] for frame in frames])
    distances = sampson_distances(left, right, euroc_calibration)
    within = float(np.mean(distances <= 1.0))
    lengths = track_lengths(frames)
    found = np.concatenate([frame.right_valid for frame in frames]).mean()
    print(f'{backend}: {len(distances)} stereo observations ({found:.0%} of the features), '
          f'{within:.2%} within 1 px Sampson, median track length {np.median(lengths)} of '
          f'{len(frames)} frames, {len(lengths)} tracks')
    assert within >= 0.95
    assert np.median(lengths) >= 40
    assert found >= 0.5
    # Normalized coordinates are the undistortion of the observations.
    last = frames[-1]
    np.testing.assert_allclose(last.normalized,
                               euroc_calibration.camera0.normalize(last.keypoints), atol=1e-9)


def left_half_masked():
    mask = np.full((HEIGHT, WIDTH), 255, np.uint8)
    mask[:, :WIDTH // 2] = 0
    return mask


def in_masked_half(points):
    """Points on a pixel of the masked left half (pixel i covers [i - 0.5, i + 0.5))."""
    return np.floor(np.asarray(points)[:, 0] + 0.5) < WIDTH // 2


@pytest.fixture(scope='module')
def mask_matchers(eloftr_hf_dir):
    return {'xfeat': MatcherConfig(backend='xfeat', options={'matcher': 'mnn'}, warmup=False),
            'opencv': MatcherConfig(backend='opencv', warmup=False),
            'klt': MatcherConfig(backend='klt', warmup=False),
            'eloftr': MatcherConfig(backend='eloftr', weights=str(eloftr_hf_dir), warmup=False,
                                    resize=0, confidence_threshold=0.0)}


@pytest.mark.parametrize('backend', ['xfeat', 'opencv', 'klt', 'eloftr'])
@pytest.mark.parametrize('where', ['static', 'dynamic'])
def test_no_keypoint_or_match_in_a_masked_pixel(views, mask_matchers, backend, where):
    config = mask_matchers[backend]
    image0, image1 = views[0].image, views[4].image
    unmasked = Matcher(config).match(image0, image1)
    assert in_masked_half(unmasked.keypoints0).sum() > 10  # the half has matches to lose
    mask = left_half_masked()
    matcher = Matcher(config, mask=mask if where == 'static' else None)
    dynamic = None if where == 'static' else mask
    # Two arrays (one batch, as stereo), and prepared frames reused (consecutive).
    batched = matcher.match(image0, image1) if where == 'static' else None
    prepared0 = matcher.prepare(image0, dynamic)
    prepared1 = matcher.prepare(image1, dynamic)
    both = matcher.prepare_batch([image0, image1], [dynamic, dynamic])
    results = [matcher.match(prepared0, prepared1), matcher.match(*both)]
    results += [batched] if batched is not None else []
    for result in results:
        assert len(result.keypoints0) > 10
        assert not in_masked_half(result.keypoints0).any()
        assert not in_masked_half(result.keypoints1).any()
    for prepared in (prepared0, *both):
        keypoints = matcher.keypoints(prepared)
        if keypoints is not None:  # a detector's own keypoints
            assert len(keypoints) and not in_masked_half(keypoints).any()


def test_no_track_in_a_masked_pixel(views):
    tracker = Tracker(GridMatcher(views), TRACKER)
    mask = left_half_masked()
    frames = [tracker.track(view.stamp_ns, view.image, left_mask=mask) for view in views[:8]]
    assert all(len(frame) > 10 for frame in frames[1:])
    assert not any(in_masked_half(frame.keypoints).any() for frame in frames)
    matcher = Matcher(MatcherConfig(backend='xfeat', options={'matcher': 'mnn'}, warmup=False))
    tracker = Tracker(matcher, TRACKER)
    frames = [tracker.track(view.stamp_ns, view.image, views[1].image, mask, mask)
              for view in views[:3]]
    assert all(frame.right_valid.sum() > 10 for frame in frames[1:])
    for frame in frames:
        assert not in_masked_half(frame.keypoints).any()
        assert not in_masked_half(frame.right_keypoints[frame.right_valid]).any()


def test_a_mask_of_the_wrong_size_is_a_mask_error(views):
    wrong = np.ones((HEIGHT, WIDTH + 1), np.uint8)
    with pytest.raises(MaskError, match='321x240 but the image is 320x240'):
        Matcher(MatcherConfig(backend='opencv', warmup=False)).prepare(views[0].image, wrong)
    with pytest.raises(MaskError):
        Matcher(MatcherConfig(backend='opencv', warmup=False), mask=wrong).prepare(views[0].image)
    tracker = Tracker(GridMatcher(views), TRACKER)
    for view in views[:2]:
        tracker.track(view.stamp_ns, view.image)
    with pytest.raises(MaskError):
        tracker.track(views[2].stamp_ns, views[2].image, left_mask=wrong)
    # The refused frame changed nothing: the next good one continues the tracks.
    following = tracker.track(views[2].stamp_ns, views[2].image)
    assert not following.reset and (following.track_lengths == 2).any()
    with pytest.raises(ConfigError):
        Matcher(MatcherConfig(backend='opencv', warmup=False), mask=np.ones((4, 4), np.float32))


def test_a_flat_frame_starts_no_features_and_tracking_goes_on(views):
    tracker = Tracker(Matcher(DETECTORS['opencv']), TRACKER)
    for view in views[:2]:
        tracker.track(view.stamp_ns, view.image)
    blank = np.full_like(views[0].image, 128)  # a lens cap, a dark room: no corner at all
    assert len(tracker.track(views[2].stamp_ns, blank).ids) == 0
    # The frame after it matches nothing before it, so nothing checks new features there;
    # the next one starts them again.
    assert len(tracker.track(views[3].stamp_ns, views[3].image).ids) == 0
    assert len(tracker.track(views[4].stamp_ns, views[4].image).ids) > 0
