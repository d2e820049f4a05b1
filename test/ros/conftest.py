"""Fixtures for node tests: an rclpy Context per test, the matcher node in this process or in
another one (its log captured), and a helper node that publishes images and collects
Matches and diagnostics.

DDS stays on this machine: test/conftest.py sets the loopback environment before anything
here imports rclpy, and the node processes inherit it.
"""
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

rclpy = pytest.importorskip('rclpy')

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from loftr_ros.msg import Matches  # noqa: E402

MATCHES_TOPIC = '/matcher_node/matches'


@pytest.fixture
def ros_context():
    context = Context()
    rclpy.init(context=context)
    yield context
    context.try_shutdown()


def spin_in_thread(executor):
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    return thread


class InProcessNode:
    """The matcher node in this process, spun by its own executor thread."""

    def __init__(self, context, parameters):
        from loftr_ros.ros.node import MatcherNode
        overrides = [Parameter(name, value=value) for name, value in parameters.items()]
        self.node = MatcherNode(context=context, parameter_overrides=overrides)
        self.executor = MultiThreadedExecutor(num_threads=2, context=context)
        self.executor.add_node(self.node)
        self.thread = spin_in_thread(self.executor)

    def close(self):
        self.executor.shutdown(timeout_sec=5)
        self.node.destroy_node()


@pytest.fixture
def start_node(ros_context):
    """start_node(**parameters) -> InProcessNode, closed after the test."""
    started = []

    def start(**parameters):
        started.append(InProcessNode(ros_context, parameters))
        return started[-1]

    yield start
    for node in started:
        node.close()


class NodeProcess:
    """`python -m loftr_ros.matcher_node` in another process, output in a log file."""

    def __init__(self, parameters, log_path: Path, extra_args=()):
        self.log_path = log_path
        args = [sys.executable, '-m', 'loftr_ros.matcher_node', '--ros-args']
        for name, value in parameters.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            args += ['-p', f'{name}:={text}']
        args += list(extra_args)
        self._log = open(log_path, 'w')
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT,
                                        env={**os.environ, 'PYTHONUNBUFFERED': '1',
                                             'RCUTILS_LOGGING_BUFFERED_STREAM': '0'})

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors='replace')

    def wait_ready(self, timeout=90.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if 'ready: mode' in self.log:
                return
            if self.process.poll() is not None:
                raise AssertionError(f'node exited with {self.process.returncode}:\n{self.log}')
            time.sleep(0.1)
        raise AssertionError(f'node not ready after {timeout} s:\n{self.log}')

    def rss_mib(self) -> float:
        for line in Path(f'/proc/{self.process.pid}/status').read_text().splitlines():
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024
        raise AssertionError('no VmRSS')

    def stop(self, timeout=20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


@pytest.fixture
def node_process(tmp_path):
    """node_process(log_name, **parameters) -> NodeProcess, stopped after the test."""
    started = []

    def start(log_name='matcher_node.log', extra_args=(), **parameters):
        started.append(NodeProcess(parameters, tmp_path / log_name, extra_args))
        return started[-1]

    yield start
    for process in started:
        process.stop()


class Harness:
    """A helper node publishing image topics and collecting ~/matches and /diagnostics."""

    def __init__(self, context, reliable=True):
        self.node = rclpy.create_node('test_harness', context=context)
        self.qos = QoSProfile(depth=10, reliability=(
            ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT))
        self.matches = []
        self.diagnostics = []
        self._lock = threading.Condition()
        self.node.create_subscription(Matches, MATCHES_TOPIC, self._on_matches, 100)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics,
                                      100)
        self._publishers = {}
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.thread = spin_in_thread(self.executor)

    def _on_matches(self, msg):
        with self._lock:
            self.matches.append(msg)
            self._lock.notify_all()

    def _on_diagnostics(self, msg):
        with self._lock:
            self.diagnostics.append((time.monotonic(), msg))
            self._lock.notify_all()

    def publisher(self, topic, msg_type=Image):
        if topic not in self._publishers:
            self._publishers[topic] = self.node.create_publisher(msg_type, topic, self.qos)
        return self._publishers[topic]

    def wait_for_subscribers(self, topics, timeout=30.0):
        """Wait until the node subscribes to each topic (name, or (name, msg_type)) and its
        ~/matches publisher is matched, so that nothing published next is lost."""
        deadline = time.monotonic() + timeout
        for topic in topics:
            publisher = self.publisher(*topic) if isinstance(topic, tuple) else \
                self.publisher(topic)
            while publisher.get_subscription_count() == 0:
                assert time.monotonic() < deadline, f'nobody subscribes to {topic}'
                time.sleep(0.05)
        while self.node.count_publishers(MATCHES_TOPIC) == 0:
            assert time.monotonic() < deadline, f'nobody publishes {MATCHES_TOPIC}'
            time.sleep(0.05)
        time.sleep(0.3)

    def publish(self, topic, msg, msg_type=Image):
        self.publisher(topic, msg_type).publish(msg)

    def wait_matches(self, count, timeout=30.0):
        """Wait until `count` Matches have arrived in total; returns them all."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.matches) < count:
                left = deadline - time.monotonic()
                assert left > 0, f'{len(self.matches)} Matches after {timeout} s, wanted {count}'
                self._lock.wait(left)
            return list(self.matches)

    def diagnostics_after(self, since: float, timeout=10.0):
        """Key/value dict of the first /diagnostics status received after `since`
        (time.monotonic())."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                fresh = [msg for received, msg in self.diagnostics if received > since]
                if fresh:
                    return {kv.key: kv.value for kv in fresh[0].status[0].values}
                left = deadline - time.monotonic()
                assert left > 0, f'no /diagnostics within {timeout} s'
                self._lock.wait(left)

    def close(self):
        self.executor.shutdown(timeout_sec=5)
        self.node.destroy_node()


@pytest.fixture
def harness(ros_context):
    helper = Harness(ros_context)
    yield helper
    helper.close()
