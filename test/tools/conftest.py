"""Bags written by the tests themselves: synthetic views along a known trajectory."""
import cv2
import numpy as np
import pytest

from loftr_ros.core import synthetic
from loftr_ros.core.image_conversion import image_to_msg_fields


def write_image_bag(path, streams, storage='sqlite3', compressed=False, camera=None,
                    corrupt_frames=(), frame_data=None):
    """Write {topic: [View, ...]} (and a camera_info per image topic when `camera` is given)
    into a rosbag2 (storage 'sqlite3' or 'mcap') or ROS 1 ('ros1') bag. Returns the path.
    With `compressed`, the frames whose index is in `corrupt_frames` get bytes that are no
    image, and those in `frame_data` ({index: bytes}) the bytes given."""
    from rosbags.typesys import Stores, get_typestore
    typestore = get_typestore(Stores.ROS1_NOETIC if storage == 'ros1' else Stores.LATEST)
    types = typestore.types
    Header, Time = types['std_msgs/msg/Header'], types['builtin_interfaces/msg/Time']
    image_type = 'sensor_msgs/msg/CompressedImage' if compressed else 'sensor_msgs/msg/Image'
    if storage == 'ros1':
        from rosbags.rosbag1 import Writer
        writer = Writer(path)
        serialize = typestore.serialize_ros1
    else:
        from rosbags.rosbag2 import StoragePlugin, Writer
        plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
        writer = Writer(path, version=9, storage_plugin=plugin)
        serialize = typestore.serialize_cdr

    def header(stamp_ns, frame_id):
        stamp = Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
        return Header(stamp=stamp, frame_id=frame_id) if storage != 'ros1' else Header(
            seq=0, stamp=stamp, frame_id=frame_id)

    messages = []
    with writer:
        for topic, views in streams.items():
            frame_id = topic.strip('/').split('/')[0]
            connection = writer.add_connection(topic, image_type, typestore=typestore)
            info = None
            if camera is not None:
                info = writer.add_connection(topic.rsplit('/', 1)[0] + '/camera_info',
                                             'sensor_msgs/msg/CameraInfo', typestore=typestore)
            for index, view in enumerate(views):
                if compressed:
                    data = np.frombuffer(cv2.imencode('.png', view.image)[1], np.uint8)
                    if index in corrupt_frames:
                        data = np.frombuffer(b'\x89PNG truncated', np.uint8)
                    if index in (frame_data or {}):
                        data = np.frombuffer(frame_data[index], np.uint8)
                    msg = types[image_type](header=header(view.stamp_ns, frame_id),
                                            format='bgr8; png compressed bgr8', data=data)
                else:
                    fields = image_to_msg_fields(view.image, 'bgr8')
                    msg = types[image_type](header=header(view.stamp_ns, frame_id), **fields)
                messages.append((view.stamp_ns, connection, serialize(msg, image_type)))
                if info is not None:
                    messages.append((view.stamp_ns, info, serialize(
                        camera_info(types, header(view.stamp_ns, frame_id), camera),
                        'sensor_msgs/msg/CameraInfo')))
        for stamp, connection, data in sorted(messages, key=lambda m: m[0]):
            writer.write(connection, stamp, data)
    return path


def camera_info(types, header, camera):
    width, height = camera.size
    roi = types['sensor_msgs/msg/RegionOfInterest'](x_offset=0, y_offset=0, height=0, width=0,
                                                     do_rectify=False)
    K = camera.K.ravel()
    P = np.concatenate([camera.K, np.zeros((3, 1))], axis=1).ravel()
    fields = dict(header=header, height=height, width=width, distortion_model='plumb_bob',
                  binning_x=0, binning_y=0, roi=roi)
    if 'D' in types['sensor_msgs/msg/CameraInfo'].__dataclass_fields__:  # ROS 1 names
        return types['sensor_msgs/msg/CameraInfo'](D=np.zeros(5), K=K, R=np.eye(3).ravel(),
                                                   P=P, **fields)
    return types['sensor_msgs/msg/CameraInfo'](d=np.zeros(5), k=K, r=np.eye(3).ravel(), p=P,
                                               **fields)


@pytest.fixture(scope='session')
def image_bag_writer():
    """:func:`write_image_bag`, for tests that write their own bags."""
    return write_image_bag


@pytest.fixture(scope='session')
def sequence_views():
    """Eight views (320x240) along the synthetic camera path, 10 Hz."""
    camera = synthetic.default_camera(320, 240, focal=250.0)
    return synthetic.render_views(synthetic.camera_path(8, step_m=0.6), camera, fps=10.0)


@pytest.fixture(scope='session')
def sequence_bag(tmp_path_factory, sequence_views):
    """A rosbag2 (sqlite3) with /cam0/image_raw and /cam0/camera_info of `sequence_views`
    (tests write the ground truth they need with test_evaluate.write_tum)."""
    directory = tmp_path_factory.mktemp('sequence')
    return write_image_bag(directory / 'bag', {'/cam0/image_raw': sequence_views},
                           camera=sequence_views[0].camera)
