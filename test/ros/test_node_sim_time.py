"""Latency when replaying a bag: image stamps from 2014, a /clock that follows them (what
`ros2 bag play --clock` publishes), and the node in another process with and without
use_sim_time. The latency is the node's ROS clock minus the stamp; stamps from another clock
than the node's are reported as such, never as a latency of years."""
import threading
import time

import pytest
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from rosgraph_msgs.msg import Clock

from loftr_ros.ros.conversions import image_msg_from_array, make_header
from loftr_ros.ros.diagnostics import diagnostics_status_name

MS = 1_000_000
BAG_START = 1_400_000_000 * 10**9  # May 2014, as the EuRoC bags
FAST = {'mode': 'consecutive', 'matcher.backend': 'opencv', 'matcher.warmup': False,
        'diagnostics.period': 0.2, 'qos_reliability': 'reliable', 'qos_depth': 10}


class BagClock:
    """Publishes /clock at 100 Hz from BAG_START on, advancing with the wall clock."""

    def __init__(self, node):
        self._publisher = node.create_publisher(Clock, '/clock', 10)
        self._start = time.monotonic_ns()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def now_ns(self):
        return BAG_START + time.monotonic_ns() - self._start

    def _run(self):
        while not self._stop.wait(0.01):
            now = self.now_ns()
            self._publisher.publish(Clock(clock=Time(sec=now // 10**9, nanosec=now % 10**9)))

    def stop(self):
        self._stop.set()
        self._thread.join()


def wait_for_diagnostics(harness, key, value, timeout=30.0):
    """The matcher node's first status whose `key` reads `value`."""
    deadline = time.monotonic() + timeout
    while harness.latest_diagnostics().get(key) != value:
        assert time.monotonic() < deadline, harness.latest_diagnostics()
        time.sleep(0.02)
    return harness.latest_diagnostics()


@pytest.mark.parametrize('use_sim_time', [True, False])
def test_latency_of_replayed_stamps_is_measured_on_the_ros_clock_or_reported_off_clock(
        node_process, harness, photo_views, use_sim_time):
    statuses = []
    name = diagnostics_status_name('/matcher_node')
    harness.node.create_subscription(
        DiagnosticArray, '/diagnostics',
        lambda msg: statuses.extend(s for s in msg.status if s.name == name), 10)
    clock = BagClock(harness.node)
    try:
        node = node_process(use_sim_time=use_sim_time, **FAST)
        node.wait_ready()
        harness.wait_for_subscribers(['/image'], process=node)
        for index, view in enumerate(photo_views[:5]):
            # A bag's message: stamped a little before /clock reaches it.
            stamp = clock.now_ns() - 20 * MS
            harness.publish('/image', image_msg_from_array(view, 'mono8',
                                                           make_header(stamp, 'camera')))
            if index == 0:  # taken as the reference before the next frame could supersede it
                wait_for_diagnostics(harness, 'keyframes', '1')
            else:
                harness.wait_matches(index)
        # The node counts a pair just after publishing its Matches.
        diagnostics = wait_for_diagnostics(harness, 'pairs_processed', '4')
    finally:
        clock.stop()

    messages = [status.message for status in statuses]
    processed = int(diagnostics['pairs_processed'])
    if use_sim_time:
        # Stamp to publication on the bag's clock: the matching and the 20 ms, not 12 years.
        assert 0 <= float(diagnostics['latency_p50_ms']) < 5000, diagnostics
        assert diagnostics['latency_clock'] == 'sim_time'
        assert diagnostics['stamps_off_clock'] == '0', diagnostics
        assert not [text for text in messages if 'latency not measured' in text], messages
    else:
        assert diagnostics['latency_p50_ms'] == 'n/a', diagnostics
        assert diagnostics['latency_clock'] == 'system_time'
        assert diagnostics['stamps_off_clock'] == str(processed), diagnostics
        # While frames arrive (the status says 'no input images' between them).
        off_clock = [text for text in messages if 'latency not measured' in text]
        assert off_clock, messages
        assert 'behind the node clock (system_time)' in off_clock[-1], off_clock
        assert 'use_sim_time' in off_clock[-1], off_clock


def test_diagnostics_keep_coming_with_use_sim_time_before_any_clock(node_process, harness):
    """A node waiting for a bag to be played: /clock not published yet, so its ROS clock stands
    at zero; its diagnostics (on the steady clock) still come, saying there is no input."""
    node = node_process(use_sim_time=True, **FAST)
    node.wait_ready()
    diagnostics = harness.diagnostics_after(time.monotonic(), timeout=10)
    assert diagnostics['latency_clock'] == 'sim_time', diagnostics
    assert diagnostics['frames_received'] == '0'
