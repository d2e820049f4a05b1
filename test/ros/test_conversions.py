"""MatchResult <-> Matches and NumPy <-> Image with real rclpy messages and serialization."""
import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from loftr_ros.core.image_conversion import image_from_msg
from loftr_ros.core.stamps import stamp_to_ns
from loftr_ros.core.types import MatchResult
from loftr_ros.msg import Matches
from loftr_ros.ros.conversions import (image_msg_from_array, matches_msg_from_result,
                                       result_from_matches_msg)


def random_result(count, with_inliers):
    rng = np.random.default_rng(count)
    return MatchResult(
        keypoints0=(rng.random((count, 2)) * [752, 480]).astype(np.float32),
        keypoints1=(rng.random((count, 2)) * [640, 360]).astype(np.float32),
        scores=np.sort(rng.random(count).astype(np.float32))[::-1],
        image_size0=(752, 480), image_size1=(640, 360),
        inliers=(rng.random(count) > 0.3).astype(np.uint8) if with_inliers else None,
        geometry_model='fundamental' if with_inliers else '')


@pytest.mark.parametrize('with_inliers', [True, False])
@pytest.mark.parametrize('count', [0, 10_000])
def test_matches_round_trip_through_serialization(count, with_inliers):
    result = random_result(count, with_inliers)
    header = Header(frame_id='cam1')
    header.stamp.sec, header.stamp.nanosec = 1403715273, 262142976
    reference = Header(frame_id='cam0')
    msg = matches_msg_from_result(result, header, reference, 'xfeat', 'deadbeef', 0.0421)
    back = deserialize_message(serialize_message(msg), Matches)
    restored = result_from_matches_msg(back)
    np.testing.assert_array_equal(restored.keypoints0, result.keypoints0)
    np.testing.assert_array_equal(restored.keypoints1, result.keypoints1)
    np.testing.assert_array_equal(restored.scores, result.scores)
    if with_inliers:
        np.testing.assert_array_equal(restored.inliers, result.inliers)
    else:
        assert restored.inliers is None
    assert restored.image_size0 == (752, 480) and restored.image_size1 == (640, 360)
    assert restored.geometry_model == result.geometry_model
    assert stamp_to_ns(back.header.stamp) == 1403715273262142976
    assert (back.header.frame_id, back.reference_header.frame_id) == ('cam1', 'cam0')
    assert (back.model, back.config_id) == ('xfeat', 'deadbeef')
    assert back.processing_time.sec == 0 and back.processing_time.nanosec == 42_100_000


@pytest.mark.parametrize('encoding, shape, dtype', [('bgr8', (48, 64, 3), np.uint8),
                                                    ('mono16', (48, 64), np.uint16),
                                                    ('32FC1', (48, 64), np.float32)])
def test_image_message_round_trip(encoding, shape, dtype):
    rng = np.random.default_rng(1)
    array = (rng.random(shape) * (1 if dtype == np.float32 else 60000)).astype(dtype)
    msg = deserialize_message(serialize_message(image_msg_from_array(array, encoding)), Image)
    np.testing.assert_array_equal(image_from_msg(msg), array)
