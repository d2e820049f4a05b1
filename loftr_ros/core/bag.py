"""Image streams of rosbag2 (sqlite3, mcap) and ROS 1 bags, paired for matching.

Reading goes through ``rosbags.highlevel.AnyReader``; images (raw or compressed, detected per
topic from its message type) are converted by :mod:`loftr_ros.core.image_conversion`. Pairs
are built the way the node builds them: stereo by header stamp within a slop
(:class:`loftr_ros.core.sync.StereoSynchronizer`), or consecutive frames of one topic (every
k-th frame with ``step``).
"""
import sqlite3
import struct
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np

from loftr_ros.core.camera import CameraModel
from loftr_ros.core.errors import BagError, ConfigError, ImageError
from loftr_ros.core.image_conversion import image_from_compressed_msg, image_from_msg
from loftr_ros.core.stamps import stamp_to_ns
from loftr_ros.core.sync import LEFT, RIGHT, StereoSynchronizer

IMAGE_TYPES = ('sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage')
CAMERA_INFO_TYPE = 'sensor_msgs/msg/CameraInfo'


@dataclass(frozen=True)
class Frame:
    """One image of a topic: `index` counts the topic's messages from 0 in bag order.

    The image is decoded on first use of `image`: pairing reads only stamps and indices, so
    frames that no selected pair uses (before --first, unpaired, or only counted) cost no
    decoding."""

    topic: str
    index: int
    stamp_ns: int
    frame_id: str
    decode_image: Callable[[], np.ndarray] = field(repr=False, compare=False)

    @cached_property
    def image(self) -> np.ndarray:
        """The decoded image (ImageError naming the topic, index and cause when it cannot
        be)."""
        return self.decode_image()


@dataclass(frozen=True)
class FramePair:
    """A reference frame (0: left, or the earlier frame) and a current frame (1)."""

    frame0: Frame
    frame1: Frame


def _reader_errors():
    from rosbags.highlevel import AnyReaderError
    from rosbags.rosbag1 import ReaderError as Ros1ReaderError
    from rosbags.rosbag2 import ReaderError as Ros2ReaderError
    from rosbags.serde import SerdeError
    return (AnyReaderError, Ros1ReaderError, Ros2ReaderError, SerdeError, sqlite3.Error,
            struct.error, EOFError, OSError, ValueError, IndexError, KeyError)


def _decode_image(msg, compressed: bool, name: str, max_pixels: Optional[int],
                  max_compressed_bytes: Optional[int]) -> np.ndarray:
    try:
        image = (image_from_compressed_msg(msg, max_pixels, max_compressed_bytes) if compressed
                 else image_from_msg(msg, max_pixels))
    except ImageError as error:
        # The same class (ImageTooLargeError counts apart), named like the node's warnings.
        raise type(error)(f'{name}: {error.cause}: {error}') from None
    # A copy: the decoder's raw images are views of the bag reader's message buffer.
    return np.array(image)


