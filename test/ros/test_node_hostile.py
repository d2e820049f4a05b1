"""Hostile input against the node in another process (issue 13): every bad message is refused,
counted and said on the right topic, the node's memory stays bounded, and the next good pair is
matched."""
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from rcl_interfaces.srv import SetParametersAtomically
from rclpy.parameter import Parameter
from rclpy.serialization import serialize_message
from sensor_msgs.msg import CameraInfo, CompressedImage

from loftr_ros.core.stamps import stamp_to_ns
from loftr_ros.ros.conversions import image_msg_from_array, make_header

MS = 1_000_000
START = 1_700_000_000 * 10**9
FAST = {'matcher.backend': 'opencv', 'matcher.warmup': False, 'diagnostics.period': 0.2,
        'qos_reliability': 'reliable', 'qos_depth': 10}
GIB = 1024


def image_msg(image, stamp_ns, frame_id='camera', encoding='mono8'):
    return image_msg_from_array(image, encoding, make_header(stamp_ns, frame_id))


def compressed_msg(data: bytes, fmt, stamp_ns):
    import array
    return CompressedImage(header=make_header(stamp_ns, 'camera'), format=fmt,
                           data=array.array('B', data))


def camera_info(k, d, stamp_ns, width=320, height=240, model='plumb_bob'):
    return CameraInfo(header=make_header(stamp_ns, 'camera'), width=width, height=height,
                      distortion_model=model, k=[float(v) for v in k],
                      d=[float(v) for v in d])


def wait_diagnostic(harness, key, value, timeout=20.0):
    deadline = time.monotonic() + timeout
    while harness.latest_diagnostics().get(key) != value:
        assert time.monotonic() < deadline, (key, value, harness.latest_diagnostics())
        time.sleep(0.1)


class Stereo:
    """Publishes stereo pairs of the photo views and waits for each pair's Matches."""

    def __init__(self, harness, views, node):
        self.harness, self.views, self.node = harness, views, node
        self.stamp = START
        self.matched = 0

    def good_pair(self):
        self.stamp += 50 * MS
        self.harness.publish('/left/image', image_msg(self.views[0], self.stamp, 'left'))
        self.harness.publish('/right/image', image_msg(self.views[1], self.stamp, 'right'))
        self.matched += 1
        try:
            matches = self.harness.wait_matches(self.matched)[-1]
        except TimeoutError:
            if self.node is not None:  # a NodeProcess: say why it ended
                self.node.raise_if_exited(f':\n{self.node.log}')
            raise
        assert stamp_to_ns(matches.header.stamp) == self.stamp
        assert len(matches.scores) > 20
        return matches


def settle():
    time.sleep(0.4)


