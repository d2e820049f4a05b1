"""The node process under the signals a robot sends it. A terminal's Ctrl-C reaches a launched
node twice (the whole process group gets it, and ros2 launch signals its nodes itself, with
SIGTERM 5 s later if they are still there), at any moment: while it imports and loads the
model, while it matches, while it shuts down. Each time it must end cleanly: exit code 0, no
traceback."""
import signal
import threading
import time
from pathlib import Path

import pytest

from loftr_ros.ros.conversions import image_msg_from_array, make_header

MS = 1_000_000
START = 1_700_000_000 * 10**9
# xfeat: real weights to load and a warm-up, so that there is a model load to interrupt.
XFEAT = {'mode': 'consecutive', 'matcher.backend': 'xfeat', 'matcher.device': 'cpu',
         'qos_reliability': 'reliable', 'qos_depth': 10}


def wait_until_caught(process, signum, timeout=30.0):
    """Wait until `process` has a handler for `signum` (Linux: SigCgt in /proc/PID/status)."""
    deadline = time.monotonic() + timeout
    while True:
        status = Path(f'/proc/{process.pid}/status').read_text()
        caught = int(next(line for line in status.splitlines()
                          if line.startswith('SigCgt:')).split()[1], 16)
        if caught >> (signum - 1) & 1:
            return
        assert time.monotonic() < deadline and process.poll() is None, status
        time.sleep(0.002)


class Frames:
    """Publishes frames to the node's `image` at 20 Hz from a thread until stopped."""

    def __init__(self, harness, views):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(harness, views), daemon=True)
        self._thread.start()

    def _run(self, harness, views):
        index = 0
        while not self._stop.wait(0.05):
            msg = image_msg_from_array(views[index % len(views)], 'mono8',
                                       make_header(START + index * 50 * MS, 'camera'))
            harness.publish('/image', msg)
            index += 1

    def stop(self):
        self._stop.set()
        self._thread.join()


@pytest.mark.slow
@pytest.mark.parametrize('moment, signals, gap_s', [
    ('importing', (signal.SIGINT, signal.SIGINT), 0.05),
    ('loading', (signal.SIGINT, signal.SIGINT), 0.01),
    ('loading', (signal.SIGTERM,), 0.0),
    ('ready', (signal.SIGINT, signal.SIGINT), 0.01),
    ('ready', (signal.SIGINT, signal.SIGINT), 0.05),
    ('matching', (signal.SIGINT, signal.SIGINT), 0.02),
])
def test_signals_at_any_moment_end_the_node_cleanly(node_process, harness, photo_views,
                                                        moment, signals, gap_s):
    node = node_process(**XFEAT)
    frames = None
    if moment == 'importing':
        # The entry point's first step installs the handlers (SIGTERM caught from then on);
        # then the node imports rclpy (~0.4 s; torch is the matching process's) and logs
        # nothing before 'loading'.
        wait_until_caught(node.process, signal.SIGTERM)
        assert 'loading' not in node.log, node.log
    elif moment == 'loading':
        node.wait_for_line('loading xfeat matcher', timeout=90.0, poll=0.005)
    else:
        node.wait_ready()
    if moment == 'matching':
        harness.wait_for_subscribers(['/image'], process=node)
        frames = Frames(harness, photo_views)
        harness.wait_matches(2)
    for index, signum in enumerate(signals):
        if index:
            time.sleep(gap_s)
        node.process.send_signal(signum)
    try:
        code = node.process.wait(60)
    finally:
        if frames is not None:
            frames.stop()
    log = node.log
    assert code == 0, log
    assert 'Traceback' not in log and 'KeyboardInterrupt' not in log, log
    assert 'FATAL' not in log, log


def test_shutdown_does_not_wait_for_a_long_match(photo_views, start_node, harness,
                                                 slow_backend):
    """ros2 launch sends SIGINT, then SIGTERM 5 s later and SIGKILL 5 s after that; a pair that
    takes a minute to match must not hold the node's shutdown (what SIGINT runs: destroy_node)
    until then. The matching process is ended (SIGTERM after STOP_GRACE_S), not waited for."""
    from loftr_ros.core.matching_process import STOP_GRACE_S
    match_started = slow_backend(60.0)
    started = start_node(mode='stereo', qos_reliability='reliable', qos_depth=10, **{
        'matcher.backend': 'opencv', 'matcher.warmup': False})
    harness.wait_for_subscribers(['/left/image', '/right/image'])
    harness.publish_pair(['/left/image', '/right/image'], [
        image_msg_from_array(photo_views[index], 'mono8', make_header(0, side))
        for index, side in ((0, 'left'), (1, 'right'))], START)
    match_started()
    process = started.node.matcher.process
    began = time.monotonic()
    started.close()
    print(f'shutdown under a long match took {time.monotonic() - began:.2f} s '
          f'(STOP_GRACE_S {STOP_GRACE_S} s)')
    # Ended by the signal, in the middle of its minute-long match.
    assert process.returncode == -signal.SIGTERM