class BagReader:
    """Context manager over one bag (a rosbag2 directory or file, or a ROS 1 ``.bag``).

    Images above `max_image_pixels` or `max_compressed_bytes` (the matcher configuration's
    limits; None: none) are refused before they are decoded, as the node refuses them."""

    def __init__(self, path, max_image_pixels: Optional[int] = None,
                 max_compressed_bytes: Optional[int] = None):
        self.path = Path(path)
        self.max_image_pixels = max_image_pixels
        self.max_compressed_bytes = max_compressed_bytes
        self._reader = None

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc_info):
        self.close()

    def open(self):
        from rosbags.highlevel import AnyReader
        if not self.path.exists():
            raise BagError(f'cannot read bag {self.path}: it does not exist')
        try:
            # AnyReader already reads the file type (and a directory's metadata.yaml) here.
            reader = AnyReader([self.path])
            reader.open()
        except _reader_errors() as error:
            msg = (f'cannot read bag {self.path} (not a bag, or corrupt or truncated: no '
                   f'message could be read): {error}')
            raise BagError(msg) from None
        self._reader = reader

    def close(self):
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    @property
    def topics(self) -> Dict[str, str]:
        """topic -> message type of every connection in the bag."""
        return {c.topic: c.msgtype for c in self._reader.connections}

    def require(self, topic: str, types: Sequence[str]) -> str:
        """The message type of `topic`; BagError listing the bag's topics when it is missing or
        of another type."""
        topics = self.topics
        if topic not in topics:
            listing = ', '.join(f'{name} ({kind})' for name, kind in sorted(topics.items()))
            raise BagError(f"topic '{topic}' not in bag {self.path}; it has: {listing}")
        if topics[topic] not in types:
            msg = f"topic '{topic}' is {topics[topic]}, expected one of {', '.join(types)}"
            raise BagError(msg)
        return topics[topic]

    def messages(self, topics: Sequence[str], start_s: Optional[float] = None,
                 end_s: Optional[float] = None) -> Iterator:
        """(topic, per-topic index in the whole bag, deserialized message) in bag order, for
        messages logged within [start_s, end_s] seconds from the bag's start; BagError naming
        the last good message when the bag is corrupt or truncated."""
        connections = [c for c in self._reader.connections if c.topic in topics]
        start = None if start_s is None else self._reader.start_time + int(start_s * 1e9)
        stop = None if end_s is None else self._reader.start_time + int(end_s * 1e9)
        counts = dict.fromkeys(topics, 0)
        read = 0
        iterator = self._reader.messages(connections=connections)
        while True:
            try:
                item = next(iterator, None)
                if item is None:
                    return
                connection, timestamp, raw = item
                if stop is not None and timestamp > stop:
                    return
                # Earlier messages are skipped undecoded but still counted, so that indices
                # are the same with and without a time window.
                wanted = start is None or timestamp >= start
                msg = self._reader.deserialize(raw, connection.msgtype) if wanted else None
            except _reader_errors() as error:
                last = f'message index {read - 1}' if read else 'none'
                msg = (f"bag {self.path} is corrupt or truncated after reading {read} message(s) "
                       f"of {', '.join(topics)}; last good: {last} (in bag order): {error}")
                raise BagError(msg) from None
            index = counts[connection.topic]
            counts[connection.topic] += 1
            read += 1
            if wanted:
                yield connection.topic, index, msg

    def frames(self, topics: Sequence[str], start_s: Optional[float] = None,
               end_s: Optional[float] = None) -> Iterator[Frame]:
        """Frames of image topics in bag order, within the time window (seconds from the bag's
        start, both ends inclusive); each image is decoded when first used."""
        kinds = {topic: self.require(topic, IMAGE_TYPES) for topic in topics}
        for topic, index, msg in self.messages(topics, start_s, end_s):
            compressed = kinds[topic].endswith('CompressedImage')
            yield Frame(topic, index, stamp_to_ns(msg.header.stamp), msg.header.frame_id,
                        partial(_decode_image, msg, compressed, f'{topic} message {index}',
                                self.max_image_pixels, self.max_compressed_bytes))

    def camera_model(self, topic: str) -> CameraModel:
        """The camera of the first sensor_msgs/CameraInfo on `topic`."""
        self.require(topic, (CAMERA_INFO_TYPE,))
        for _, _, msg in self.messages([topic]):
            try:
                # ROS 1 bags name the fields K and D.
                k, d = (msg.k, msg.d) if hasattr(msg, 'k') else (msg.K, msg.D)
                return CameraModel.from_camera_info(k, d, msg.width, msg.height,
                                                    msg.distortion_model)
            except ConfigError as error:
                raise BagError(f'{topic}: {error}') from None
        raise BagError(f"topic '{topic}' has no messages in bag {self.path}")


def in_range(index: int, first: Optional[int], last: Optional[int]) -> bool:
    return (first is None or index >= first) and (last is None or index <= last)


def stereo_pairs(reader: BagReader, left: str, right: str, slop_ns: int = 0,
                 first: Optional[int] = None, last: Optional[int] = None,
                 start_s: Optional[float] = None, end_s: Optional[float] = None,
                 synchronizer: Optional[StereoSynchronizer] = None) -> Iterator[FramePair]:
    """Left/right frames with header stamps within `slop_ns`, left frame index in
    [first, last]. Pass a synchronizer to read its drop counts afterwards.

    Every frame goes through the synchronizer and the range is applied to the pairs: filtering
    left frames first would leave their right partners unpaired and count them as drops."""
    synchronizer = synchronizer or StereoSynchronizer(slop_ns)
    for frame in reader.frames([left, right], start_s, end_s):
        side = LEFT if frame.topic == left else RIGHT
        for _, frame0, _, frame1 in synchronizer.add(side, frame.stamp_ns, frame):
            if in_range(frame0.index, first, last):
                yield FramePair(frame0, frame1)
            if last is not None and frame0.index >= last:
                return


def consecutive_pairs(reader: BagReader, topic: str, step: int = 1,
                      first: Optional[int] = None, last: Optional[int] = None,
                      start_s: Optional[float] = None, end_s: Optional[float] = None,
                      ) -> Iterator[FramePair]:
    """Frame i with frame i + step for every step-th frame i of `topic` in [first, last]."""
    if step < 1:
        raise ConfigError(f'step must be >= 1, got {step}')
    previous: List[Frame] = []
    for frame in reader.frames([topic], start_s, end_s):
        if last is not None and frame.index > last:
            return
        if not in_range(frame.index, first, last):
            continue
        if previous and frame.index - previous[-1].index < step:
            continue
        if previous:
            yield FramePair(previous[-1], frame)
        previous = [frame]
