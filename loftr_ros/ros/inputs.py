"""The matcher node's inputs: image and camera_info subscriptions, conversion and stereo pairing.

The callbacks run on the executor's thread and only convert the image (a view of the message
buffer for most encodings), pair it (stereo) and hand the job to the worker
(loftr_ros.ros.worker). Every refused message is counted and said on its topic: a bad image as
a drop of its cause, a bad camera_info (or one whose size does not fit the images) once per
message under ``camera_info.<reason>`` (it is not an image frame), the frames it cannot serve
matched without it.
"""
import time
from collections import Counter
from typing import Dict, Iterable, List, Optional, Tuple

from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from loftr_ros.core.camera import CameraModel
from loftr_ros.core.errors import ConfigError, ImageError
from loftr_ros.core.image_conversion import image_from_compressed_msg, image_from_msg
from loftr_ros.core.stamps import stamp_to_ns
from loftr_ros.core.sync import LEFT, RIGHT, StereoSynchronizer
from loftr_ros.ros.diagnostics import Statistics, ThrottledWarnings
from loftr_ros.ros.masks import MaskTopics
from loftr_ros.ros.worker import Frame, MatchingWorker

# What each drop the stereo synchronizer counts means (loftr_ros.core.sync).
SYNC_DROPS = {'duplicate': 'stamp {} ns repeated',
              'no_partner': 'the other side moved past without a frame within stereo.slop',
              'queue_full': 'more than stereo.queue_size frames waiting for a partner'}


