"""`loftr-ros record`: the Matches bag reads back with rclpy and rosbags, same type hash."""
import json
from pathlib import Path

import numpy as np
import pytest

from loftr_ros.cli import main
from loftr_ros.core.bag import Frame, FramePair
from loftr_ros.core.types import MatchResult
from loftr_ros.tools.record import (MATCHES_TYPE, definition_path, matches_message,
                                    package_typestore)


def test_type_hash_equals_the_built_interface():
    generated = Path(definition_path()).with_suffix('.json')
    description = json.loads(generated.read_text())
    built = next(h['hash_string'] for h in description['type_hashes']
                 if h['type_name'] == MATCHES_TYPE)
    assert package_typestore().hash_rihs01(MATCHES_TYPE) == built


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_recorded_matches_read_back_with_rclpy_and_rosbags(tmp_path, euroc_dir, storage):
    from rclpy.serialization import deserialize_message
    from rosbags.highlevel import AnyReader

    from loftr_ros.msg import Matches

    output = tmp_path / 'matches'
    rc = main(['record', str(euroc_dir / 'bag'), '--backend', 'opencv', '--first', '20',
               '--last', '21', '--overlay', '--storage', storage, '-o', str(output)])
    assert rc == 0
    typestore = package_typestore()
    with AnyReader([output]) as reader:
        topics = {c.topic: c for c in reader.connections}
        assert set(topics) == {'/matcher_node/matches', '/matcher_node/overlay'}
        assert topics['/matcher_node/matches'].digest == typestore.hash_rihs01(MATCHES_TYPE)
        raws = [raw for _, _, raw in reader.messages([topics['/matcher_node/matches']])]
        overlays = [reader.deserialize(raw, c.msgtype)
                    for c, _, raw in reader.messages([topics['/matcher_node/overlay']])]
        from_rosbags = [reader.deserialize(raw, MATCHES_TYPE) for raw in raws]
    assert len(raws) == 2 and len(overlays) == 2
    assert overlays[0].encoding == 'bgr8' and overlays[0].width == 2 * 752
    for raw, expected in zip(raws, from_rosbags):
        message = deserialize_message(raw, Matches)
        assert len(message.scores) > 50
        assert message.header.frame_id == 'cam1' and message.reference_header.frame_id == 'cam0'
        assert message.header.stamp.sec == expected.header.stamp.sec
        assert message.header.stamp.nanosec == expected.header.stamp.nanosec
        assert (message.current_width, message.current_height) == (752, 480)
        assert message.model == expected.model == 'opencv:sift'
        assert message.config_id == expected.config_id and len(message.config_id) == 8
        np.testing.assert_array_equal(np.asarray(message.keypoints0, np.float32),
                                      expected.keypoints0)
        np.testing.assert_array_equal(np.asarray(message.keypoints1, np.float32),
                                      expected.keypoints1)
        np.testing.assert_array_equal(np.asarray(message.scores, np.float32), expected.scores)
        np.testing.assert_array_equal(np.asarray(message.inliers, np.uint8), expected.inliers)
        assert len(message.keypoints0) == 2 * len(message.scores)


def test_record_refuses_an_existing_output(tmp_path, euroc_dir, capsys):
    (tmp_path / 'exists').mkdir()
    rc = main(['record', str(euroc_dir / 'bag'), '--backend', 'opencv', '-o',
               str(tmp_path / 'exists')])
    assert rc == 2
    assert 'already exists' in capsys.readouterr().err


@pytest.mark.parametrize('seconds, fields', [(2.3, (2, 300_000_000)), (1.001, (1, 1_000_000)),
                                             (0.0, (0, 0))])
def test_processing_time_is_rounded_like_the_node(seconds, fields):
    # Truncating would give 2 s 299999999 ns and 1 s 999999 ns (the float is a hair below).
    frame0 = Frame('/cam0/image_raw', 0, 1_403_715_273_262_142_976, 'cam0', decode_image=None)
    frame1 = Frame('/cam1/image_raw', 0, 1_403_715_273_262_142_976, 'cam1', decode_image=None)
    empty = np.zeros((0, 2), np.float32)
    result = MatchResult(empty, empty, np.zeros(0, np.float32), (752, 480), (752, 480),
                         timings={'total': seconds})
    message = matches_message(package_typestore().types, FramePair(frame0, frame1), result,
                              'opencv:sift', 'abcd1234')
    assert (message.processing_time.sec, message.processing_time.nanosec) == fields
    assert (message.header.stamp.sec, message.header.stamp.nanosec) == (1_403_715_273,
                                                                        262_142_976)
    assert message.reference_header.frame_id == 'cam0'