def test_bad_camera_info_is_refused_and_the_previous_calibration_kept(
        photo_views, node_process, harness):
    """With essential verification: no camera_info yet says why Matches are fundamental;
    camera_info that OpenCV's undistortion cannot take (6 or 20 plumb_bob coefficients, which
    ended the node) or that is not a camera (NaN/inf, zero focal length) is refused and
    counted, the previous calibration kept; one for other images is not used."""
    node = node_process(mode='stereo', use_camera_info=True,
                        **{**FAST, 'matcher.geometry': 'essential'})
    node.wait_ready()
    topics = ['/left/image', '/right/image']
    harness.wait_for_subscribers(topics + [(f'/{side}/camera_info', CameraInfo)
                                           for side in ('left', 'right')], process=node)
    pairs = Stereo(harness, photo_views, node)
    assert pairs.good_pair().geometry_model == 'fundamental'
    node.wait_for_line('/right/image: no_camera_model: Matches verified with the fundamental '
                       'matrix: essential needs both cameras, no valid camera_info on '
                       '/left/camera_info, /right/camera_info yet')
    wait_diagnostic(harness, 'geometry', 'fundamental: essential needs both cameras, no valid '
                    'camera_info on /left/camera_info, /right/camera_info yet')

    k = (300.0, 0.0, 160.0, 0.0, 300.0, 120.0, 0.0, 0.0, 1.0)
    d = (-0.1, 0.01, 0.0, 0.0, 0.0)
    for side in ('left', 'right'):
        harness.publish(f'/{side}/camera_info', camera_info(k, d, pairs.stamp), CameraInfo)
    settle()
    assert pairs.good_pair().geometry_model == 'essential'

    bad = {'6 coefficients': (k, d + (0.1,), 'plumb_bob takes 5 or 4 distortion coefficients'),
           '20 coefficients': (k, tuple(np.linspace(0.01, 0.2, 20)), 'got 20'),
           'NaN in K': ((float('nan'),) + k[1:], d, 'K must be 3x3 and finite'),
           'inf in K': (k[:2] + (float('inf'),) + k[3:], d, 'K must be 3x3 and finite'),
           'NaN in D': (k, (float('nan'),) + d[1:], 'D must be finite'),
           'zero focal length': ((0.0,) + k[1:], d, 'focal lengths must be positive')}
    for count, (name, (bad_k, bad_d, reason)) in enumerate(bad.items(), start=1):
        harness.publish('/left/camera_info', camera_info(bad_k, bad_d, pairs.stamp), CameraInfo)
        wait_diagnostic(harness, 'camera_info_refused.invalid', str(count))
        assert pairs.good_pair().geometry_model == 'essential', name
        node.wait_for_line('/left/camera_info: bad_camera_info: ')
        assert reason in node.log, name

    # Valid, but for 752x480 images: the 320x240 frames are matched without it, the message
    # counted once (not as a drop of every frame) and the reason given in the geometry.
    harness.publish('/right/camera_info', camera_info(k, d, pairs.stamp, 752, 480), CameraInfo)
    settle()
    for _ in range(3):
        assert pairs.good_pair().geometry_model == 'fundamental'
    node.wait_for_line('/right/camera_info: bad_camera_info: the calibration is for 752x480 '
                       'images, not 320x240 on the image topic; frames matched without it')
    wait_diagnostic(harness, 'geometry', 'fundamental: essential needs both cameras, '
                    '/right/camera_info: the calibration is for 752x480 images, not 320x240')
    diagnostics = harness.latest_diagnostics()
    assert diagnostics['camera_info_refused.wrong_size'] == '1', diagnostics
    assert not [key for key in diagnostics if key.startswith('drops.')], diagnostics
    assert node.process.poll() is None


def test_oversized_and_corrupt_compressed_images_are_refused_within_2_gib(
        photo_views, node_process, harness, hostile_images):
    """A 20000x20000 PNG (0.4 MB) and JPEG (1.5 MB) each decode to 400 MB, and took the node to
    22 GiB: refused from their headers. A JPEG with corrupt scan data decodes (OpenCV matched
    it) and is refused by the strict decoder. Each is followed by a good frame, matched."""
    node = node_process(mode='consecutive', transport='compressed', **FAST)
    node.wait_ready()
    topic = '/image/compressed'
    harness.wait_for_subscribers([(topic, CompressedImage)], process=node)

    def jpeg(image):
        return cv2.imencode('.jpg', image)[1].tobytes()

    stamp = START
    harness.publish(topic, compressed_msg(jpeg(photo_views[0]), 'jpeg', stamp), CompressedImage)
    settle()
    bad = [(hostile_images.uniform_gray_png(20000, 20000), 'mono8; png compressed'),
           (hostile_images.uniform_gray_jpeg(20000, 20000), 'mono8; jpeg compressed mono8'),
           (hostile_images.corrupt_jpeg_scan(jpeg(photo_views[0])), 'jpeg')]
    for count, (data, fmt) in enumerate(bad, start=1):
        stamp += 50 * MS
        harness.publish(topic, compressed_msg(data, fmt, stamp), CompressedImage)
        settle()
        stamp += 50 * MS
        harness.publish(topic, compressed_msg(jpeg(photo_views[count]), 'jpeg', stamp),
                        CompressedImage)
        try:
            matched = harness.wait_matches(count)[-1]
        except TimeoutError:
            node.raise_if_exited(f':\n{node.log}')
            raise
        assert stamp_to_ns(matched.header.stamp) == stamp
        assert len(matched.scores) > 20
    wait_diagnostic(harness, 'drops.image_too_large', '2')
    wait_diagnostic(harness, 'drops.bad_image', '1')
    log = node.log
    assert f'{topic}: image_too_large: 20000x20000 PNG has 400.0 MP, above the limit' in log
    assert f'{topic}: image_too_large: 20000x20000 JPEG has 400.0 MP' in log
    assert f'{topic}: bad_image: corrupt JPEG: Corrupt JPEG data' in log
    # Routed through the throttled log, not printed by libjpeg on its own.
    assert log.count('Corrupt JPEG data') == 1
    assert node.rss_mib('VmHWM') < 2 * GIB


