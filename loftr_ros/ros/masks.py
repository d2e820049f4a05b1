"""The matcher node's masks (nonzero = usable; every mode): the static one of the ``mask``
parameter (a PNG of the robot's own body in view), given to the matching process once, and with
``use_mask_topic`` the latest mask of each camera's mask topic (``mask`` beside ``image``,
``left/mask`` and ``right/mask`` in stereo; sensor_msgs/Image mono8, as Isaac ROS Visual SLAM's
``seg_mask``), sent with each of that camera's frames.

A mask message that is not mono8 or not a valid image is refused (said on its topic, counted in
``masks_refused``) and the previous mask stays in force. A mask whose size is not the image's
drops the frame (``drops.bad_mask``, said on the image topic, naming both sizes): matching it
without the mask could put features on the robot's body.
"""
import threading
from typing import Dict, Optional

import numpy as np
from sensor_msgs.msg import Image

from loftr_ros.core.errors import ImageError
from loftr_ros.core.image_conversion import image_from_msg
from loftr_ros.core.masks import load_mask

# Where refused mask messages are counted in the diagnostics.
REFUSED_CAUSE = 'bad_mask'


def static_mask(path: str) -> Optional[np.ndarray]:
    """The ``mask`` parameter's mask (HxW uint8, 1 = usable), None for ''; ConfigError when the
    file cannot be read."""
    return load_mask(path).astype(np.uint8) if path else None


class MaskTopics:
    """The latest mask of each camera's mask topic (see the module docstring).

    bases: side -> the camera's image topic base ('image', 'left/image', ...);
    max_pixels(): the largest mask accepted (the matcher's max_image_pixels in force).
    Subscribed between `subscribe` and `unsubscribe`, as the image topics.
    """

    def __init__(self, node, bases: Dict[int, str], qos, warnings, max_pixels):
        self._node = node
        self._qos = qos
        self._warnings = warnings
        self._max_pixels = max_pixels
        self._lock = threading.Lock()
        self._latest: Dict[int, np.ndarray] = {}
        self._subscriptions = []
        self.received = 0
        self.refused = 0
        # 'image' -> 'mask', 'left/image' -> 'left/mask'
        self.topics = {side: node.resolve_topic_name(base[:-len('image')] + 'mask')
                       for side, base in bases.items()}

    def subscribe(self):
        for side, topic in self.topics.items():
            self._subscriptions.append(self._node.create_subscription(
                Image, topic, lambda msg, side=side, topic=topic: self._on_mask(msg, side, topic),
                self._qos))

    def unsubscribe(self):
        for subscription in self._subscriptions:
            self._node.destroy_subscription(subscription)
        self._subscriptions.clear()

    def latest(self, side: int) -> Optional[np.ndarray]:
        """The side's latest mask (HxW uint8), None before the first one."""
        with self._lock:
            return self._latest.get(side)

    def _on_mask(self, msg, side: int, topic: str):
        try:
            if msg.encoding != 'mono8':
                raise ImageError(f'a mask must be mono8 (nonzero = usable), got {msg.encoding!r}')
            # A copy: the message's buffer is not kept.
            mask = np.array(image_from_msg(msg, self._max_pixels()))
        except ImageError as error:
            with self._lock:
                self.refused += 1
            kept = 'the previous mask is kept' if self.latest(side) is not None else 'no mask yet'
            self._warnings.warn(topic, REFUSED_CAUSE, f'{error}; {kept}')
            return
        with self._lock:
            self.received += 1
            self._latest[side] = mask

    def diagnostics(self) -> Dict[str, str]:
        with self._lock:
            return {'masks_received': str(self.received), 'masks_refused': str(self.refused)}
