"""The image motion around a point from a pair's matches (loftr_ros.core.tracking.motion): how
each angular sector of a point's surroundings moves relative to it, and the matches' own noise
apart from the motion's smooth part. The tracker's checks of new features rest on both."""
import numpy as np

from loftr_ros.core.tracking.motion import match_noise, sector_motions
from loftr_ros.core.tracking.neighbours import nearest_within


def test_the_sectors_across_an_occluding_edge_move_otherwise():
    rng = np.random.default_rng(0)
    source = rng.uniform(0, 200, (4000, 2))
    points = np.array([[60.0, 80.0], [140.0, 120.0]])
    index = nearest_within(points, source, 12.0, 24)
    # Left of x = 60.5 a near surface moves 1.5 px right; beyond it the far one 1 px.
    target = source + np.where(source[:, :1] < 60.5, [1.5, 0.0], [1.0, 0.0])
    steps = np.array([[1.5, 0.0], [1.0, 0.0]])  # the first point goes with the near surface
    medians, counts = sector_motions(points, steps, source, target, index, 8)
    assert counts.sum() == (index >= 0).sum() and (counts[0, [0, 3, 4, 7]] > 0).all()
    # Sectors are counted from the -x axis (angle -pi), 45 degrees each, y pointing down: the
    # ones right of the first point (x > 60.5 throughout) lag 0.5 px behind it.
    right = [3, 4]
    np.testing.assert_allclose(medians[0, right], [[-0.5, 0.0]] * 2, atol=1e-12)
    np.testing.assert_allclose(medians[0, [0, 7]], 0.0, atol=1e-12)
    np.testing.assert_allclose(medians[1], 0.0, atol=1e-12)  # one surface all round


def test_a_sector_without_a_match_has_no_motion():
    points = np.array([[50.0, 50.0]])
    source = np.array([[55.0, 50.0], [45.0, 50.0]])  # east and west only
    index = nearest_within(points, source, 12.0, 24)
    medians, counts = sector_motions(points, np.zeros((1, 2)), source, source + 1.0, index, 8)
    assert counts.sum() == 2 and np.isnan(medians[0, counts[0] == 0]).all()
    np.testing.assert_allclose(medians[0, counts[0] > 0], 1.0)


def test_match_noise_is_the_noise_not_the_smooth_motion():
    rng = np.random.default_rng(1)
    source = rng.uniform(0, 400, (4000, 2))
    points = rng.uniform(20, 380, (300, 2))
    index = nearest_within(points, source, 12.0, 24)
    # A strong smooth motion: 3 degrees of rotation, 5 % zoom, a shift.
    angle = np.radians(3.0)
    linear = 1.05 * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    smooth = source @ linear.T + [4.0, -2.0]
    # (The affine fit's ridge leaves a hundredth of a pixel of it.)
    assert match_noise(points, source, smooth, index) < 0.02
    for sigma in (0.05, 0.3):
        noisy = smooth + rng.normal(0.0, sigma, source.shape)
        estimate = match_noise(points, source, noisy, index)
        assert 0.8 * sigma < estimate < 1.2 * sigma, (sigma, estimate)
    # Too few matches around every point: nothing to tell.
    sparse = np.full_like(index, -1)
    sparse[:, :3] = index[:, :3]
    assert match_noise(points, source, smooth, sparse) == 0.0
