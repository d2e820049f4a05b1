"""Bag images for the demo and the tests, as rclpy messages.

`bag_image_messages` replays the image topics of a rosbag2 directory (sqlite3 or mcap, read
with the rosbags library: no ROS storage plugins needed).
"""
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

from sensor_msgs.msg import CompressedImage, Image

from loftr_ros.core.bag import IMAGE_TYPES
from loftr_ros.core.errors import BagError
from loftr_ros.ros.conversions import byte_array


def rclpy_image_from_bag_message(msg):
    """An rclpy Image or CompressedImage with the header and data of a rosbags-deserialized
    one (data copied in one piece)."""
    out = CompressedImage() if hasattr(msg, 'format') else Image()
    out.header.stamp.sec = int(msg.header.stamp.sec)
    out.header.stamp.nanosec = int(msg.header.stamp.nanosec)
    out.header.frame_id = msg.header.frame_id
    if isinstance(out, CompressedImage):
        out.format = msg.format
    else:
        out.height, out.width, out.step = int(msg.height), int(msg.width), int(msg.step)
        out.encoding = msg.encoding
        out.is_bigendian = int(msg.is_bigendian)
    out.data = byte_array(msg.data)
    return out


def bag_image_topics(bag_dir) -> List[Tuple[str, str]]:
    """(topic, msgtype) of the image topics of a bag, sorted by topic."""
    from rosbags.highlevel import AnyReader, AnyReaderError
    if not Path(bag_dir).exists():
        msg = f'cannot read bag {bag_dir}: no such file or directory'
        raise BagError(msg)
    try:
        with AnyReader([Path(bag_dir)]) as reader:
            return sorted({(c.topic, c.msgtype) for c in reader.connections
                           if c.msgtype in IMAGE_TYPES})
    except (AnyReaderError, OSError) as error:
        # rosbags reports a directory without metadata.yaml as FileNotFoundError.
        msg = f'cannot read bag {bag_dir}: {error}'
        raise BagError(msg) from None


def bag_image_messages(bag_dir, topics: Optional[Sequence[str]] = None,
                       ) -> Iterator[Tuple[str, object]]:
    """(topic, rclpy image message) in bag order for the image topics (all when None)."""
    from rosbags.highlevel import AnyReader
    available = dict(bag_image_topics(bag_dir))
    wanted = list(available) if topics is None else list(topics)
    missing = [topic for topic in wanted if topic not in available]
    if missing:
        msg = (f"bag {bag_dir} has no image topic {', '.join(missing)}; image topics: "
               f"{', '.join(available) or '(none)'}")
        raise BagError(msg)
    with AnyReader([Path(bag_dir)]) as reader:
        connections = [c for c in reader.connections if c.topic in wanted]
        for connection, _, raw in reader.messages(connections=connections):
            message = reader.deserialize(raw, connection.msgtype)
            yield connection.topic, rclpy_image_from_bag_message(message)
