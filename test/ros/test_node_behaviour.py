"""The node's behaviour over DDS: stereo pairing with a slop, bad input followed by good
frames, the service against the topic path, keyframes on a sequence that pans away, runtime
parameters, and the fatal start-up error."""
import array
import time

import cv2
import numpy as np
import pytest
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage

from loftr_ros.core.keyframe import KeyframePolicy
from loftr_ros.core.stamps import stamp_to_ns
from loftr_ros.core.synthetic import default_camera, pan_path, render_views
from loftr_ros.ros.conversions import image_msg_from_array, make_header, result_from_matches_msg
from loftr_ros.srv import MatchImages

MS = 1_000_000
START = 1_700_000_000 * 10**9
# Fast and deterministic: OpenCV SIFT, no weights, no warm-up; quick diagnostics.
FAST = {'matcher.backend': 'opencv', 'matcher.warmup': False, 'diagnostics.period': 0.2,
        'qos_reliability': 'reliable', 'qos_depth': 10}


def image_msg(image, encoding, stamp_ns, frame_id):
    return image_msg_from_array(image, encoding, make_header(stamp_ns, frame_id))


def compressed_msg(data: bytes, fmt, stamp_ns, frame_id):
    return CompressedImage(header=make_header(stamp_ns, frame_id), format=fmt,
                           data=array.array('B', data))


def settle():
    """Let the worker take the frame just published. Latest wins: a frame following at once
    may supersede it (the reference frame in consecutive mode, a bad frame under test)."""
    time.sleep(0.3)


def publish_and_wait(harness, topic, image, stamp_ns, expected_total, encoding='mono8'):
    harness.publish(topic, image_msg(image, encoding, stamp_ns, 'camera'))
    return harness.wait_matches(expected_total)[-1]


@pytest.mark.parametrize('slop_ms, pairs_expected', [(5.0, 5), (1.0, 0)])
def test_right_stamps_3ms_late_pair_with_5ms_slop_and_are_counted_with_1ms(
        photo_views, start_node, harness, slop_ms, pairs_expected):
    start_node(mode='stereo', **{**FAST, 'stereo.slop': slop_ms / 1e3})
    harness.wait_for_subscribers(['/left/image', '/right/image'])
    for index in range(5):
        stamp = START + index * 50 * MS
        harness.publish('/left/image', image_msg(photo_views[index], 'mono8', stamp, 'left'))
        harness.publish('/right/image', image_msg(photo_views[index + 1], 'mono8',
                                                  stamp + 3 * MS, 'right'))
        if pairs_expected:
            harness.wait_matches(index + 1)
        else:
            settle()
    if pairs_expected:
        matches = harness.wait_matches(pairs_expected)
        assert [stamp_to_ns(m.header.stamp) - stamp_to_ns(m.reference_header.stamp)
                for m in matches] == [3 * MS] * pairs_expected
    diagnostics = harness.diagnostics_after(time.monotonic() + 0.1)
    drops = int(diagnostics.get('drops.no_partner', 0))
    if pairs_expected:
        assert drops == 0
    else:
        # All but the last right frame, which may still meet a left one.
        assert drops == 9, diagnostics
        assert harness.matches == []