def test_record_skips_pairs_with_an_undecodable_image(tmp_path, sequence_views,
                                                      image_bag_writer, capsys):
    from rosbags.highlevel import AnyReader

    bag = image_bag_writer(tmp_path / 'bag', {'/cam0/image_raw': sequence_views},
                           compressed=True, corrupt_frames=(5,))
    output = tmp_path / 'matches'
    rc = main(['record', str(bag), '--mode', 'consecutive', '--topic', '/cam0/image_raw',
               '--backend', 'opencv', '-o', str(output)])
    assert rc == 0
    captured = capsys.readouterr()
    assert 'wrote 5 Matches messages' in captured.out
    assert '2 pair(s) skipped (bad_image 2)' in captured.out
    assert captured.err.count('warning: pair skipped: /cam0/image_raw') == 2
    with AnyReader([output]) as reader:
        assert sum(1 for _ in reader.messages()) == 5


def test_recorded_tracks_read_back_with_rclpy(tmp_path, euroc_dir):
    from rclpy.serialization import deserialize_message
    from rosbags.highlevel import AnyReader
    from sensor_msgs.msg import PointCloud

    from loftr_ros.msg import FeatureTracks
    from loftr_ros.tools.record import TRACKS_TYPE

    output = tmp_path / 'tracks'
    rc = main(['record', str(euroc_dir / 'bag'), '--mode', 'tracks', '--backend', 'opencv',
               '--calibration', str(euroc_dir / 'calibration.yaml'), '--first', '20',
               '--last', '23', '-o', str(output)])
    assert rc == 0
    with AnyReader([output]) as reader:
        topics = {c.topic: c for c in reader.connections}
        assert topics['/matcher_node/tracks'].digest == package_typestore().hash_rihs01(
            TRACKS_TYPE)
        tracks = [deserialize_message(raw, FeatureTracks) for _, _, raw in
                  reader.messages([topics['/matcher_node/tracks']])]
        clouds = [deserialize_message(raw, PointCloud) for _, _, raw in
                  reader.messages([topics['/matcher_node/feature']])]
    # The first frame starts no features (nothing checks new ones there) and has no cloud.
    assert len(tracks) == 4 and len(clouds) == 3 and len(tracks[0].ids) == 0
    assert [msg.header for msg in clouds] == [msg.header for msg in tracks[1:]]
    assert all(msg.stereo and len(msg.ids) > 50 for msg in tracks[1:])
    # Ids persist: most of the first features are still tracked two frames later.
    assert len(set(tracks[1].ids) & set(tracks[3].ids)) > 0.5 * len(tracks[1].ids)
    assert max(tracks[3].track_lengths) == 3
    cloud = clouds[2]
    assert [channel.name for channel in cloud.channels][:2] == ['id', 'camera_id']
    # One point per left observation and per right one found.
    assert len(cloud.points) == len(tracks[3].ids) + int(np.sum(tracks[3].right_valid))


def test_record_tracks_take_the_node_parameter_files_tracks_section(tmp_path, sequence_bag):
    """The node's parameter file (tracks.* and matcher.* under ros__parameters) sets the
    recorded tracker as it sets the node's."""
    import yaml
    from rclpy.serialization import deserialize_message
    from rosbags.highlevel import AnyReader

    from loftr_ros.msg import FeatureTracks

    config = tmp_path / 'tracker.yaml'
    config.write_text(yaml.safe_dump({'/**': {'ros__parameters': {
        'mode': 'tracks', 'tracks': {'max_features': 12, 'stereo': False},
        'matcher': {'backend': 'opencv'}}}}))
    output = tmp_path / 'tracks'
    rc = main(['record', str(sequence_bag), '--mode', 'tracks', '--config', str(config),
               '--last', '3', '-o', str(output)])
    assert rc == 0
    with AnyReader([output]) as reader:
        connection, = [c for c in reader.connections if c.topic == '/matcher_node/tracks']
        counts = [len(deserialize_message(raw, FeatureTracks).ids)
                  for _, _, raw in reader.messages([connection])]
    assert len(counts) == 4 and 0 < max(counts) <= 12
