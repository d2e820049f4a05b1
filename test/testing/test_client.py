"""MatcherClient on its own: what it takes from /diagnostics, what it says when nothing is
there."""
import time

import pytest

rclpy = pytest.importorskip('rclpy')

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue  # noqa: E402

from loftr_ros.ros.diagnostics import diagnostics_status_name  # noqa: E402
from loftr_ros.testing.client import MATCHER_NODE  # noqa: E402


def status(name, model):
    return DiagnosticStatus(name=name, values=[KeyValue(key='model', value=model)])


def test_only_the_matcher_nodes_own_diagnostics_status_is_taken(ros_context, harness):
    other = rclpy.create_node('camera_driver', context=ros_context)
    publisher = other.create_publisher(DiagnosticArray, '/diagnostics', 10)
    deadline = time.monotonic() + 10
    while publisher.get_subscription_count() == 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    since = time.monotonic()
    publisher.publish(DiagnosticArray(status=[status('/camera_driver: camera', 'camera')]))
    ours = status(diagnostics_status_name(MATCHER_NODE), 'matcher')
    publisher.publish(DiagnosticArray(status=[status('/camera_driver: camera', 'camera'), ours]))
    assert harness.diagnostics_after(since) == {'model': 'matcher'}
    assert [values for _, values in harness.diagnostics] == [{'model': 'matcher'}]
    other.destroy_node()


def test_waiting_for_a_node_that_is_not_there_names_what_is_missing(harness):
    with pytest.raises(TimeoutError, match='nobody subscribes to /image.*'
                                           'nobody publishes /matcher_node/matches'):
        harness.wait_for_subscribers(['/image'], timeout=0.2)
