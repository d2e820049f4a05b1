"""Bags written by the tests themselves: synthetic views along a known trajectory, and their
ground truth and calibration files."""
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import yaml

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
    (tests write the ground truth they need with `truth_files`)."""
    directory = tmp_path_factory.mktemp('sequence')
    return write_image_bag(directory / 'bag', {'/cam0/image_raw': sequence_views},
                           camera=sequence_views[0].camera)


def write_tum(path, views, order=None):
    """TUM ground truth of the views; `order` assigns pose order[i] to stamp i (shuffling)."""
    from scipy.spatial.transform import Rotation
    order = range(len(views)) if order is None else order
    lines = []
    for view, source in zip(views, order):
        T = views[source].pose.world_from_camera()
        values = [*T[:3, 3], *Rotation.from_matrix(T[:3, :3]).as_quat()]
        lines.append(f'{view.stamp_ns / 1e9:.9f} ' + ' '.join(f'{v:.9f}' for v in values))
    path.write_text('\n'.join(lines) + '\n')
    return path


# EuRoC's cam0 on its IMU (T_body_cam of the V1_01 calibration, camera-to-body).
EUROC_T_BODY_CAM = np.array([
    [0.0148655429818, -0.999880929698, 0.00414029679422, -0.0216401454975],
    [0.999557249008, 0.0149672133247, 0.025715529948, -0.064676986768],
    [-0.0257744366974, 0.00375618835797, 0.999660727178, 0.00981073058949],
    [0.0, 0.0, 0.0, 1.0]])


def write_euroc_ground_truth(path, views, T_body_cam):
    """EuRoC's state_groundtruth_estimate0/data.csv of the views: the body (IMU) poses of a
    camera mounted with T_body_cam."""
    from scipy.spatial.transform import Rotation
    lines = ['#timestamp, p_RS_R_x [m], p_RS_R_y [m], p_RS_R_z [m], q_RS_w [], q_RS_x [], '
             'q_RS_y [], q_RS_z []']
    for view in views:
        T = view.pose.world_from_camera() @ np.linalg.inv(T_body_cam)
        x, y, z, w = Rotation.from_matrix(T[:3, :3]).as_quat()
        lines.append(','.join([str(view.stamp_ns)] +
                              [f'{v:.12f}' for v in (*T[:3, 3], w, x, y, z)]))
    path.write_text('\n'.join(lines) + '\n')
    return path


def write_calibration(path, camera, T_body_cam):
    """A EuRoC/Kalibr calibration.yaml whose cam0 is `camera` mounted with T_body_cam, and cam1
    the same camera 11 cm to its right."""
    fx, fy, cx, cy = camera.K[0, 0], camera.K[1, 1], camera.K[0, 2], camera.K[1, 2]
    right = np.eye(4)
    right[0, 3] = 0.11
    document = {name: {'resolution': list(camera.size),
                       'intrinsics_fu_fv_cu_cv': [float(v) for v in (fx, fy, cx, cy)],
                       'distortion_coefficients': [0.0, 0.0, 0.0, 0.0],
                       'T_body_cam': [float(v) for v in np.ravel(T)]}
                for name, T in (('cam0', T_body_cam), ('cam1', T_body_cam @ right))}
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture(scope='session')
def truth_files():
    """Writers of a sequence's files: tum(path, views, order=None), euroc(path, views,
    T_body_cam), calibration(path, camera, T_body_cam), and T_body_cam, EuRoC's cam0 mounting."""
    return SimpleNamespace(tum=write_tum, euroc=write_euroc_ground_truth,
                           calibration=write_calibration, T_body_cam=EUROC_T_BODY_CAM)