def publish_from_another_process(tmp_path, messages):
    """Publish [(topic, msg)] from a process of its own (publish_messages.py), reliably."""
    path = tmp_path / 'messages.pickle'
    path.write_bytes(pickle.dumps([(topic, f'{type(msg).__module__.split(".")[0]}/msg/'
                                          f'{type(msg).__name__}', serialize_message(msg))
                                   for topic, msg in messages]))
    script = Path(__file__).with_name('publish_messages.py')
    return subprocess.run([sys.executable, str(script), str(path)], timeout=60,
                          capture_output=True, text=True)


def test_an_8000x8000_raw_image_is_refused_before_conversion(
        photo_views, node_process, harness, tmp_path):
    """8000x8000 mono8 is 64 MB, twice the shipped profile's shared-memory segment: Fast DDS
    sends it in fragments, which a reliable publisher in another process gets through (a
    best-effort one at camera rate mostly does not, and nothing can count what never arrives).
    The node refuses it from its width and height, counts it, and matches the next frame."""
    node = node_process(mode='consecutive', **FAST)
    node.wait_ready()
    harness.wait_for_subscribers(['/image'], process=node)
    harness.publish('/image', image_msg(photo_views[0], START))
    settle()
    huge = image_msg(np.zeros((8000, 8000), np.uint8), START + 50 * MS)
    result = publish_from_another_process(tmp_path, [('/image', huge)])
    assert result.returncode == 0, result.stderr
    wait_diagnostic(harness, 'drops.image_too_large', '1')
    node.wait_for_line('/image: image_too_large: 8000x8000 mono8 image has 64.0 MP, above the '
                       'limit max_image_pixels = 16777216 (16.8 MP); frame skipped')
    harness.publish('/image', image_msg(photo_views[1], START + 100 * MS))
    matched = harness.wait_matches(1)[-1]
    assert stamp_to_ns(matched.header.stamp) == START + 100 * MS
    assert stamp_to_ns(matched.reference_header.stamp) == START
    assert node.rss_mib('VmHWM') < 2 * GIB


def test_left_only_nan_is_named_on_the_left_topic_and_duplicates_are_said(
        photo_views, node_process, harness):
    node = node_process(mode='stereo', **FAST)
    node.wait_ready()
    harness.wait_for_subscribers(['/left/image', '/right/image'], process=node)
    pairs = Stereo(harness, photo_views, node)
    pairs.good_pair()
    # NaN in the left 32FC1 image only: was reported on /right/image.
    nan_left = photo_views[0].astype(np.float32) / 255
    nan_left[100:110, 50:60] = np.nan
    pairs.stamp += 50 * MS
    harness.publish('/left/image', image_msg(nan_left, pairs.stamp, 'left', '32FC1'))
    harness.publish('/right/image', image_msg(photo_views[1].astype(np.float32) / 255,
                                              pairs.stamp, 'right', '32FC1'))
    node.wait_for_line('/left/image: bad_image: image contains NaN or infinite values; skipped')
    assert '/right/image: bad_image' not in node.log
    pairs.good_pair()
    # The same left stamp again: counted by the synchronizer, and now said too.
    harness.publish('/left/image', image_msg(photo_views[0], pairs.stamp, 'left'))
    node.wait_for_line(f'/left/image: duplicate: stamp {pairs.stamp} ns repeated; 1 frame(s) '
                       f'skipped')
    pairs.good_pair()
    wait_diagnostic(harness, 'drops.duplicate', '1')
    wait_diagnostic(harness, 'drops.bad_image', '1')


@pytest.fixture
def backend_failing_on_second_pair(replace_opencv_backend):
    """The opencv backend replaced by failing_backend.FailingOnSecondPair."""
    replace_opencv_backend('failing_backend', 'FailingOnSecondPair')


