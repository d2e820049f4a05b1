"""The matcher node's ``~/overlay``: a picture of the matches for rviz, drawn only while someone
subscribes and at most ``overlay.max_rate`` times a second, so that it costs nothing otherwise."""
import time
from dataclasses import dataclass

from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from loftr_ros.core.settings import check_fields, setting
from loftr_ros.ros.conversions import image_msg_from_array

TOPIC = '~/overlay'


@dataclass(frozen=True)
class OverlaySettings:
    """The ``overlay.*`` parameters, declared here."""

    max_rate: float = setting(
        5.0, 'Overlay images per second at most (only drawn while ~/overlay has a subscriber); '
        '0 disables the overlay.', value_range=(0.0, 1000.0), runtime=True)
    max_lines: int = setting(
        300, 'Match lines drawn at most.', value_range=(1, 100_000), runtime=True)
    style: str = setting(
        'auto', 'side_by_side, flow (lines on the current image), or auto: flow in consecutive '
        'mode, side_by_side in stereo.', choices=('auto', 'side_by_side', 'flow'), runtime=True)

    def __post_init__(self):
        check_fields(self)


class OverlayPublisher:
    """Draws and publishes overlays of a node in `mode` ('consecutive', 'stereo' or 'tracks':
    trails coloured by id on the left image); `style` auto is flow in consecutive mode, side
    by side in stereo. `create_publisher`: the node's (a lifecycle node's publishes only while
    active)."""

    def __init__(self, mode: str, settings: OverlaySettings, create_publisher):
        self.mode = mode
        # Replaced as a whole when parameters change; read by the worker.
        self.settings = settings
        self.publisher = create_publisher(
            Image, TOPIC, QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE))
        self._last = 0.0

    @property
    def wanted(self) -> bool:
        """Whether overlays are enabled and someone subscribes to them."""
        return self.settings.max_rate > 0 and self.publisher.get_subscription_count() > 0

    def maybe_publish(self, result, reference_image, current_image, header) -> bool:
        """Draw and publish the overlay of `result` (stamped with `header`) unless nobody
        subscribes or the rate limit holds it back; True when it was published."""
        from loftr_ros.core.drawing import draw_flow, draw_matches
        settings = self.settings
        if not self._due():
            return False
        style = settings.style
        if style == 'auto':
            style = 'flow' if self.mode == 'consecutive' else 'side_by_side'
        if style == 'flow':
            image = draw_flow(current_image, result, max_lines=settings.max_lines)
        else:
            image = draw_matches(reference_image, current_image, result,
                                 max_lines=settings.max_lines)
        self.publisher.publish(image_msg_from_array(image, 'bgr8', header))
        return True

    def maybe_publish_tracks(self, image, trails, header) -> bool:
        """Draw and publish the feature tracks' trails (id -> positions, see
        loftr_ros.core.drawing.draw_tracks) on `image`, as maybe_publish does."""
        if not self._due():
            return False
        from loftr_ros.core.drawing import draw_tracks
        self.publisher.publish(image_msg_from_array(draw_tracks(image, trails), 'bgr8', header))
        return True

    def _due(self) -> bool:
        """Whether an overlay is to be drawn now (wanted and not held back by max_rate); the
        rate limit counts it as drawn."""
        if not self.wanted:
            return False
        now = time.monotonic()
        if now - self._last < 1.0 / self.settings.max_rate:
            return False
        self._last = now
        return True
