"""Pairing of two image streams (left/right) by header stamp, exactly or within a slop.

message_filters is not available everywhere (PyPI ROS wheels, offline bag tools), and the
policy needed here is small: each frame pairs at most once, with the closest frame of the other
side within the slop; a frame that can no longer find a partner is dropped and counted.
"""
import dataclasses
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

from loftr_ros.core.settings import check_fields, setting

LEFT, RIGHT = 0, 1

Pair = Tuple[int, Any, int, Any]


@dataclass(frozen=True)
class StereoPairing:
    """How left and right frames pair (the node's ``stereo.*`` parameters, declared here)."""

    slop: float = setting(
        0.0, 'Largest stamp difference in seconds for a left/right pair (0: exact stamps, for '
        'hardware-synchronised cameras).', value_range=(0.0, 1.0))
    queue_size: int = setting(
        10, 'Frames per side waiting for their partner before the oldest is dropped.',
        value_range=(1, 1000))

    def __post_init__(self):
        check_fields(self)


class StereoSynchronizer:
    """Pairs frames of side 0 (left) and side 1 (right) whose stamps differ by at most `slop_ns`.

    Stamps of each side are expected to increase. A stamp at or before the previous one of its
    side means the source restarted (a bag looped, a driver reset): everything pending is
    dropped, `resets` is incremented and pairing starts afresh.

    `drops` counts frames that will never be paired, by cause:
      no_partner: the other side moved past this stamp without a frame within the slop;
      queue_full: more than `queue_size` frames waited on one side;
      stamp_reset: pending when stamps jumped backwards;
      duplicate: same stamp as the previous frame of the same side.
    """

    def __init__(self, slop_ns: Optional[int] = None, queue_size: Optional[int] = None):
        """None: StereoPairing's default; ConfigError when a value is outside its range."""
        given = {'slop': None if slop_ns is None else slop_ns / 1e9, 'queue_size': queue_size}
        pairing = dataclasses.replace(
            StereoPairing(), **{name: value for name, value in given.items() if value is not None})
        self.slop_ns = int(round(pairing.slop * 1e9))
        self.queue_size = int(pairing.queue_size)
        self.drops = Counter()
        self.resets = 0
        self._queues = (deque(), deque())
        self._last_stamp = [None, None]

    def reset(self, cause: str = 'stamp_reset'):
        """Forget pending frames and the last stamps (pending frames count as dropped for
        `cause`)."""
        self.drops[cause] += self.pending
        for queue in self._queues:
            queue.clear()
        self._last_stamp = [None, None]

    def add(self, side: int, stamp_ns: int, item) -> List[Pair]:
        """Add one frame; returns the pairs it completes as (stamp0, item0, stamp1, item1)."""
        if side not in (LEFT, RIGHT):  # a caller's bug, not a setting
            raise ValueError(f'side must be 0 (left) or 1 (right), got {side!r}')
        last = self._last_stamp[side]
        if last is not None and stamp_ns == last:
            self.drops['duplicate'] += 1
            return []
        if last is not None and stamp_ns < last:
            self.reset()
            self.resets += 1
        self._last_stamp[side] = stamp_ns

        other = self._queues[1 - side]
        # Frames of the other side too old for this stamp are too old for every later one.
        while other and other[0][0] < stamp_ns - self.slop_ns:
            other.popleft()
            self.drops['no_partner'] += 1
        if other and abs(other[0][0] - stamp_ns) <= self.slop_ns:
            # The queue is sorted and its head is within the slop: the closest candidate is the
            # last one still within it whose distance keeps shrinking.
            best = 0
            for index in range(1, len(other)):
                if abs(other[index][0] - stamp_ns) < abs(other[best][0] - stamp_ns):
                    best = index
                else:
                    break
            for _ in range(best):
                other.popleft()
                self.drops['no_partner'] += 1
            other_stamp, other_item = other.popleft()
            if side == LEFT:
                return [(stamp_ns, item, other_stamp, other_item)]
            return [(other_stamp, other_item, stamp_ns, item)]

        own = self._queues[side]
        own.append((stamp_ns, item))
        if len(own) > self.queue_size:
            own.popleft()
            self.drops['queue_full'] += 1
        return []

    @property
    def pending(self) -> int:
        return len(self._queues[0]) + len(self._queues[1])
