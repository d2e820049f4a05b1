"""Bag reading and pairing over every storage, raw and compressed images, and bad bags."""
import importlib.util
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from loftr_ros.core import bag, synthetic
from loftr_ros.core.bag import BagReader, consecutive_pairs, stereo_pairs
from loftr_ros.core.errors import BagError
from loftr_ros.core.stamps import stamp_to_ns
from loftr_ros.core.sync import StereoSynchronizer

# The bag writer the tool tests use (test/tools/conftest.py), loaded by path: one copy.
_spec = importlib.util.spec_from_file_location(
    'tools_conftest', Path(__file__).resolve().parents[1] / 'tools' / 'conftest.py')
bag_writing = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bag_writing)

LEFT, RIGHT = '/cam0/image_raw', '/cam1/image_raw'


@pytest.fixture(scope='module')
def stereo_views():
    camera = synthetic.default_camera(160, 120, focal=100.0)
    poses = synthetic.camera_path(6)
    left = synthetic.render_views(poses, camera)
    right = synthetic.render_views([synthetic.stereo_pair(p)[1] for p in poses], camera)
    return camera, left, right


def bag_path(tmp_path, storage):
    return tmp_path / ('stereo.bag' if storage == 'ros1' else 'stereo')


@pytest.mark.parametrize('compressed', [False, True], ids=['raw', 'compressed'])
@pytest.mark.parametrize('storage', ['sqlite3', 'mcap', 'ros1'])
def test_stereo_pairs_round_trip(tmp_path, stereo_views, storage, compressed):
    camera, left, right = stereo_views
    path = bag_writing.write_image_bag(bag_path(tmp_path, storage), {LEFT: left, RIGHT: right},
                                       storage, compressed, camera)
    with BagReader(path) as reader:
        pairs = list(stereo_pairs(reader, LEFT, RIGHT))
        model = reader.camera_model('/cam1/camera_info')
    assert [p.frame0.stamp_ns for p in pairs] == [v.stamp_ns for v in left]
    assert all(p.frame0.stamp_ns == p.frame1.stamp_ns for p in pairs)
    assert pairs[0].frame0.frame_id == 'cam0' and pairs[0].frame1.frame_id == 'cam1'
    for pair, view0, view1 in zip(pairs, left, right):
        np.testing.assert_array_equal(pair.frame0.image, view0.image)  # PNG is lossless
        np.testing.assert_array_equal(pair.frame1.image, view1.image)
    np.testing.assert_allclose(model.K, camera.K)
    assert model.size == camera.size


def test_pairing_modes_and_windows(tmp_path, stereo_views):
    camera, left, right = stereo_views
    # Right stamps 3 ms late: paired with a 5 ms slop, not with 1 ms.
    late = [synthetic.View(v.image, v.depth, v.camera, v.pose, v.stamp_ns + 3_000_000)
            for v in right]
    path = bag_writing.write_image_bag(tmp_path / 'bag', {LEFT: left, RIGHT: late}, 'mcap')
    with BagReader(path) as reader:
        assert len(list(stereo_pairs(reader, LEFT, RIGHT, slop_ns=5_000_000))) == 6
        assert list(stereo_pairs(reader, LEFT, RIGHT, slop_ns=1_000_000)) == []
        ranged = list(stereo_pairs(reader, LEFT, RIGHT, 5_000_000, first=2, last=3))
        assert [p.frame0.index for p in ranged] == [2, 3]
        every_second = [(p.frame0.index, p.frame1.index)
                        for p in consecutive_pairs(reader, LEFT, step=2)]
        assert every_second == [(0, 2), (2, 4)]
        # 50 ms per frame: a window from 0.1 s to 0.2 s holds frames 2, 3, 4.
        windowed = [(p.frame0.index, p.frame1.index)
                    for p in consecutive_pairs(reader, LEFT, start_s=0.1, end_s=0.2)]
        assert windowed == [(2, 3), (3, 4)]