def input_qos(reliability: str, depth: int) -> QoSProfile:
    """The image subscriptions' QoS: `reliability` 'reliable' or 'best_effort' (sensor data's)."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=(ReliabilityPolicy.RELIABLE if reliability == 'reliable'
                                   else qos_profile_sensor_data.reliability),
                      durability=qos_profile_sensor_data.durability)


class ImageInputs:
    """The image (and camera_info) topics of a node in `mode`, subscribed between `subscribe`
    and `unsubscribe`; jobs go to `worker`. `limits()` gives the MatcherConfig in force (its
    input limits are read at every frame)."""

    def __init__(self, node, mode: str, parameter, stats: Statistics,
                 warnings: ThrottledWarnings, worker: MatchingWorker, limits):
        self._node = node
        self.mode = mode
        self._stats = stats
        self._warnings = warnings
        self._worker = worker
        self._limits = limits
        self._compressed = parameter('transport') == 'compressed'
        self._use_camera_info = parameter('use_camera_info')
        self._qos = input_qos(parameter('qos_reliability'), parameter('qos_depth'))
        self.sync = StereoSynchronizer(int(round(parameter('stereo.slop') * 1e9)),
                                       parameter('stereo.queue_size'))
        self._last_stamp: Dict[str, int] = {}
        self._cameras: Dict[int, CameraModel] = {}
        # side -> the camera model that did not fit its images (counted once) and why.
        self._misfit: Dict[int, Tuple[CameraModel, str]] = {}
        self._subscriptions: List = []
        # Stereo input: stereo mode, or tracks mode with tracks.stereo.
        self.paired = mode == 'stereo' or (mode == 'tracks' and parameter('tracks.stereo'))
        bases = {LEFT: 'left/image', RIGHT: 'right/image'} if self.paired else {0: 'image'}
        # Resolved first so that remapping the base name also moves '<base>/compressed'.
        self.topics = [node.resolve_topic_name(base) + ('/compressed' if self._compressed else '')
                       for base in bases.values()]
        # 'image' -> 'camera_info', 'left/image' -> 'left/camera_info'
        self.camera_info_topics = {
            side: node.resolve_topic_name(base[:-len('image')] + 'camera_info')
            for side, base in bases.items()} if self._use_camera_info else {}
        self.masks = (MaskTopics(node, bases, self._qos, warnings,
                                 lambda: self._limits().max_image_pixels)
                      if parameter('use_mask_topic') else None)

    @property
    def subscribed(self) -> bool:
        return bool(self._subscriptions)

    def subscribe(self):
        message_type = CompressedImage if self._compressed else Image
        for side, topic in enumerate(self.topics):
            self._subscriptions.append(self._node.create_subscription(
                message_type, topic,
                lambda msg, side=side, topic=topic: self._on_image(msg, side, topic), self._qos))
        for side, topic in self.camera_info_topics.items():
            self._subscriptions.append(self._node.create_subscription(
                CameraInfo, topic,
                lambda msg, side=side, topic=topic: self._on_camera_info(msg, side, topic),
                self._qos))
        if self.masks is not None:
            self.masks.subscribe()

    def unsubscribe(self):
        """Stop taking frames; stereo frames waiting for a partner are dropped (deactivated),
        and the next frame starts a new stream."""
        for subscription in self._subscriptions:
            self._node.destroy_subscription(subscription)
        self._subscriptions.clear()
        if self.masks is not None:
            self.masks.unsubscribe()
        self.sync.reset('deactivated')
        self._last_stamp.clear()

    def publishers(self) -> int:
        """Publishers matched on the image topics (all of them)."""
        return sum(self._node.count_publishers(topic) for topic in self.topics)

    # -- callbacks (the executor's thread: convert and hand over only) --------------------

    def _on_camera_info(self, msg, side, topic):
        try:
            camera = CameraModel.from_camera_info(msg.k, msg.d, msg.width, msg.height,
                                                  msg.distortion_model)
        except ConfigError as error:
            self._stats.count_camera_info('invalid')
            kept = 'the previous calibration is kept' if side in self._cameras else (
                'no calibration yet')
            self._warnings.warn(topic, 'bad_camera_info', f'{error}; {kept}')
            return
        self._cameras[side] = camera

    def _on_image(self, msg, side, topic):
        received = time.monotonic()
        self._stats.count('frames')
        config = self._limits()
        try:
            if isinstance(msg, CompressedImage):
                image = image_from_compressed_msg(msg, config.max_image_pixels,
                                                  config.max_compressed_bytes)
            else:
                image = image_from_msg(msg, config.max_image_pixels)
        except ImageError as error:
            self._stats.drop(error.cause)
            self._warnings.warn(topic, error.cause, f'{error}; frame skipped')
            return
        stamp_ns = stamp_to_ns(msg.header.stamp)
        frame = Frame(topic, msg.header, stamp_ns, image, received, self._camera_for(side, image),
                      self.masks.latest(side) if self.masks is not None else None)
        last = self._last_stamp.get(topic)
        self._last_stamp[topic] = stamp_ns
        if not self.paired:
            if last is not None and stamp_ns == last:
                self._stats.drop('duplicate')
                self._warnings.warn(topic, 'duplicate',
                                    f'stamp {stamp_ns} ns repeated; frame skipped')
                return
            if last is not None and stamp_ns < last:
                self._request_reset(topic, last, stamp_ns)
            self._worker.submit(frame)
            return
        resets, drops = self.sync.resets, Counter(self.sync.drops)
        pairs = self.sync.add(side, stamp_ns, frame)
        if self.sync.resets != resets:
            self._request_reset(topic, last, stamp_ns)
        # The synchronizer counts its own drops: each is said here like the node's, on the
        # topic of the frames dropped (no_partner: the other side's).
        for cause, number in (self.sync.drops - drops).items():
            if cause != 'stamp_reset':  # the reset has its own warning
                dropped = self.topics[1 - side] if cause == 'no_partner' else topic
                self._warnings.warn(dropped, cause, f'{SYNC_DROPS[cause].format(stamp_ns)}; '
                                                    f'{number} frame(s) skipped')
        for _, left, _, right in pairs:
            self._worker.submit((left, right))

    def _camera_for(self, side, image) -> Optional[CameraModel]:
        """The side's camera model if it describes images of this size; None when it does not
        (the camera_info counted once, said throttled)."""
        camera = self._cameras.get(side)
        if camera is None:
            return None
        mismatch = camera.size_mismatch((image.shape[1], image.shape[0]))
        if not mismatch:
            return camera
        if self._misfit.get(side, (None,))[0] is not camera:
            self._misfit[side] = (camera, mismatch)
            self._stats.count_camera_info('wrong_size')
        self._warnings.warn(self.camera_info_topics[side], 'bad_camera_info',
                            f'{mismatch} on the image topic; frames matched without it')
        return None

    def camera_problems(self, topics: Iterable[str]) -> str:
        """Why the frames of these camera_info topics have no camera model, in words."""
        misfits = {self.camera_info_topics[side]: why
                   for side, (camera, why) in self._misfit.items()
                   if self._cameras.get(side) is camera}
        unknown = sorted(topic for topic in topics if topic not in misfits)
        reasons = [f'{topic}: {misfits[topic]}' for topic in sorted(topics) if topic in misfits]
        if unknown:
            reasons.append(f"no valid camera_info on {', '.join(unknown)} yet")
        return '; '.join(reasons)

    def _request_reset(self, topic, last_ns, stamp_ns):
        self._stats.count('resets')
        self._warnings.warn(topic, 'stamp_reset',
                            f'stamp jumped backwards ({stamp_ns} ns after {last_ns} ns; source '
                            f'restarted?): matching state reset')
        self._worker.reset()
