"""The node's tracks mode and masks, from another process (issue 11, acceptance 3, 4 and 5):
VINS-Fusion's parsing loop reads the node's ~/feature as its ~/tracks; no keypoint, match or
track of any mode lies in a masked pixel, and a wrong-size mask is an error the node counts and
goes on after; bad input in tracks mode is counted and the next good frame goes on with the
tracks; stamps going backwards reset the tracker with new ids."""
import threading
import time

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import Image, PointCloud

from loftr_ros.core.image_conversion import image_from_msg
from loftr_ros.core.stamps import stamp_to_ns
from loftr_ros.msg import FeatureTracks
from loftr_ros.ros.conversions import image_msg_from_array, make_header

MS = 1_000_000
START = 1_700_000_000 * 10**9
NODE = {'matcher.backend': 'opencv', 'matcher.warmup': False, 'diagnostics.period': 0.2,
        'qos_reliability': 'reliable', 'qos_depth': 10, 'tracks.max_features': 100,
        'tracks.min_distance': 15.0}
TRACKS, FEATURE = '/matcher_node/tracks', '/matcher_node/feature'


class Collector:
    """Messages of one topic, by arrival, subscribed on the harness's node."""

    def __init__(self, harness, topic, msg_type):
        self.msgs = []
        self._cond = threading.Condition()
        harness.node.create_subscription(msg_type, topic, self._on_msg, 100)

    def _on_msg(self, msg):
        with self._cond:
            self.msgs.append(msg)
            self._cond.notify_all()

    def wait(self, count, timeout=30.0):
        """The first `count` messages (TimeoutError naming how many came)."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.msgs) >= count, timeout):
                raise TimeoutError(f'{count} messages expected, {len(self.msgs)} came')
            return list(self.msgs[:count])


def tracks_arrays(msg):
    """ids, left pixels, right pixels (None in mono), right_valid, track lengths of a
    FeatureTracks."""
    ids = np.frombuffer(msg.ids, np.int64)
    left = np.frombuffer(msg.keypoints, np.float32).reshape(-1, 2)
    right = (np.frombuffer(msg.right_keypoints, np.float32).reshape(-1, 2) if msg.stereo
             else None)
    valid = np.frombuffer(msg.right_valid, np.uint8).astype(bool)
    lengths = np.frombuffer(msg.track_lengths, np.uint32)
    return ids, left, right, valid, lengths


def mono8(image, stamp_ns, frame_id='camera'):
    return image_msg_from_array(image, 'mono8', make_header(stamp_ns, frame_id))


def wait_diagnostic(harness, key, value, timeout=20.0):
    deadline = time.monotonic() + timeout
    while harness.latest_diagnostics().get(key) != value:
        assert time.monotonic() < deadline, (key, value, harness.latest_diagnostics())
        time.sleep(0.1)


# -- acceptance 3: VINS-Fusion reads ~/feature as the FeatureTracks --------------------------

def test_vins_fusion_reads_the_nodes_feature_cloud_as_its_tracks(
        node_process, harness, euroc_dir, euroc_stereo_frames, euroc_calibration,
        vins_feature_callback):
    node = node_process(ros_args=['-r', '~/feature:=/feature_tracker/feature'],
                        **NODE, mode='tracks', **{'tracks.stereo': True,
                                                  'tracks.calibration':
                                                  str(euroc_dir / 'calibration.yaml')})
    tracks = Collector(harness, TRACKS, FeatureTracks)
    clouds = Collector(harness, '/feature_tracker/feature', PointCloud)
    harness.wait_for_subscribers(['/left/image', '/right/image'], process=node)
    frames = euroc_stereo_frames[:5]
    for count, (stamp, left, right) in enumerate(frames, 1):
        harness.publish_pair(['/left/image', '/right/image'],
                             [mono8(left, 0, 'cam0'), mono8(right, 0, 'cam1')], stamp)
        tracks.wait(count, 60.0)
    # The first frame has no features (nothing to check new ones against), and no cloud.
    assert len(tracks_arrays(tracks.msgs[0])[0]) == 0
    clouds.wait(len(frames) - 1)
    cameras = (euroc_calibration.camera0, euroc_calibration.camera1)
    for tracked, cloud in zip(tracks.msgs[1:], clouds.msgs):
        assert cloud.header == tracked.header
        parsed = vins_feature_callback(cloud)  # asserts z == 1 as VINS-Fusion does
        ids, left, right, valid, _ = tracks_arrays(tracked)
        assert valid.sum() > 20 and sorted(parsed) == sorted(ids.tolist())
        normalized = np.frombuffer(tracked.normalized, np.float64).reshape(-1, 2)
        for row, feature_id in enumerate(ids.tolist()):
            seen = dict(parsed[feature_id])
            assert sorted(seen) == ([0, 1] if valid[row] else [0])
            for camera_id, (x, y, _, u, v, _, _) in seen.items():
                np.testing.assert_array_equal([u, v], (left, right)[camera_id][row])
                undistorted = cameras[camera_id].normalize(np.array([[u, v]], np.float64))[0]
                np.testing.assert_allclose([x, y], undistorted, atol=1e-6)
            np.testing.assert_allclose(seen[0][:2], normalized[row], atol=1e-6)
        assert len(cloud.points) == len(ids) + valid.sum()
    # The ids persist from frame to frame through the node.
    first, last = (set(tracks_arrays(msg)[0].tolist()) for msg in (tracks.msgs[1], tracks.msgs[-1]))
    assert len(first & last) > 20
    assert tracks_arrays(tracks.msgs[-1])[4].max() == len(frames) - 1


def test_without_calibration_only_tracks_are_published_and_said_once(
        node_process, harness, photo_views):
    node = node_process(**NODE, mode='tracks', **{'overlay.max_rate': 100.0})
    tracks = Collector(harness, TRACKS, FeatureTracks)
    clouds = Collector(harness, FEATURE, PointCloud)
    overlays = Collector(harness, '/matcher_node/overlay', Image)
    harness.wait_for_subscribers(['/image'], process=node)
    for count, view in enumerate(photo_views[:3], 1):
        harness.publish('/image', mono8(view, START + count * 50 * MS))
        tracks.wait(count)
    time.sleep(0.5)
    assert clouds.msgs == []
    assert not tracks.msgs[-1].normalized
    assert node.log.count('~/feature (VINS-Fusion) not published') == 1, node.log
    assert 'use_camera_info is false' in node.log
    # The overlay: the grey image with a coloured trail ending at each feature.
    overlay = overlays.wait(3)[-1]
    assert overlay.header == tracks.msgs[-1].header and overlay.encoding == 'bgr8'
    pixels = image_from_msg(overlay).astype(int)
    coloured = np.ptp(pixels, axis=2) > 60
    _, left, _, _, _ = tracks_arrays(tracks.msgs[-1])
    ends = np.round(left).astype(int)
    assert coloured[ends[:, 1], ends[:, 0]].all()


# -- acceptance 4: masks in every mode -------------------------------------------------------

MASKED_HALF = 160  # the mask covers x < 160 of the 320x240 views


def half_mask(width=320, height=240):
    mask = np.full((height, width), 255, np.uint8)
    mask[:, :MASKED_HALF] = 0
    return mask


def assert_usable(points):
    """No point on a masked pixel: pixel i covers [i - 0.5, i + 0.5)."""
    points = np.asarray(points).reshape(-1, 2)
    assert len(points) and (np.floor(points[:, 0] + 0.5) >= MASKED_HALF).all(), \
        points[np.floor(points[:, 0] + 0.5) < MASKED_HALF]


MODES = {'consecutive': {'mode': 'consecutive'}, 'stereo': {'mode': 'stereo'},
         'tracks': {'mode': 'tracks'}, 'stereo_tracks': {'mode': 'tracks', 'tracks.stereo': True}}


class Feed:
    """Publishes the photo views as the node's mode takes them and collects what it outputs."""

    def __init__(self, harness, node, parameters, views):
        self.harness, self.views = harness, views
        self.stereo = parameters['mode'] == 'stereo' or parameters.get('tracks.stereo', False)
        self.tracks_mode = parameters['mode'] == 'tracks'
        self.topics = ['/left/image', '/right/image'] if self.stereo else ['/image']
        self.tracks = Collector(harness, TRACKS, FeatureTracks) if self.tracks_mode else None
        self.node = node
        self.stamp = START
        self.outputs = 0

    def frame(self, index):
        """Publish frame `index` (a pair of neighbouring views in stereo)."""
        self.stamp += 50 * MS
        if self.stereo:
            self.harness.publish_pair(self.topics, [mono8(self.views[index], 0, 'left'),
                                                    mono8(self.views[index + 1], 0, 'right')],
                                      self.stamp)
        else:
            self.harness.publish('/image', mono8(self.views[index], self.stamp))

    def output(self, timeout=30.0):
        """Wait for the next output (Matches or FeatureTracks); the frame's points, all of them:
        [(N x 2), ...]."""
        self.outputs += 1
        if self.tracks_mode:
            msg = self.tracks.wait(self.outputs, timeout)[-1]
            _, left, right, valid, _ = tracks_arrays(msg)
            return [left] + ([right[valid]] if right is not None else [])
        try:
            msg = self.harness.wait_matches(self.outputs, timeout)[-1]
        except TimeoutError:
            self.node.raise_if_exited(f':\n{self.node.log}')
            raise TimeoutError(f'no Matches; the node said:\n{self.node.log}') from None
        return [np.frombuffer(keypoints, np.float32).reshape(-1, 2)
                for keypoints in (msg.keypoints0, msg.keypoints1)]

    def outputs_of(self, frames):
        """Publish frames 0..frames-1; the outputs with points (the first consecutive frame
        has no output, the first tracks frame no features: nothing checks new ones there)."""
        outputs = []
        for index in range(frames):
            self.frame(index)
            if index or self.stereo or self.tracks_mode:
                outputs.append(self.output())
            else:  # the reference, taken before the next frame (latest wins)
                wait_diagnostic(self.harness, 'frames_processed', '1')
        if self.tracks_mode:
            assert not any(len(side) for side in outputs[0])
            return outputs[1:]
        return outputs


