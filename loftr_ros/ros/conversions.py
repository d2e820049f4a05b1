"""MatchResult <-> loftr_ros/msg/Matches and NumPy <-> sensor_msgs/Image for rclpy messages.

Array fields are filled from the NumPy buffers in one copy and read back with
``np.frombuffer``: no Python object per element, so 10,000 matches cost microseconds.
"""
import array

import numpy as np
from builtin_interfaces.msg import Duration
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from loftr_ros.core.image_conversion import image_to_msg_fields
from loftr_ros.core.stamps import duration_sec_nanosec, sec_nanosec
from loftr_ros.core.types import MatchResult
from loftr_ros.msg import Matches


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