def test_an_unexpected_exception_costs_one_pair_not_the_node(
        backend_failing_on_second_pair, photo_views, start_node, harness, capfd):
    start_node(mode='stereo', **FAST)
    harness.wait_for_subscribers(['/left/image', '/right/image'])

    def publish_pair(stamp):
        harness.publish('/left/image', image_msg(photo_views[0], stamp, 'left'))
        harness.publish('/right/image', image_msg(photo_views[1], stamp, 'right'))

    publish_pair(START)
    harness.wait_matches(1)
    publish_pair(START + 50 * MS)
    wait_diagnostic(harness, 'drops.match_failed', '2')  # both frames of the pair
    publish_pair(START + 100 * MS)
    assert stamp_to_ns(harness.wait_matches(2)[-1].header.stamp) == START + 100 * MS
    err = capfd.readouterr().err
    assert ('/right/image: match_failed: RuntimeError: the backend cannot match this pair (at '
            'failing_backend.py:') in err
    assert 'in match); skipped' in err


def test_parameter_type_errors_are_in_words(start_node):
    node = start_node(mode='consecutive', **FAST).node
    result = node.set_parameters([Parameter('keyframe.min_overlap', value=1)])[0]
    assert not result.successful
    assert result.reason == ('keyframe.min_overlap must be a double (a number with a decimal '
                             'point, such as 1.0), got the integer 1')
    result = node.set_parameters([Parameter('overlay.max_lines', value=10.0)])[0]
    assert result.reason == 'overlay.max_lines must be an integer, got the double 10.0'
    assert node.get_parameter('keyframe.min_overlap').value == 0.5
    assert node.describe_parameter('keyframe.min_overlap').type == Parameter.Type.DOUBLE.value
    assert node.set_parameters([Parameter('keyframe.min_overlap', value=0.7)])[0].successful


@pytest.mark.parametrize('values', [
    # Both of the wrong type: refused by the node's check.
    {'keyframe.min_overlap': 1, 'overlay.max_lines': 10.0},
    # The first of the wrong type, the second out of its descriptor's range: refused by rclpy
    # before the node's check is called.
    {'keyframe.min_overlap': 'abc', 'overlay.max_lines': 10**9},
])
def test_a_refused_atomic_set_leaves_every_parameter_and_its_type(start_node, harness, values):
    """`ros2 param load` and set_parameters_atomically set several parameters at once; rclpy
    types each descriptor from the value given before any check."""
    node = start_node(mode='consecutive', **FAST).node
    request = SetParametersAtomically.Request(parameters=[
        Parameter(name, value=value).to_parameter_msg() for name, value in values.items()])
    result = harness.call(SetParametersAtomically, 'set_parameters_atomically', request).result
    assert not result.successful
    if values['overlay.max_lines'] == 10.0:  # every refused value named
        assert 'keyframe.min_overlap must be a double' in result.reason, result.reason
        assert 'overlay.max_lines must be an integer' in result.reason, result.reason
    assert node.get_parameter('keyframe.min_overlap').value == 0.5
    assert node.get_parameter('overlay.max_lines').value == 300
    assert node.describe_parameter('keyframe.min_overlap').type == Parameter.Type.DOUBLE.value
    assert node.describe_parameter('overlay.max_lines').type == Parameter.Type.INTEGER.value


def test_a_killed_matching_process_costs_its_pair_and_a_new_one_takes_over(
        photo_views, start_node, harness, capfd):
    """The model's process ended under the node (the kernel's OOM killer, a crash in native
    code): the pair in hand is match_failed, a new matching process starts with the settings in
    force, and the next pair is matched."""
    node = start_node(mode='stereo', **FAST).node
    harness.wait_for_subscribers(['/left/image', '/right/image'])
    pairs = Stereo(harness, photo_views, None)
    pairs.good_pair()
    killed = node.matcher.process.pid
    os.kill(killed, signal.SIGKILL)
    harness.publish('/left/image', image_msg(photo_views[0], pairs.stamp + 50 * MS, 'left'))
    harness.publish('/right/image', image_msg(photo_views[1], pairs.stamp + 50 * MS, 'right'))
    pairs.stamp += 50 * MS
    wait_diagnostic(harness, 'matcher_restarts', '1')
    wait_diagnostic(harness, 'drops.match_failed', '2')  # both frames of the pair
    assert node.matcher.process.pid != killed and node.matcher.process.poll() is None
    pairs.good_pair()
    err = capfd.readouterr().err
    assert (f'/right/image: match_failed: matching process (pid {killed}) ended with exit code '
            f'-9; skipped') in err
    assert f'/right/image: matcher_restart: matching process (pid {killed}) ended' in err