@pytest.mark.parametrize('mode', MODES)
def test_no_keypoint_match_or_track_in_the_masked_half(node_process, harness, photo_views,
                                                       tmp_path, mode):
    path = tmp_path / 'mask.png'
    cv2.imwrite(str(path), half_mask())
    node = node_process(**NODE, **MODES[mode], mask=str(path))
    feed = Feed(harness, node, MODES[mode], photo_views)
    harness.wait_for_subscribers(feed.topics, process=node)
    for points in feed.outputs_of(4):
        for side in points:
            assert_usable(side)
        assert sum(len(side) for side in points) > 10


@pytest.mark.parametrize('mode', ['consecutive', 'stereo_tracks'])
def test_the_mask_topics_latest_mask_applies(node_process, harness, photo_views, mode):
    node = node_process(**NODE, **MODES[mode], use_mask_topic=True)
    feed = Feed(harness, node, MODES[mode], photo_views)
    mask_topics = ['/left/mask', '/right/mask'] if feed.stereo else ['/mask']
    harness.wait_for_subscribers(feed.topics + mask_topics, process=node)
    for topic in mask_topics:
        harness.publish(topic, mono8(half_mask(), START))
    wait_diagnostic(harness, 'masks_received', str(len(mask_topics)))
    for points in feed.outputs_of(4):
        for side in points:
            assert_usable(side)


