"""Bag images for the demo and the tests, as rclpy messages.

`bag_image_messages` replays the image topics of a bag (rosbag2 sqlite3 or mcap, or ROS 1),
read by :class:`loftr_ros.core.bag.BagReader` (rosbags: no ROS storage plugins needed; a corrupt
or truncated bag is one BagError).
"""
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from sensor_msgs.msg import CompressedImage, Image

from loftr_ros.core.bag import IMAGE_TYPES, BagReader
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


def _image_topics(reader: BagReader) -> Dict[str, str]:
    return {topic: kind for topic, kind in sorted(reader.topics.items()) if kind in IMAGE_TYPES}


def bag_image_topics(bag_dir) -> List[Tuple[str, str]]:
    """(topic, msgtype) of the image topics of a bag, sorted by topic."""
    with BagReader(bag_dir) as reader:
        return list(_image_topics(reader).items())


def bag_image_messages(bag_dir, topics: Optional[Sequence[str]] = None,
                       ) -> Iterator[Tuple[str, object]]:
    """(topic, rclpy image message) in bag order for the image topics (all when None)."""
    with BagReader(bag_dir) as reader:
        available = _image_topics(reader)
        wanted = list(available) if topics is None else list(topics)
        missing = [topic for topic in wanted if topic not in available]
        if missing:
            msg = (f"bag {bag_dir} has no image topic {', '.join(missing)}; image topics: "
                   f"{', '.join(available) or '(none)'}")
            raise BagError(msg)
        for topic, _, message in reader.messages(wanted):
            yield topic, rclpy_image_from_bag_message(message)