def test_each_bad_input_is_counted_and_the_next_good_frame_is_matched(
        photo_views, start_node, harness, capfd):
    start_node(mode='consecutive', **FAST)
    harness.wait_for_subscribers(['/image'])
    stamp = START
    harness.publish('/image', image_msg(photo_views[0], 'mono8', stamp, 'camera'))
    settle()
    good = iter(photo_views[1:])
    bad_images = []
    unsupported = image_msg(photo_views[0], 'mono8', 0, 'camera')
    unsupported.encoding = 'nv21'
    bad_images.append(unsupported)
    truncated = image_msg(photo_views[0], 'mono8', 0, 'camera')
    truncated.data = truncated.data[:-321]
    bad_images.append(truncated)
    bad_step = image_msg(photo_views[0], 'mono8', 0, 'camera')
    bad_step.step = 300
    bad_images.append(bad_step)
    nan_image = photo_views[0].astype(np.float32) / 255
    nan_image[100:110, 50:60] = np.nan
    bad_images.append(image_msg(nan_image, '32FC1', 0, 'camera'))

    for count, bad in enumerate(bad_images, start=1):
        stamp += 50 * MS
        bad.header.stamp.sec, bad.header.stamp.nanosec = divmod(stamp, 10**9)
        harness.publish('/image', bad)
        settle()
        stamp += 50 * MS
        matched = publish_and_wait(harness, '/image', next(good), stamp, count)
        assert stamp_to_ns(matched.header.stamp) == stamp
        assert len(matched.scores) > 20

    # A bag restarted: stamps jump back. The state resets: that frame becomes the reference
    # and the one after it is matched to it.
    restart = START - 10 * 10**9
    harness.publish('/image', image_msg(photo_views[0], 'mono8', restart, 'camera'))
    settle()
    matched = publish_and_wait(harness, '/image', next(good), restart + 50 * MS,
                               len(bad_images) + 1)
    assert stamp_to_ns(matched.reference_header.stamp) == restart

    diagnostics = harness.diagnostics_after(time.monotonic() + 0.1)
    assert diagnostics['drops.bad_image'] == str(len(bad_images)), diagnostics
    assert diagnostics['stamp_resets'] == '1'
    err = capfd.readouterr().err
    assert "/image: bad_image: unsupported encoding 'nv21'" in err
    assert '/image: stamp_reset: stamp jumped backwards' in err


