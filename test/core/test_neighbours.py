"""Neighbour queries of the tracker (loftr_ros.core.tracking.neighbours) against brute force."""
import numpy as np
import pytest

from loftr_ros.core.tracking.neighbours import nearest_within, pairs_within, spread_out


def brute_nearest(queries, points, radius, count):
    table = np.full((len(queries), count), -1, np.intp)
    for row, query in enumerate(queries):
        distances = np.linalg.norm(points - query, axis=1)
        order = [index for index in np.argsort(distances, kind='stable')
                 if distances[index] < radius][:count]
        table[row, :len(order)] = order
    return table


@pytest.mark.parametrize('radius, count', [(12.0, 1), (40.0, 8), (500.0, 8)])
def test_nearest_within_is_the_brute_force_answer(radius, count):
    rng = np.random.default_rng(7)
    queries = rng.uniform(0, 320, (60, 2))
    points = rng.uniform(0, 320, (200, 2))
    assert np.array_equal(nearest_within(queries, points, radius, count),
                          brute_nearest(queries, points, radius, count))


def test_nearest_within_without_points_or_queries():
    assert nearest_within(np.zeros((3, 2)), np.zeros((0, 2)), 10.0, 2).tolist() == [[-1, -1]] * 3
    assert nearest_within(np.zeros((0, 2)), np.ones((4, 2)), 10.0, 2).shape == (0, 2)


def test_pairs_within_and_spread_out_agree_with_brute_force():
    rng = np.random.default_rng(8)
    points = rng.uniform(0, 100, (80, 2))
    first, second, _ = pairs_within(points, points, 15.0)
    close = np.linalg.norm(points[:, None] - points[None], axis=2) < 15.0
    assert sorted(zip(first.tolist(), second.tolist())) == sorted(zip(*np.nonzero(close)))
    priority = rng.permutation(len(points))
    kept = []
    for index in np.argsort(priority):  # greedy, best priority first
        if all(np.linalg.norm(points[index] - points[other]) >= 15.0 for other in kept):
            kept.append(index)
    assert spread_out(points, priority, 15.0).tolist() == kept
