"""Tracked frames -> FeatureTracks and VINS-Fusion's feature cloud (issue 11, acceptance 3 at the
conversion level): the cloud read back by a port of VINS-Fusion's parsing loop after
serialization holds the FeatureTracks' ids, cameras and pixels, z == 1, and the undistortion of
each pixel."""
import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import PointCloud

from loftr_ros.core.config import MatcherConfig
from loftr_ros.core.matcher import Matcher
from loftr_ros.core.tracking import Tracker, TrackerConfig
from loftr_ros.msg import FeatureTracks
from loftr_ros.ros.conversions import feature_tracks_msg, make_header, vins_feature_msg


@pytest.fixture(scope='module')
def euroc_tracks(euroc_stereo_frames, euroc_calibration):
    """Tracked frames of the first EuRoC stereo pairs (real distortion), with the calibration."""
    tracker = Tracker(Matcher(MatcherConfig(backend='opencv', warmup=False)),
                      TrackerConfig(max_features=150, min_distance=20.0))
    tracker.set_cameras(calibration=euroc_calibration)
    return [tracker.track(stamp, left, right) for stamp, left, right in euroc_stereo_frames[:3]]


def round_trip(msg):
    return deserialize_message(serialize_message(msg), type(msg))


def test_vins_feature_cloud_reads_back_as_the_feature_tracks(euroc_tracks, euroc_calibration,
                                                             vins_feature_callback):
    cameras = (euroc_calibration.camera0, euroc_calibration.camera1)
    for frame in euroc_tracks[1:]:
        header = make_header(frame.stamp_ns, 'cam0')
        tracks = round_trip(feature_tracks_msg(frame, header, make_header(frame.stamp_ns, 'cam1'),
                                               'opencv', 'abc', 0.01))
        cloud = round_trip(vins_feature_msg(frame, header))
        assert isinstance(cloud, PointCloud) and cloud.header.stamp == tracks.header.stamp
        parsed = vins_feature_callback(cloud)

        ids = np.frombuffer(tracks.ids, np.int64)
        pixels = [np.frombuffer(tracks.keypoints, np.float32).reshape(-1, 2),
                  np.frombuffer(tracks.right_keypoints, np.float32).reshape(-1, 2)]
        right_valid = np.frombuffer(tracks.right_valid, np.uint8).astype(bool)
        assert right_valid.sum() > 20 and sorted(parsed) == sorted(ids.tolist())
        observations = 0
        for row, feature_id in enumerate(ids.tolist()):
            seen = {camera_id: values for camera_id, values in parsed[feature_id]}
            assert sorted(seen) == ([0, 1] if right_valid[row] else [0])
            for camera_id, (x, y, z, u, v, _, _) in seen.items():
                np.testing.assert_array_equal([u, v], pixels[camera_id][row])
                undistorted = cameras[camera_id].normalize(np.array([[u, v]], np.float64))[0]
                np.testing.assert_allclose([x, y], undistorted, atol=1e-6)
                observations += 1
        assert observations == len(cloud.points) == len(ids) + right_valid.sum()


def test_vins_velocities_are_the_normalized_motion_per_second(euroc_tracks, vins_feature_callback):
    previous, frame = euroc_tracks[-2:]
    cloud = vins_feature_callback(vins_feature_msg(frame, make_header(frame.stamp_ns)))
    before = dict(zip(previous.ids.tolist(), previous.normalized))
    dt = (frame.stamp_ns - previous.stamp_ns) * 1e-9
    checked = 0
    for feature_id, normalized in zip(frame.ids.tolist(), frame.normalized):
        x, y, _, _, _, velocity_x, velocity_y = dict(cloud[feature_id])[0]
        expected = (normalized - before[feature_id]) / dt if feature_id in before else (0, 0)
        np.testing.assert_allclose([velocity_x, velocity_y], expected, rtol=1e-4, atol=1e-5)
        checked += feature_id in before
    assert checked > 20


def test_feature_tracks_arrays_round_trip(euroc_tracks):
    frame = euroc_tracks[-1]
    msg = round_trip(feature_tracks_msg(frame, make_header(frame.stamp_ns, 'cam0'),
                                        make_header(frame.stamp_ns, 'cam1'), 'opencv', 'abc',
                                        0.25))
    assert msg.stereo and (msg.width, msg.height, msg.right_width) == (752, 480, 752)
    np.testing.assert_array_equal(np.frombuffer(msg.ids, np.int64), frame.ids)
    np.testing.assert_array_equal(np.frombuffer(msg.keypoints, np.float32).reshape(-1, 2),
                                  frame.keypoints)
    np.testing.assert_array_equal(
        np.frombuffer(msg.right_keypoints, np.float32).reshape(-1, 2), frame.right_keypoints)
    np.testing.assert_array_equal(np.frombuffer(msg.track_lengths, np.uint32),
                                  frame.track_lengths)
    np.testing.assert_array_equal(np.frombuffer(msg.normalized, np.float64).reshape(-1, 2),
                                  frame.normalized)
    assert msg.num_new == frame.num_new and msg.processing_time.nanosec == 250_000_000
    assert isinstance(msg, FeatureTracks)


def test_no_vins_cloud_without_calibration(euroc_stereo_frames):
    stamp, left, right = euroc_stereo_frames[0]
    frame = Tracker(Matcher(MatcherConfig(backend='opencv', warmup=False))).track(stamp, left,
                                                                                  right)
    assert vins_feature_msg(frame, make_header(stamp)) is None
    msg = feature_tracks_msg(frame, make_header(stamp), make_header(stamp), 'opencv', '', 0.0)
    assert len(msg.normalized) == 0 and len(msg.ids) == len(frame)