def test_corrupt_compressed_images_are_counted_and_the_next_good_frame_is_matched(
        photo_views, start_node, harness):
    start_node(mode='consecutive', transport='compressed', **FAST)
    topic = '/image/compressed'
    harness.wait_for_subscribers([(topic, CompressedImage)])

    def jpeg(image):
        return cv2.imencode('.jpg', image)[1].tobytes()

    png = cv2.imencode('.png', photo_views[0])[1].tobytes()
    bad = [(jpeg(photo_views[0])[:5000], 'jpeg'), (png[: len(png) // 2], 'png'),
           (b'\x89PNG\r\n\x1a\n' + b'\x00' * 200, 'png')]
    stamp = START
    harness.publish(topic, compressed_msg(jpeg(photo_views[0]), 'jpeg', stamp, 'camera'),
                    CompressedImage)
    settle()
    for count, (data, fmt) in enumerate(bad, start=1):
        stamp += 50 * MS
        harness.publish(topic, compressed_msg(data, fmt, stamp, 'camera'), CompressedImage)
        stamp += 50 * MS
        harness.publish(topic, compressed_msg(jpeg(photo_views[count]), 'jpeg', stamp,
                                              'camera'), CompressedImage)
        assert stamp_to_ns(harness.wait_matches(count)[-1].header.stamp) == stamp
    diagnostics = harness.diagnostics_after(time.monotonic() + 0.1)
    assert diagnostics['drops.bad_image'] == str(len(bad))


def test_stereo_images_of_different_sizes_are_skipped(photo_views, start_node, harness):
    start_node(mode='stereo', **FAST)
    harness.wait_for_subscribers(['/left/image', '/right/image'])
    harness.publish('/left/image', image_msg(photo_views[0], 'mono8', START, 'left'))
    harness.publish('/right/image', image_msg(photo_views[1][:200], 'mono8', START, 'right'))
    settle()
    harness.publish('/left/image', image_msg(photo_views[0], 'mono8', START + 50 * MS, 'left'))
    harness.publish('/right/image', image_msg(photo_views[1], 'mono8', START + 50 * MS,
                                              'right'))
    matched = harness.wait_matches(1)[-1]
    assert stamp_to_ns(matched.header.stamp) == START + 50 * MS
    diagnostics = harness.diagnostics_after(time.monotonic() + 0.1)
    assert diagnostics['drops.size_mismatch'] == '2'  # both frames of the pair


def test_stereo_stamps_jumping_backwards_reset_pairing(photo_views, start_node, harness):
    start_node(mode='stereo', **FAST)
    harness.wait_for_subscribers(['/left/image', '/right/image'])
    for count, stamp in enumerate([START, START + 50 * MS, START - 10 * 10**9], start=1):
        harness.publish('/left/image', image_msg(photo_views[0], 'mono8', stamp, 'left'))
        harness.publish('/right/image', image_msg(photo_views[1], 'mono8', stamp, 'right'))
        assert stamp_to_ns(harness.wait_matches(count)[-1].header.stamp) == stamp
        if count == 2:  # a right frame without partner is pending when the stamps jump
            harness.publish('/right/image', image_msg(photo_views[1], 'mono8',
                                                      stamp + 20 * MS, 'right'))
            # Topics are not ordered against each other: let it arrive before the jump.
            settle()
    diagnostics = harness.diagnostics_after(time.monotonic())
    assert diagnostics['stamp_resets'] == '1'
    assert diagnostics['drops.stamp_reset'] == '1'


def test_service_returns_the_matches_of_the_topic_path(photo_views, start_node, harness,
                                                       assert_same_matches):
    node = start_node(mode='stereo', **{**FAST, 'matcher.backend': 'xfeat'})
    harness.wait_for_subscribers(['/left/image', '/right/image'])
    left = image_msg(photo_views[0], 'mono8', START, 'left')
    right = image_msg(photo_views[2], 'mono8', START, 'right')
    harness.publish('/left/image', left)
    harness.publish('/right/image', right)
    from_topic = result_from_matches_msg(harness.wait_matches(1)[0])

    client = harness.node.create_client(MatchImages, '/matcher_node/match_images')
    assert client.wait_for_service(timeout_sec=10)
    future = client.call_async(MatchImages.Request(image0=left, image1=right))
    deadline = time.monotonic() + 30
    while not future.done():
        assert time.monotonic() < deadline, 'service did not answer'
        time.sleep(0.02)
    response = future.result()
    assert response.success, response.message
    from_service = result_from_matches_msg(response.matches)
    assert len(from_service) > 50
    # The service matches the two images as one batch, the topic path one by one.
    assert_same_matches(from_service, from_topic)
    assert response.matches.header.frame_id == 'right'
    assert response.matches.config_id == node.node.matcher.config.config_id

    bad = image_msg(photo_views[0], 'mono8', START, 'left')
    bad.encoding = 'jpeg'
    future = client.call_async(MatchImages.Request(image0=bad, image1=right))
    while not future.done():
        time.sleep(0.02)
    assert not future.result().success
    assert "unsupported encoding 'jpeg'" in future.result().message
    # Counted apart from the image frames, under the cause.
    diagnostics = harness.diagnostics_after(time.monotonic())
    assert diagnostics['service_requests'] == '2', diagnostics
    assert diagnostics['service_refused.bad_image'] == '1', diagnostics
    assert diagnostics['frames_received'] == '2', diagnostics


@pytest.mark.slow
def test_keyframe_is_replaced_when_the_view_pans_away(start_node, harness):
    """A camera yawing away from a wall of photos (loftr_ros.core.synthetic): the keyframe is
    kept while the view overlaps it and replaced exactly when the policy says so."""
    views = render_views(pan_path(10, end_yaw_deg=45.0), default_camera(320, 240, 250.0))
    thresholds = {'keyframe.min_matches': 60, 'keyframe.min_overlap': 0.5}
    start_node(mode='consecutive', **{**FAST, 'matcher.backend': 'xfeat', **thresholds})
    harness.wait_for_subscribers(['/image'])
    harness.publish('/image', image_msg(views[0].image, 'bgr8', views[0].stamp_ns, 'camera'))
    settle()
    for index, view in enumerate(views[1:], start=1):
        publish_and_wait(harness, '/image', view.image, view.stamp_ns, index, 'bgr8')
    matches = harness.wait_matches(len(views) - 1)
    policy = KeyframePolicy(60, 0.5)
    references = [stamp_to_ns(m.reference_header.stamp) for m in matches]
    assert references[0] == views[0].stamp_ns
    for msg, next_reference in zip(matches, references[1:]):
        replaced = next_reference == stamp_to_ns(msg.header.stamp)
        assert replaced == policy.should_replace(result_from_matches_msg(msg))
    assert len(set(references)) >= 2, 'the keyframe was never replaced'
    assert references[-1] != views[0].stamp_ns
    # The first frame plus one per replacement (the last one only visible in the counter).
    replacements = sum(policy.should_replace(result_from_matches_msg(m)) for m in matches)
    assert harness.diagnostics_after(time.monotonic())['keyframes'] == str(1 + replacements)


def test_runtime_parameters_apply_and_invalid_values_are_rejected(
        photo_views, start_node, harness):
    node = start_node(mode='consecutive', **FAST).node
    harness.wait_for_subscribers(['/image'])
    config_id = node.matcher.config.config_id
    results = node.set_parameters([Parameter('matcher.confidence_threshold', value=1.5)])
    assert not results[0].successful
    results = node.set_parameters([Parameter('keyframe.min_overlap', value=-0.1)])
    assert not results[0].successful and 'keyframe.min_overlap' in results[0].reason
    results = node.set_parameters([Parameter('overlay.style', value='fancy')])
    assert not results[0].successful and 'side_by_side' in results[0].reason
    results = node.set_parameters([Parameter('mode', value='stereo')])
    assert not results[0].successful
    results = node.set_parameters([Parameter('matcher.max_matches', value=10),
                                   Parameter('keyframe.min_matches', value=5)])
    assert all(result.successful for result in results)
    harness.publish('/image', image_msg(photo_views[0], 'mono8', START, 'camera'))
    settle()
    matched = publish_and_wait(harness, '/image', photo_views[1], START + 50 * MS, 1)
    assert len(matched.scores) == 10
    assert matched.config_id != config_id


def test_weights_that_cannot_load_give_one_fatal_line_and_exit_1(node_process):
    node = node_process(**{'matcher.backend': 'loftr',
                           'matcher.weights': '/nonexistent/outdoor_ds.ckpt'})
    assert node.process.wait(60) == 1
    log = node.log
    assert "cannot start: backend 'loftr': weights path /nonexistent/outdoor_ds.ckpt" in log
    assert 'Traceback' not in log


def test_overlay_is_drawn_only_while_subscribed_and_rate_limited(photo_views, start_node,
                                                                  harness):
    from sensor_msgs.msg import Image

    from loftr_ros.core.image_conversion import image_from_msg
    node = start_node(mode='stereo', **{**FAST, 'overlay.max_rate': 100.0}).node
    harness.wait_for_subscribers(['/left/image', '/right/image'])
    stamp = START

    def publish_pairs(count, expected_total):
        nonlocal stamp
        for _ in range(count):
            stamp += 50 * MS
            harness.publish('/left/image', image_msg(photo_views[0], 'mono8', stamp, 'left'))
            harness.publish('/right/image', image_msg(photo_views[1], 'mono8', stamp, 'right'))
            harness.wait_matches(expected_total - count + 1 + _)

    publish_pairs(2, 2)
    assert harness.diagnostics_after(time.monotonic())['overlays_published'] == '0'

    overlays = []
    harness.node.create_subscription(Image, '/matcher_node/overlay', overlays.append, 10)
    deadline = time.monotonic() + 10
    while node.overlay_subscribers == 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    publish_pairs(2, 4)
    deadline = time.monotonic() + 10
    while len(overlays) < 2:
        assert time.monotonic() < deadline, 'no overlay received'
        time.sleep(0.05)
    image = image_from_msg(overlays[-1])
    assert overlays[-1].encoding == 'bgr8' and image.shape == (240, 640, 3)
    assert stamp_to_ns(overlays[-1].header.stamp) == stamp

    # At most one overlay per 5 s now: the pairs right after the last overlay get none.
    assert node.set_parameters([Parameter('overlay.max_rate', value=0.2)])[0].successful
    publish_pairs(3, 7)
    time.sleep(0.3)
    assert harness.diagnostics_after(time.monotonic())['overlays_published'] == '2'


def test_consecutive_overlay_is_a_flow_view_on_the_current_image(photo_views, start_node,
                                                                 harness):
    from sensor_msgs.msg import Image

    from loftr_ros.core.image_conversion import image_from_msg
    node = start_node(mode='consecutive', **{**FAST, 'overlay.max_rate': 100.0}).node
    overlays = []
    harness.node.create_subscription(Image, '/matcher_node/overlay', overlays.append, 10)
    harness.wait_for_subscribers(['/image'])
    deadline = time.monotonic() + 10
    while node.overlay_subscribers == 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    harness.publish('/image', image_msg(photo_views[0], 'mono8', START, 'camera'))
    settle()
    publish_and_wait(harness, '/image', photo_views[1], START + 50 * MS, 1)
    deadline = time.monotonic() + 10
    while not overlays:
        assert time.monotonic() < deadline, 'no overlay received'
        time.sleep(0.05)
    image = image_from_msg(overlays[0])
    assert image.shape == (240, 320, 3)
    # Lines are drawn in colour over the grey frame.
    assert np.any(image[:, :, 0] != image[:, :, 1])
