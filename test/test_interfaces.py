"""The generated interfaces: serialization of large Matches and DDS between processes."""
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from loftr_ros.msg import Matches

NUM_MATCHES = 10_000


def make_arrays(seed=0):
    rng = np.random.default_rng(seed)
    return {
        'keypoints0': (rng.random(2 * NUM_MATCHES) * 752).astype(np.float32),
        'keypoints1': (rng.random(2 * NUM_MATCHES) * 752).astype(np.float32),
        'scores': rng.random(NUM_MATCHES).astype(np.float32),
        'inliers': (rng.random(NUM_MATCHES) > 0.3).astype(np.uint8),
    }


def fill(msg, arrays):
    for name, array in arrays.items():
        setattr(msg, name, array)
    msg.header.frame_id = 'cam1'
    msg.reference_header.frame_id = 'cam0'
    msg.reference_width, msg.reference_height = 752, 480
    msg.current_width, msg.current_height = 752, 480
    msg.model = 'xfeat'
    msg.config_id = 'deadbeef'
    return msg


def as_arrays(msg):
    return {'keypoints0': np.frombuffer(msg.keypoints0, np.float32),
            'keypoints1': np.frombuffer(msg.keypoints1, np.float32),
            'scores': np.frombuffer(msg.scores, np.float32),
            'inliers': np.frombuffer(msg.inliers, np.uint8)}


def test_matches_with_10000_matches_round_trips_through_serialization():
    from rclpy.serialization import deserialize_message, serialize_message

    arrays = make_arrays()
    data = serialize_message(fill(Matches(), arrays))
    # Four float32/uint8 arrays: the payload is the arrays themselves, not per-element objects.
    assert len(data) > NUM_MATCHES * (4 + 4 + 4 + 4 + 4 + 1)
    received = deserialize_message(data, Matches)
    for name, array in as_arrays(received).items():
        np.testing.assert_array_equal(array, arrays[name], err_msg=name)
        assert array.dtype == arrays[name].dtype
    assert (received.header.frame_id, received.reference_header.frame_id) == ('cam1', 'cam0')
    assert received.reference_width == 752 and received.current_height == 480


PUBLISHER = textwrap.dedent('''
    import sys, time
    import numpy as np
    import rclpy
    from rclpy.context import Context
    from loftr_ros.msg import Matches
    sys.path.insert(0, {test_dir!r})
    from test_interfaces import fill, make_arrays
    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node('matches_publisher', context=context)
    publisher = node.create_publisher(Matches, 'interface_test/matches', 10)
    deadline = time.monotonic() + 30
    while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    msg = fill(Matches(), make_arrays(seed=7))
    for _ in range(20):
        publisher.publish(msg)
        time.sleep(0.1)
    node.destroy_node()
    rclpy.shutdown(context=context)
''')


def test_matches_cross_process_over_dds(tmp_path):
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    context = Context()
    rclpy.init(context=context)
    received = []
    try:
        node = rclpy.create_node('matches_subscriber', context=context)
        node.create_subscription(Matches, 'interface_test/matches', received.append, 10)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        script = PUBLISHER.format(test_dir=str(__import__('pathlib').Path(__file__).parent))
        publisher = subprocess.Popen([sys.executable, '-c', script], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 40
        while not received and time.monotonic() < deadline and publisher.poll() is None:
            executor.spin_once(timeout_sec=0.1)
        output = publisher.communicate(timeout=40)[0]
        assert received, f'no Matches received over DDS; publisher output:\n{output}'
        expected = make_arrays(seed=7)
        for name, array in as_arrays(received[0]).items():
            np.testing.assert_array_equal(array, expected[name], err_msg=name)
        assert received[0].model == 'xfeat'
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)


@pytest.mark.parametrize('module', ['loftr_ros.msg', 'loftr_ros.srv', 'loftr_ros.core.config',
                                    'loftr_ros.cli'])
def test_interfaces_and_modules_import_from_the_installed_tree(module):
    import importlib

    from ament_index_python.packages import get_package_prefix

    imported = importlib.import_module(module)
    # The prefix make setup built (install/ or install-jazzy/), not the source tree.
    prefix = Path(get_package_prefix('loftr_ros'))
    assert prefix.name == 'loftr_ros' and prefix.parent.name.startswith('install'), prefix
    assert Path(imported.__file__).is_relative_to(prefix), imported.__file__


def test_service_type_carries_two_images_and_matches():
    from loftr_ros.srv import MatchImages
    from sensor_msgs.msg import Image

    request = MatchImages.Request()
    assert isinstance(request.image0, Image) and isinstance(request.image1, Image)
    assert isinstance(MatchImages.Response().matches, Matches)