def test_only_the_frames_of_selected_pairs_are_decoded(tmp_path, stereo_views, monkeypatch):
    _, left, right = stereo_views
    path = bag_writing.write_image_bag(tmp_path / 'bag', {LEFT: left, RIGHT: right}, 'mcap')
    decoded = []
    decode = bag.image_from_msg

    def recording_decode(msg, *limits):
        decoded.append((msg.header.frame_id, stamp_to_ns(msg.header.stamp)))
        return decode(msg, *limits)

    monkeypatch.setattr(bag, 'image_from_msg', recording_decode)
    with BagReader(path) as reader:
        # Counting pairs (as `eval` does for its progress bar) decodes nothing.
        assert len(list(stereo_pairs(reader, LEFT, RIGHT, first=4))) == 2
        assert decoded == []
        pairs = list(consecutive_pairs(reader, LEFT, first=3))
        images = [(pair.frame0.image, pair.frame1.image) for pair in pairs]
    # Frames before --first are not decoded; frame 4, in two pairs, is decoded once.
    assert decoded == [('cam0', view.stamp_ns) for view in left[3:]]
    np.testing.assert_array_equal(images[1][0], left[4].image)


def test_missing_topic_lists_the_bag_topics(tmp_path, stereo_views):
    _, left, _ = stereo_views
    path = bag_writing.write_image_bag(tmp_path / 'bag', {LEFT: left[:2]}, 'sqlite3')
    with BagReader(path) as reader:
        with pytest.raises(BagError, match=r"'/cam1/image_raw' not in bag .*it has: "
                                           r'/cam0/image_raw \(sensor_msgs/msg/Image\)'):
            list(stereo_pairs(reader, LEFT, RIGHT))


def test_corrupt_message_names_the_last_good_index(tmp_path, stereo_views):
    _, left, right = stereo_views
    path = bag_writing.write_image_bag(tmp_path / 'bag', {LEFT: left, RIGHT: right}, 'sqlite3')
    database = next(path.glob('*.db3'))
    with sqlite3.connect(database) as connection:
        connection.execute('UPDATE messages SET data = ? WHERE id = (SELECT id FROM messages '
                           'ORDER BY timestamp, id LIMIT 1 OFFSET 5)', (b'\x00\x01\x00\x00bad',))
    with BagReader(path) as reader:
        with pytest.raises(BagError, match=r'corrupt or truncated after reading 5 message\(s\)'
                                           r'.*last good: message index 4'):
            list(stereo_pairs(reader, LEFT, RIGHT))


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3', 'ros1'])
def test_truncated_bag_is_a_clear_error(tmp_path, stereo_views, storage):
    _, left, _ = stereo_views
    path = bag_writing.write_image_bag(bag_path(tmp_path, storage), {LEFT: left}, storage)
    data_file = path if storage == 'ros1' else next(
        f for f in path.iterdir() if f.suffix in ('.mcap', '.db3'))
    data = data_file.read_bytes()
    data_file.write_bytes(data[:len(data) // 2])
    with pytest.raises(BagError, match='corrupt or truncated'):
        with BagReader(path) as reader:
            list(consecutive_pairs(reader, LEFT))


def test_missing_bag_path(tmp_path):
    with pytest.raises(BagError, match='cannot read bag .*: it does not exist'):
        BagReader(tmp_path / 'nothing').open()


@pytest.mark.parametrize('name', ['directory', 'file.txt'])
def test_path_that_is_not_a_bag(tmp_path, name):
    # rosbags rejects these when the reader is built (FileNotFoundError for a directory without
    # metadata.yaml): still one BagError.
    path = tmp_path / name
    if name == 'directory':
        path.mkdir()
    else:
        path.write_text('not a bag')
    with pytest.raises(BagError, match=r'cannot read bag .* \(not a bag, or corrupt'):
        BagReader(path).open()


def test_euroc_bag_pairs(euroc_dir, euroc_stereo_frames):
    synchronizer = StereoSynchronizer(0, queue_size=10)
    with BagReader(euroc_dir / 'bag') as reader:
        pairs = list(stereo_pairs(reader, LEFT, RIGHT, first=10, last=12,
                                  synchronizer=synchronizer))
    # The right partners of left frames outside the range are not drops: every frame of this
    # hardware-synchronised bag has its partner.
    assert sum(synchronizer.drops.values()) == 0, synchronizer.drops
    assert [p.frame0.stamp_ns for p in pairs] == [f[0] for f in euroc_stereo_frames[10:13]]
    np.testing.assert_array_equal(pairs[0].frame1.image, euroc_stereo_frames[10][2])
