"""Neighbour queries between point sets, without a Python loop over the points: pairs within a
radius and the k nearest within a radius (scipy's k-d trees), and the spread-out subset that
greedy non-maximum suppression keeps (VINS's ``setMask``)."""
from typing import Optional, Tuple

import numpy as np
from scipy.spatial import cKDTree

_EMPTY = np.zeros(0, np.intp)


def pairs_within(queries: np.ndarray, points: np.ndarray, radius: float,
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (query, point) pair closer than `radius`: (query indices, point indices, squared
    distances), not sorted."""
    queries = np.asarray(queries, np.float64).reshape(-1, 2)
    points = np.asarray(points, np.float64).reshape(-1, 2)
    if len(queries) == 0 or len(points) == 0 or radius <= 0:
        return _EMPTY, _EMPTY, np.zeros(0)
    pairs = cKDTree(queries).sparse_distance_matrix(cKDTree(points), radius,
                                                    output_type='ndarray')
    close = pairs['v'] < radius  # the tree also gives the pairs at exactly `radius`
    return (pairs['i'][close].astype(np.intp), pairs['j'][close].astype(np.intp),
            np.square(pairs['v'][close]))


def nearest_within(queries: np.ndarray, points: np.ndarray, radius: float, count: int,
                   ) -> np.ndarray:
    """[Q x count] indices of each query's `count` nearest points closer than `radius`,
    nearest first, padded with -1."""
    queries = np.asarray(queries, np.float64).reshape(-1, 2)
    points = np.asarray(points, np.float64).reshape(-1, 2)
    table = np.full((len(queries), count), -1, np.intp)
    if len(queries) == 0 or len(points) == 0 or radius <= 0:
        return table
    distances, index = cKDTree(points).query(queries, k=count, distance_upper_bound=radius)
    distances, index = distances.reshape(len(queries), count), index.reshape(len(queries), count)
    found = distances < radius  # missing neighbours come back at an infinite distance
    table[found] = index[found]
    return table


def spread_out(points: np.ndarray, priority: np.ndarray, radius: float,
               occupied: Optional[np.ndarray] = None, limit: Optional[int] = None,
               ) -> np.ndarray:
    """Indices of the points greedy suppression keeps, best priority first: taking the points
    by ascending `priority` (0 = best; distinct values), each one farther than `radius` from
    every point kept before it and from every `occupied` point, at most `limit` of them.

    Computed in rounds: a point no better-ranked remaining point is near is kept (greedy would
    keep it too), its neighbours are dropped, and so on until no point remains undecided.
    """
    points = np.asarray(points, np.float64).reshape(-1, 2)
    priority = np.asarray(priority)
    undecided = np.ones(len(points), bool)
    if occupied is not None and len(occupied) and len(points):
        blocked = pairs_within(points, occupied, radius)[0]
        undecided[blocked] = False
    first, second, _ = pairs_within(points, points, radius)
    distinct = first != second
    first, second = first[distinct], second[distinct]
    # Orient each pair as (better, worse).
    better = np.where(priority[first] < priority[second], first, second)
    worse = np.where(priority[first] < priority[second], second, first)
    kept = np.zeros(len(points), bool)
    limit = len(points) if limit is None else limit
    while undecided.any():
        live = undecided[better] & undecided[worse]
        dominated = np.zeros(len(points), bool)
        dominated[worse[live]] = True
        chosen = undecided & ~dominated
        kept |= chosen
        undecided &= ~chosen
        undecided[worse[chosen[better]]] = False
        if undecided.any():
            # The kept points ranked before every undecided one are final: stop at the limit.
            best_open = priority[undecided].min()
            if np.count_nonzero(kept & (priority < best_open)) >= limit:
                break
    indices = np.flatnonzero(kept)
    return indices[np.argsort(priority[indices], kind='stable')][:limit]