def test_a_wrong_size_mask_is_counted_said_and_the_node_goes_on(node_process, harness,
                                                               photo_views):
    node = node_process(**NODE, mode='tracks', use_mask_topic=True)
    feed = Feed(harness, node, MODES['tracks'], photo_views)
    harness.wait_for_subscribers(['/image', '/mask'], process=node)
    harness.publish('/mask', mono8(half_mask(321, 240), START))
    wait_diagnostic(harness, 'masks_received', '1')
    feed.frame(0)
    wait_diagnostic(harness, 'drops.bad_mask', '1')
    node.wait_for_line('/image: bad_mask: mask is 321x240 but the image is 320x240')
    # A mask message that is not mono8 is refused and the previous mask stays.
    harness.publish('/mask', image_msg_from_array(np.zeros((240, 320, 3), np.uint8), 'bgr8',
                                                  make_header(START, 'camera')))
    wait_diagnostic(harness, 'masks_refused', '1')
    node.wait_for_line("/mask: bad_mask: a mask must be mono8 (nonzero = usable), got 'bgr8'")
    harness.publish('/mask', mono8(half_mask(), START))
    wait_diagnostic(harness, 'masks_received', '2')
    feed.frame(1)
    assert not len(feed.output()[0])  # the tracker's first frame: no features yet
    feed.frame(2)
    assert_usable(feed.output()[0])
    node.raise_if_exited()


def test_a_wrong_size_mask_file_drops_every_frame_counted(node_process, harness, photo_views,
                                                          tmp_path):
    path = tmp_path / 'mask.png'
    cv2.imwrite(str(path), half_mask(320, 200))
    node = node_process(**NODE, mode='stereo', mask=str(path))
    feed = Feed(harness, node, MODES['stereo'], photo_views)
    harness.wait_for_subscribers(feed.topics, process=node)
    feed.frame(0)
    wait_diagnostic(harness, 'drops.bad_mask', '1')
    feed.frame(1)
    wait_diagnostic(harness, 'drops.bad_mask', '2')
    node.wait_for_line('/left/image: bad_mask: mask is 320x200 but the image is 320x240')
    node.raise_if_exited()


# -- acceptance 5: bad input and stamps going backwards in tracks mode -----------------------

