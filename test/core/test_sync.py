"""StereoSynchronizer: exact and approximate pairing, drops by cause, restarts."""
import pytest

from loftr_ros.core.errors import ConfigError
from loftr_ros.core.sync import LEFT, RIGHT, StereoPairing, StereoSynchronizer

MS = 1_000_000
PERIOD = 50 * MS  # 20 Hz, like the EuRoC cameras


def feed(sync, events):
    """events: (side, stamp_ns); returns the completed pairs as (stamp0, stamp1)."""
    pairs = []
    for side, stamp in events:
        for stamp0, item0, stamp1, item1 in sync.add(side, stamp, (side, stamp)):
            assert item0 == (LEFT, stamp0) and item1 == (RIGHT, stamp1)
            pairs.append((stamp0, stamp1))
    return pairs


def stereo_stream(count, right_offset=0, right_first=False):
    events = []
    for index in range(count):
        left, right = (LEFT, index * PERIOD), (RIGHT, index * PERIOD + right_offset)
        events += [right, left] if right_first else [left, right]
    return events


@pytest.mark.parametrize('right_first', [False, True])
def test_exact_stamps_pair_in_either_arrival_order(right_first):
    sync = StereoSynchronizer()
    pairs = feed(sync, stereo_stream(10, right_first=right_first))
    assert pairs == [(i * PERIOD, i * PERIOD) for i in range(10)]
    assert sum(sync.drops.values()) == 0 and sync.pending == 0


def test_offset_of_3ms_pairs_within_a_5ms_slop():
    sync = StereoSynchronizer(slop_ns=5 * MS)
    pairs = feed(sync, stereo_stream(10, right_offset=3 * MS))
    assert pairs == [(i * PERIOD, i * PERIOD + 3 * MS) for i in range(10)]
    assert sum(sync.drops.values()) == 0


def test_offset_of_3ms_is_dropped_and_counted_with_a_1ms_slop():
    sync = StereoSynchronizer(slop_ns=1 * MS)
    pairs = feed(sync, stereo_stream(10, right_offset=3 * MS))
    assert pairs == []
    # Every frame but the last right one (still waiting) can no longer be paired.
    assert sync.drops == {'no_partner': 19}
    assert sync.pending == 1


def test_the_closest_frame_within_the_slop_wins():
    sync = StereoSynchronizer(slop_ns=10 * MS)
    pairs = feed(sync, [(RIGHT, 92 * MS), (RIGHT, 98 * MS), (RIGHT, 104 * MS), (LEFT, 100 * MS)])
    assert pairs == [(100 * MS, 98 * MS)]
    assert sync.drops == {'no_partner': 1}
    assert sync.pending == 1  # the right frame at 104 ms may still pair with the next left


def test_a_missing_partner_drops_only_that_frame():
    sync = StereoSynchronizer()
    events = stereo_stream(5)
    events.remove((RIGHT, 2 * PERIOD))
    pairs = feed(sync, events)
    assert [p[0] for p in pairs] == [0, PERIOD, 3 * PERIOD, 4 * PERIOD]
    assert sync.drops == {'no_partner': 1}


def test_queues_are_bounded_when_one_side_is_silent():
    sync = StereoSynchronizer(queue_size=4)
    assert feed(sync, [(LEFT, i * PERIOD) for i in range(10)]) == []
    assert sync.pending == 4
    assert sync.drops == {'queue_full': 6}
    # The right camera comes back: the newest pending left frames still pair.
    assert feed(sync, [(RIGHT, 9 * PERIOD)]) == [(9 * PERIOD, 9 * PERIOD)]


def test_stamps_jumping_backwards_reset_and_pairing_restarts():
    sync = StereoSynchronizer()
    feed(sync, stereo_stream(5) + [(LEFT, 5 * PERIOD)])
    assert sync.pending == 1
    pairs = feed(sync, stereo_stream(3))  # the bag restarted
    assert pairs == [(i * PERIOD, i * PERIOD) for i in range(3)]
    assert sync.resets == 1
    assert sync.drops == {'stamp_reset': 1}


def test_duplicate_stamps_are_dropped():
    sync = StereoSynchronizer()
    assert feed(sync, [(LEFT, 0), (LEFT, 0), (RIGHT, 0)]) == [(0, 0)]
    assert sync.drops == {'duplicate': 1}


def test_invalid_arguments_are_rejected():
    # The ranges of StereoPairing, which declares the node's stereo.* parameters.
    with pytest.raises(ConfigError, match=r'slop must be in \[0.0, 1.0\], got -1e-09'):
        StereoSynchronizer(slop_ns=-1)
    with pytest.raises(ConfigError, match=r'slop must be in \[0.0, 1.0\], got 1.5'):
        StereoSynchronizer(slop_ns=1_500_000_000)
    with pytest.raises(ConfigError, match=r'queue_size must be in \[1, 1000\], got 0'):
        StereoSynchronizer(queue_size=0)
    with pytest.raises(ConfigError, match=r'queue_size must be in \[1, 1000\], got 1001'):
        StereoSynchronizer(queue_size=1001)
    with pytest.raises(ConfigError, match="queue_size must be an integer, got the double 2.0"):
        StereoSynchronizer(queue_size=2.0)
    defaults = StereoSynchronizer()
    assert (defaults.slop_ns, defaults.queue_size) == (0, StereoPairing().queue_size)
    assert StereoSynchronizer(slop_ns=999_999_999).slop_ns == 999_999_999
    with pytest.raises(ValueError, match=r"side must be 0 \(left\) or 1 \(right\), got 'left'"):
        StereoSynchronizer().add('left', 0, None)
