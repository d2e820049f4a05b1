"""MatchResult <-> loftr_ros/msg/Matches, NumPy <-> sensor_msgs/Image, and a tracked frame ->
loftr_ros/msg/FeatureTracks and VINS-Fusion's sensor_msgs/PointCloud, for rclpy messages.

Array fields are filled from the NumPy buffers in one copy and read back with
``np.frombuffer``: no Python object per element, so 10,000 matches cost microseconds.
"""
import array
from typing import Optional

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point32
from sensor_msgs.msg import ChannelFloat32, Image, PointCloud
from std_msgs.msg import Header

from loftr_ros.core.image_conversion import image_to_msg_fields
from loftr_ros.core.stamps import duration_sec_nanosec, sec_nanosec
from loftr_ros.core.tracking.output import VINS_CHANNELS, feature_tracks_arrays, vins_features
from loftr_ros.core.tracking.frame import TrackedFrame
from loftr_ros.core.types import MatchResult
from loftr_ros.msg import FeatureTracks, Matches


def byte_array(data) -> array.array:
    """array('B') of any contiguous buffer in one copy (``array('B', x.tobytes())`` copies
    twice, which costs ~0.5 ms for a 640x480 colour image)."""
    out = array.array('B')
    out.frombytes(memoryview(data).cast('B'))
    return out


def _float32_field(values: np.ndarray) -> array.array:
    return array.array('f', np.ascontiguousarray(values, np.float32).tobytes())


def make_header(stamp_ns: int, frame_id: str = '') -> Header:
    header = Header(frame_id=frame_id)
    header.stamp.sec, header.stamp.nanosec = sec_nanosec(stamp_ns)
    return header


def duration_from_seconds(seconds: float) -> Duration:
    sec, nanosec = duration_sec_nanosec(seconds)
    return Duration(sec=sec, nanosec=nanosec)


def matches_msg_from_result(result: MatchResult, header, reference_header, model: str,
                            config_id: str, processing_seconds: float) -> Matches:
    """A Matches message for `result`; header is the current image's, reference_header the
    reference (previous frame/keyframe, or left) image's."""
    msg = Matches()
    msg.header = header
    msg.reference_header = reference_header
    msg.reference_width, msg.reference_height = (int(v) for v in result.image_size0)
    msg.current_width, msg.current_height = (int(v) for v in result.image_size1)
    msg.keypoints0 = _float32_field(result.keypoints0)
    msg.keypoints1 = _float32_field(result.keypoints1)
    msg.scores = _float32_field(result.scores)
    if result.inliers is not None:
        msg.inliers = byte_array(np.ascontiguousarray(result.inliers, np.uint8))
    msg.geometry_model = result.geometry_model
    msg.model = model
    msg.config_id = config_id
    msg.processing_time = duration_from_seconds(processing_seconds)
    return msg


def result_from_matches_msg(msg) -> MatchResult:
    """The MatchResult a Matches message carries (arrays are read-only views of the message)."""
    inliers = np.frombuffer(msg.inliers, np.uint8) if len(msg.inliers) else None
    return MatchResult(
        keypoints0=np.frombuffer(msg.keypoints0, np.float32).reshape(-1, 2),
        keypoints1=np.frombuffer(msg.keypoints1, np.float32).reshape(-1, 2),
        scores=np.frombuffer(msg.scores, np.float32),
        image_size0=(msg.reference_width, msg.reference_height),
        image_size1=(msg.current_width, msg.current_height),
        inliers=inliers,
        geometry_model=msg.geometry_model,
        timings={'total': msg.processing_time.sec + msg.processing_time.nanosec * 1e-9},
    )


def feature_tracks_msg(frame: TrackedFrame, header, right_header, model: str, config_id: str,
                       processing_seconds: float) -> FeatureTracks:
    """A FeatureTracks message for a tracked frame; right_header is None in mono."""
    msg = FeatureTracks()
    msg.header = header
    msg.stereo = frame.stereo
    if right_header is not None:
        msg.right_header = right_header
    msg.width, msg.height = (int(v) for v in frame.image_size)
    if frame.right_image_size is not None:
        msg.right_width, msg.right_height = (int(v) for v in frame.right_image_size)
    for name, values in feature_tracks_arrays(frame)._asdict().items():
        setattr(msg, name, values)
    msg.num_new, msg.num_lost, msg.reset = frame.num_new, frame.num_lost, frame.reset
    msg.model = model
    msg.config_id = config_id
    msg.processing_time = duration_from_seconds(processing_seconds)
    return msg


def vins_feature_msg(frame: TrackedFrame, header) -> Optional[PointCloud]:
    """VINS-Fusion's feature cloud of a tracked frame (see loftr_ros.core.tracking.output), or
    None without camera calibration."""
    features = vins_features(frame)
    if features is None:
        return None
    msg = PointCloud(header=header)
    msg.points = [Point32(x=float(x), y=float(y), z=float(z)) for x, y, z in features.points]
    msg.channels = [ChannelFloat32(name=name, values=values)
                    for name, values in zip(VINS_CHANNELS, features.channels)]
    return msg


def image_msg_from_array(image: np.ndarray, encoding: str, header=None) -> Image:
    """A sensor_msgs/Image holding `image` (already in the layout of `encoding`)."""
    fields = image_to_msg_fields(image, encoding)
    msg = Image()
    if header is not None:
        msg.header = header
    msg.encoding = fields['encoding']
    msg.height, msg.width, msg.step = fields['height'], fields['width'], fields['step']
    msg.is_bigendian = fields['is_bigendian']
    msg.data = byte_array(fields['data'])
    return msg
