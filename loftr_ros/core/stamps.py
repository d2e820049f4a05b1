"""builtin_interfaces Time and Duration as integer nanoseconds, for the messages of rclpy and of
rosbags alike (both have ``sec`` and ``nanosec`` fields). Integers, not float seconds: a float
loses nanoseconds beyond about 100 days since the epoch, and stamps are compared for equality."""
from typing import Tuple

NS_PER_S = 1_000_000_000


def stamp_to_ns(stamp) -> int:
    """A Time (or Duration) as integer nanoseconds."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def sec_nanosec(nanoseconds: int) -> Tuple[int, int]:
    """The (sec, nanosec) fields of a Time or Duration of `nanoseconds`."""
    return divmod(int(nanoseconds), NS_PER_S)


def duration_sec_nanosec(seconds: float) -> Tuple[int, int]:
    """The (sec, nanosec) fields of a Duration of `seconds`, rounded to the nanosecond and
    clamped at zero (a processing time measured across a clock step can come out negative)."""
    return sec_nanosec(max(0, round(seconds * NS_PER_S)))
