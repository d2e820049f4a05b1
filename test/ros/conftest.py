"""Fixtures for node tests: the matcher node in this process or in another one (its log
captured), and frames of a real photo; `ros_context` and the `harness` client are suite-wide
(test/conftest.py).

DDS stays on this machine: test/conftest.py sets the loopback environment before anything
here imports rclpy, and the node processes inherit it.
"""
import os
import threading
import time
from pathlib import Path

import pytest

rclpy = pytest.importorskip('rclpy')

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from loftr_ros.testing.client import NodeProcess  # noqa: E402


class InProcessNode:
    """The matcher node in this process, spun by its own executor thread."""

    def __init__(self, context, parameters, node_class=None):
        from loftr_ros.ros.node import MatcherNode
        overrides = [Parameter(name, value=value) for name, value in parameters.items()]
        self.node = (node_class or MatcherNode)(context=context, parameter_overrides=overrides)
        self.executor = SingleThreadedExecutor(context=context)  # as main() spins it
        self.executor.add_node(self.node)
        threading.Thread(target=self.executor.spin, daemon=True).start()

    def close(self):
        """Stop spinning and destroy the node (once; the fixture closes it after the test)."""
        if self.executor is not None:
            self.executor.shutdown(timeout_sec=5)
            self.node.destroy_node()
            self.executor = None


@pytest.fixture
def start_node(ros_context):
    """start_node(node_class=None, **parameters) -> InProcessNode (a MatcherNode unless
    `node_class` says otherwise), closed after the test."""
    started = []

    def start(node_class=None, **parameters):
        started.append(InProcessNode(ros_context, parameters, node_class))
        return started[-1]

    yield start
    for node in started:
        node.close()


@pytest.fixture
def node_process(tmp_path):
    """node_process(log_name, ros_args, lifecycle, **parameters) -> NodeProcess, stopped after
    the test."""
    started = []

    def start(log_name='matcher_node.log', ros_args=(), lifecycle=False, **parameters):
        started.append(NodeProcess(parameters, tmp_path / log_name, ros_args, lifecycle))
        return started[-1]

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def replace_opencv_backend(monkeypatch):
    """replace_opencv_backend(module, class_name): the opencv backend replaced by a backend of
    this directory in this process's registry, which the node's matching process builds from
    (and imports from this directory)."""
    from loftr_ros.core.backends import BACKENDS

    def replace(module, class_name):
        monkeypatch.setenv('PYTHONPATH', os.pathsep.join(filter(None, [
            str(Path(__file__).parent), os.environ.get('PYTHONPATH')])))
        monkeypatch.setitem(BACKENDS, 'opencv', (module, class_name))
    return replace


@pytest.fixture
def slow_backend(replace_opencv_backend, monkeypatch, tmp_path):
    """slow_backend(seconds) -> started: the opencv backend replaced by slow_backend.SlowBackend,
    taking `seconds` over each pair; started() waits until a match is under way."""
    def install(seconds):
        started = tmp_path / 'slow_backend_started'
        monkeypatch.setenv('SLOW_BACKEND_S', str(seconds))
        monkeypatch.setenv('SLOW_BACKEND_STARTED', str(started))
        replace_opencv_backend('slow_backend', 'SlowBackend')

        def wait_started(timeout=30.0):
            deadline = time.monotonic() + timeout
            while not started.exists():
                assert time.monotonic() < deadline, 'no match started'
                time.sleep(0.01)
        return wait_started
    return install


def sideways_photo_frames(shifts):
    """A real photo seen through a camera moving sideways by `shifts` pixels: 320x240 mono8."""
    import cv2
    import numpy as np
    from skimage import data as skdata
    photo = cv2.cvtColor(np.ascontiguousarray(skdata.astronaut()[:, :, ::-1]),
                         cv2.COLOR_BGR2GRAY)
    return [cv2.warpAffine(photo, np.float32([[0.5, 0, -shift], [0, 0.5, -40]]), (320, 240),
                           flags=cv2.INTER_AREA) for shift in shifts]


@pytest.fixture(scope='module')
def photo_views():
    """Ten frames 6 px apart (see sideways_photo_frames)."""
    return sideways_photo_frames(range(0, 60, 6))


@pytest.fixture(scope='module')
def small_step_photo_views():
    """Four frames 3 px apart (see sideways_photo_frames): enough matches for random weights."""
    return sideways_photo_frames(range(0, 12, 3))


def parse_vins_features(feature_msg):
    """VINS-Fusion's feature_callback (vins_estimator/src/rosNodeTest.cpp) in Python: feature
    id -> [(camera id, (x, y, z, u, v, velocity x, velocity y))]. Reads channels 6-8 when
    there are more than 5, as the original does; z must be 1 (its ROS_ASSERT)."""
    feature_frame = {}
    for i in range(len(feature_msg.points)):
        feature_id = int(feature_msg.channels[0].values[i])
        camera_id = int(feature_msg.channels[1].values[i])
        point = feature_msg.points[i]
        x, y, z = point.x, point.y, point.z
        p_u = feature_msg.channels[2].values[i]
        p_v = feature_msg.channels[3].values[i]
        velocity_x = feature_msg.channels[4].values[i]
        velocity_y = feature_msg.channels[5].values[i]
        if len(feature_msg.channels) > 5:
            _ground_truth = [feature_msg.channels[k].values[i] for k in (6, 7, 8)]
        assert z == 1
        feature_frame.setdefault(feature_id, []).append(
            (camera_id, (x, y, z, p_u, p_v, velocity_x, velocity_y)))
    return feature_frame


@pytest.fixture(scope='session')
def vins_feature_callback():
    """VINS-Fusion's feature_callback parsing loop in Python (parse_vins_features)."""
    return parse_vins_features