def test_bad_input_in_tracks_mode_is_counted_and_the_tracks_go_on(node_process, harness,
                                                                  photo_views):
    node = node_process(**NODE, mode='tracks')
    tracks = Collector(harness, TRACKS, FeatureTracks)
    harness.wait_for_subscribers(['/image'], process=node)
    stamp = START
    views = iter(photo_views)

    def good_frame(count):
        nonlocal stamp
        stamp += 50 * MS
        harness.publish('/image', mono8(next(views), stamp))
        return tracks.wait(count)[-1]

    good_frame(1)
    previous = good_frame(2)
    bad = {
        'bad_image': image_msg_from_array(np.zeros((240, 320), np.uint8), 'mono8',
                                          make_header(0, 'camera')),
        'bad_image_nan': image_msg_from_array(np.full((240, 320), np.nan, np.float32), '32FC1',
                                              make_header(0, 'camera')),
    }
    bad['bad_image'].encoding = 'yuv_weird'
    drops = 0
    for count, (name, msg) in enumerate(bad.items(), 3):
        stamp += 50 * MS
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 10**9)
        harness.publish('/image', msg)
        drops += 1
        wait_diagnostic(harness, 'drops.bad_image', str(drops))
        following = good_frame(count)
        # The tracks go on past the refused image: same ids, one frame longer (those born in
        # the second frame: the first has none).
        ids, _, _, _, lengths = tracks_arrays(following)
        previous_ids = tracks_arrays(previous)[0]
        assert not following.reset and len(np.intersect1d(ids, previous_ids)) > 10, name
        assert lengths.max() == count - 1, name
        previous = following
    # A repeated stamp is dropped as in consecutive mode.
    harness.publish('/image', mono8(photo_views[0], stamp))
    wait_diagnostic(harness, 'drops.duplicate', '1')
    assert stamp_to_ns(tracks.msgs[-1].header.stamp) == stamp


def test_stamps_going_backwards_reset_the_tracks_with_new_ids(node_process, harness,
                                                              photo_views):
    node = node_process(**NODE, mode='tracks', **{'tracks.stereo': True})
    tracks = Collector(harness, TRACKS, FeatureTracks)
    harness.wait_for_subscribers(['/left/image', '/right/image'], process=node)
    seen = set()
    count = 0
    for start in (START, START - 10**9, START - 2 * 10**9):  # the source restarts twice
        for index in range(3):
            count += 1
            harness.publish_pair(['/left/image', '/right/image'],
                                 [mono8(photo_views[index], 0, 'left'),
                                  mono8(photo_views[index + 1], 0, 'right')],
                                 start + index * 50 * MS)
            msg = tracks.wait(count)[-1]
            ids, _, _, _, lengths = tracks_arrays(msg)
            if index == 0:
                # A new start: every track ends, and new ones start with the next frame.
                assert len(ids) == 0 and msg.reset == (start != START)
            elif index == 1:
                # Every track is new, and no id comes back.
                assert (lengths == 1).all() and len(ids) and not seen & set(ids.tolist())
                assert not msg.reset
            else:
                assert not msg.reset and lengths.max() == index
            seen |= set(ids.tolist())
    wait_diagnostic(harness, 'stamp_resets', '2')


def test_stereo_tracks_name_the_refused_image_and_drop_its_partner(node_process, harness,
                                                                   photo_views):
    node = node_process(**NODE, mode='tracks', **{'tracks.stereo': True})
    tracks = Collector(harness, TRACKS, FeatureTracks)
    topics = ['/left/image', '/right/image']
    harness.wait_for_subscribers(topics, process=node)
    for index in range(2):  # the first frame starts no features, the second does
        harness.publish_pair(topics, [mono8(photo_views[index], 0),
                                      mono8(photo_views[index + 1], 0)], START + index * 50 * MS)
        tracks.wait(index + 1)
    nan = image_msg_from_array(np.full((240, 320), np.nan, np.float32), '32FC1',
                               make_header(0, 'camera'))
    harness.publish_pair(topics, [mono8(photo_views[2], 0), nan], START + 100 * MS)
    wait_diagnostic(harness, 'drops.partner_refused', '1')
    assert harness.latest_diagnostics()['drops.bad_image'] == '1'
    node.wait_for_line('/right/image: bad_image: ')
    harness.publish_pair(topics, [mono8(photo_views[2], 0), mono8(photo_views[3], 0)],
                         START + 150 * MS)
    following = tracks.wait(3)[-1]
    assert not following.reset and tracks_arrays(following)[4].max() == 2
    # Diagnostics of the tracks.
    wait_diagnostic(harness, 'tracks_lost', str(following.num_lost))
    values = harness.latest_diagnostics()
    assert int(values['tracks_tracked']) == len(following.ids) - following.num_new
    assert float(values['track_length_p90']) >= float(values['track_length_p50']) >= 1
