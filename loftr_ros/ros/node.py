"""matcher_node: live feature matching of consecutive frames or stereo pairs.

Processes and threads: the model runs in a process of its own (loftr_ros.core.matching_process;
this one never imports torch). Here, a single-threaded executor runs the subscription callbacks,
which only convert the image (a view of the message buffer for most encodings), pair it
(stereo) and hand the job to the worker (loftr_ros.ros.worker); its ONE thread takes the newest
job, has the matching process match it and publishes. A job still waiting when a newer one
arrives is superseded and counted, so latency and memory stay bounded when the input outruns the
model. The service waits for the worker without blocking the executor (a coroutine).
"""
import dataclasses
import time
from collections import Counter
from typing import Any, Dict, Optional

import rclpy
import rclpy.exceptions
import rclpy.logging
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from loftr_ros.core.camera import CameraModel
from loftr_ros.core.errors import ConfigError, ImageError, LoftrRosError
from loftr_ros.core.image_conversion import image_from_compressed_msg, image_from_msg
from loftr_ros.core.keyframe import KeyframePolicy
from loftr_ros.core.matching_process import MatchingProcess, error_in_words
from loftr_ros.core.stamps import stamp_to_ns
from loftr_ros.core.sync import LEFT, RIGHT, StereoSynchronizer
from loftr_ros.ros.conversions import matches_msg_from_result
from loftr_ros.ros.diagnostics import (DiagnosticsReport, Statistics, ThrottledWarnings,
                                       diagnostics_status_name)
from loftr_ros.ros.overlay import OverlayPublisher, OverlaySettings
from loftr_ros.ros.parameters import SPECS, declare_parameters, matcher_config_from_parameters
from loftr_ros.ros.shutdown_signals import ShutdownSignals
from loftr_ros.ros.worker import Frame, MatchingWorker
from loftr_ros.msg import Matches
from loftr_ros.srv import MatchImages

NODE_NAME = 'matcher_node'


# What each drop the stereo synchronizer counts means (loftr_ros.core.sync).
SYNC_DROPS = {'duplicate': 'stamp {} ns repeated',
              'no_partner': 'the other side moved past without a frame within stereo.slop',
              'queue_full': 'more than stereo.queue_size frames waiting for a partner'}


class MatcherNode(Node):

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        # First, so that destroy_node() works on a node whose construction failed below.
        self._matching: Optional[MatchingProcess] = None
        self._worker: Optional[MatchingWorker] = None
        self.worker_failed = False
        declare_parameters(self)
        self.mode = self._param('mode')
        self._check_choices()
        config = matcher_config_from_parameters(self)
        self.get_logger().info(f'loading {config.backend} matcher on {config.device}...')
        self._matching = MatchingProcess(config)
        self._stats = Statistics()
        self._warnings = ThrottledWarnings(self.get_logger())
        self._last_stamp: Dict[str, int] = {}
        self._cameras: Dict[int, CameraModel] = {}
        self._camera_info_topics: Dict[int, str] = {}
        # What the last Matches' geometry was and, when it is not the configured one, why.
        self.geometry_status = ''
        slop_ns = int(round(self._param('stereo.slop') * 1e9))
        self._sync = StereoSynchronizer(slop_ns, self._param('stereo.queue_size'))

        self._image_qos = self._input_qos()
        self._subscribe_inputs()
        self._matches_pub = self.create_publisher(Matches, '~/matches', 10)
        self._overlay = OverlayPublisher(self, self.mode, OverlaySettings(**{
            field.name: self._param(f'overlay.{field.name}')
            for field in dataclasses.fields(OverlaySettings)}))
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._diagnostics = DiagnosticsReport(
            self._stats, diagnostics_status_name(self.get_fully_qualified_name()))
        self._worker = MatchingWorker(
            self._matching, self._stats, self._warnings, self._publish, self.context.ok,
            self._on_worker_failure, self._wake_executor,
            KeyframePolicy(self._param('keyframe.min_matches'),
                           self._param('keyframe.min_overlap')),
            every_frame=self._param('consecutive.reference') == 'previous')
        self.create_service(MatchImages, '~/match_images', self._on_match_images)
        self.create_timer(self._param('diagnostics.period'), self._publish_diagnostics)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.get_logger().info(
            f'ready: mode {self.mode}, model {self._matching.model_name} on '
            f'{self._matching.device}, inputs {", ".join(self._input_topics)} '
            f'({self._param("transport")}, {self._param("qos_reliability")})')

    # -- read-only views (for tests and tools) ------------------------------------------

    @property
    def matcher(self) -> MatchingProcess:
        """The node's matcher (in its own process); its `config` holds the matcher settings
        in force, `model_name` and `device` what runs them."""
        return self._matching

    @property
    def reference(self) -> Optional[Frame]:
        """Consecutive mode: the frame new frames are matched against (None before the
        first one or after a reset)."""
        return self._worker.reference

    @property
    def overlay_subscribers(self) -> int:
        """How many subscriptions ~/overlay has (it is only drawn while there are any)."""
        return self._overlay.publisher.get_subscription_count()

    # -- setup ---------------------------------------------------------------------------

    def _param(self, name):
        return self.get_parameter(name).value

    def _check_choices(self):
        for spec in SPECS.values():
            reason = spec.check(self._param(spec.name))
            if reason:
                raise ConfigError(reason)

    def _input_qos(self) -> QoSProfile:
        reliability = (ReliabilityPolicy.RELIABLE if self._param('qos_reliability') == 'reliable'
                       else qos_profile_sensor_data.reliability)
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self._param('qos_depth'),
                          reliability=reliability,
                          durability=qos_profile_sensor_data.durability)

    def _subscribe_inputs(self):
        compressed = self._param('transport') == 'compressed'
        bases = {0: 'image'} if self.mode == 'consecutive' else {LEFT: 'left/image',
                                                                  RIGHT: 'right/image'}
        self._input_topics = []
        for side, base in bases.items():
            # Resolved first so that remapping the base name also moves '<base>/compressed'.
            topic = self.resolve_topic_name(base)
            if compressed:
                topic += '/compressed'
            self._input_topics.append(topic)
            self.create_subscription(
                CompressedImage if compressed else Image, topic,
                lambda msg, side=side, topic=topic: self._on_image(msg, side, topic),
                self._image_qos)
            if self._param('use_camera_info'):
                # 'image' -> 'camera_info', 'left/image' -> 'left/camera_info'
                info_topic = self.resolve_topic_name(base[:-len('image')] + 'camera_info')
                self._camera_info_topics[side] = info_topic
                self.create_subscription(
                    CameraInfo, info_topic,
                    lambda msg, side=side, topic=info_topic: self._on_camera_info(msg, side,
                                                                                  topic),
                    self._image_qos)

    # -- input callbacks (the executor's thread: convert and hand over only) --------------

    def _on_camera_info(self, msg, side, topic):
        try:
            self._cameras[side] = CameraModel.from_camera_info(
                msg.k, msg.d, msg.width, msg.height, msg.distortion_model)
        except ConfigError as error:
            self._stats.drop('bad_camera_info')
            kept = 'the previous calibration is kept' if side in self._cameras else (
                'no calibration yet')
            self._warnings.warn(topic, 'bad_camera_info', f'{error}; {kept}')

    def _on_image(self, msg, side, topic):
        received = time.monotonic()
        self._stats.count('frames')
        config = self._matching.config
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
        frame = Frame(topic, msg.header, stamp_ns, image, received, self._camera_for(side, image))
        last = self._last_stamp.get(topic)
        self._last_stamp[topic] = stamp_ns
        if self.mode == 'consecutive':
            if last is not None and stamp_ns == last:
                self._stats.drop('duplicate')
                self._warnings.warn(topic, 'duplicate',
                                    f'stamp {stamp_ns} ns repeated; frame skipped')
                return
            if last is not None and stamp_ns < last:
                self._request_reset(topic, last, stamp_ns)
            self._worker.submit(frame)
            return
        resets, drops = self._sync.resets, Counter(self._sync.drops)
        pairs = self._sync.add(side, stamp_ns, frame)
        if self._sync.resets != resets:
            self._request_reset(topic, last, stamp_ns)
        # The synchronizer counts its own drops: each is said here like the node's, on the
        # topic of the frames dropped (no_partner: the other side's).
        for cause, number in (self._sync.drops - drops).items():
            if cause != 'stamp_reset':  # the reset has its own warning
                dropped = self._input_topics[1 - side] if cause == 'no_partner' else topic
                self._warnings.warn(dropped, cause, f'{SYNC_DROPS[cause].format(stamp_ns)}; '
                                                    f'{number} frame(s) skipped')
        for _, left, _, right in pairs:
            self._worker.submit((left, right))

    def _camera_for(self, side, image) -> Optional[CameraModel]:
        """The side's camera model if it describes images of this size; None (counted and
        said) when it does not."""
        camera = self._cameras.get(side)
        if camera is None:
            return None
        mismatch = camera.size_mismatch((image.shape[1], image.shape[0]))
        if mismatch:
            self._stats.drop('bad_camera_info')
            self._warnings.warn(self._camera_info_topics[side], 'bad_camera_info',
                                f'{mismatch} on the image topic; frame matched without it')
            return None
        return camera

    def _request_reset(self, topic, last_ns, stamp_ns):
        self._stats.count('resets')
        self._warnings.warn(topic, 'stamp_reset',
                            f'stamp jumped backwards ({stamp_ns} ns after {last_ns} ns; source '
                            f'restarted?): matching state reset')
        self._worker.reset()

    # -- worker (its thread) --------------------------------------------------------------

    def _note_geometry(self, result, reference: Frame, current: Frame):
        """Keep geometry_status and say once (throttled) why essential was not used."""
        if self._matching.config.geometry != 'essential' or result.geometry_model != (
                'fundamental'):
            self.geometry_status = result.geometry_model
            return
        if not self._param('use_camera_info'):
            why = 'use_camera_info is false'
        else:
            topics = list(self._camera_info_topics.values())  # left and right
            if len(topics) == 1:  # consecutive: both frames from the one camera
                topics *= 2
            missing = {topic for topic, frame in zip(topics, (reference, current))
                       if frame.camera is None}
            why = f"no valid camera_info on {', '.join(sorted(missing))} yet"
        self.geometry_status = f'fundamental: essential needs both cameras, {why}'
        self._warnings.warn(current.topic, 'no_camera_model',
                            f'Matches verified with the fundamental matrix: essential needs '
                            f'both cameras, {why}')

    def _publish(self, result, reference: Frame, current: Frame):
        self._note_geometry(result, reference, current)
        processing = time.monotonic() - current.received
        msg = matches_msg_from_result(result, current.header, reference.header,
                                      self._matching.model_name,
                                      self._matching.config.config_id, processing)
        self._matches_pub.publish(msg)
        latency = (self.get_clock().now().nanoseconds - current.stamp_ns) * 1e-9
        self._stats.published(latency, processing, result.timings.get('total', float('nan')),
                              len(result))
        if self._overlay.maybe_publish(result, reference.image, current.image, current.header):
            self._stats.count('overlays')

    def _on_worker_failure(self, text: str):
        """The matching process could not be restarted: stop the node loudly instead of
        running on without a model."""
        self.get_logger().fatal(f'matcher worker failed:\n{text}')
        self.worker_failed = True
        self.context.try_shutdown()

    def _wake_executor(self):
        executor = self.executor
        if executor is not None:
            executor.wake()

    # -- service --------------------------------------------------------------------------

    async def _on_match_images(self, request, response):
        """Matched by the worker before its next job; the executor goes on meanwhile."""
        start = time.monotonic()
        max_pixels = self._matching.config.max_image_pixels
        try:
            image0 = image_from_msg(request.image0, max_pixels)
            image1 = image_from_msg(request.image1, max_pixels)
            result = await self._worker.match_images(image0, image1)
        except Exception as error:  # noqa: BLE001 -- a request never ends the service
            cause = error.cause if isinstance(error, ImageError) else 'match_failed'
            text = str(error) if isinstance(error, LoftrRosError) else error_in_words(error)
            self._warnings.warn(self.resolve_service_name('~/match_images'), cause, text)
            response.success = False
            response.message = f'{cause}: {text}'
            return response
        if result is None:  # cancelled: the node is shutting down
            response.success = False
            response.message = 'matcher_node is shutting down'
            return response
        response.matches = matches_msg_from_result(
            result, request.image1.header, request.image0.header, self._matching.model_name,
            self._matching.config.config_id, time.monotonic() - start)
        response.success = True
        return response

    # -- parameters -----------------------------------------------------------------------

    def _on_set_parameters(self, parameters):
        # rclpy refuses read-only parameters (matcher.options.* too) before calling this: only
        # those whose setting is runtime arrive, by group: matcher, keyframe and overlay.
        changes: Dict[str, Dict[str, Any]] = {}
        for parameter in parameters:
            spec = SPECS.get(parameter.name)
            if spec is None or spec.read_only:
                continue
            reason = spec.check(parameter.value)
            if reason:
                # Dynamic typing (see ParameterSpec.descriptor) made rclpy take the refused
                # value's type into the stored descriptor already: give it back its own.
                self.describe_parameter(parameter.name).type = \
                    self.get_parameter(parameter.name).type_.value
                return SetParametersResult(successful=False, reason=reason)
            group, _, field = parameter.name.partition('.')
            changes.setdefault(group, {})[field] = parameter.value
        try:
            config = self._matching.config.replace(**changes.get('matcher', {}))
            policy = dataclasses.replace(self._worker.keyframe_policy,
                                         **changes.get('keyframe', {}))
            overlay = dataclasses.replace(self._overlay.settings, **changes.get('overlay', {}))
        except ConfigError as error:
            return SetParametersResult(successful=False, reason=str(error))
        # Sent with the next request: the matching process applies them from then on.
        self._matching.config = config
        self._worker.keyframe_policy = policy
        self._overlay.settings = overlay
        return SetParametersResult(successful=True)

    # -- diagnostics ----------------------------------------------------------------------

    def _publish_diagnostics(self):
        identity = {'mode': self.mode, 'model': self._matching.model_name,
                    'device': self._matching.device,
                    'config_id': self._matching.config.config_id,
                    # What the latency is measured in: /clock with use_sim_time, else the
                    # system clock.
                    'latency_clock': ('sim_time' if self.get_clock().ros_time_is_active
                                      else 'system_time'),
                    'geometry': self.geometry_status or self._matching.config.geometry,
                    # The matching process started again after it ended (see worker.py).
                    'matcher_restarts': str(self._matching.restarts)}
        publishers = sum(self.count_publishers(topic) for topic in self._input_topics)
        # The synchronizer counts its own drops and pending frames; this timer runs on the
        # image callbacks' thread, so reading them here races with nothing.
        status = self._diagnostics.status(identity, self._matching.device, self._sync.drops,
                                          self._sync.pending, publishers)
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics_pub.publish(array)

    # -- shutdown -------------------------------------------------------------------------

    def destroy_node(self):
        # Ends the matching process: the model's memory is returned at once.
        if self._worker is not None:
            self._worker.close()
        elif self._matching is not None:
            self._matching.close()
        return super().destroy_node()


def main(args=None, signals: Optional[ShutdownSignals] = None) -> int:
    """Run the node until shutdown (SIGINT, SIGTERM); 1 when it cannot start (one fatal line)
    or its matching process ended and could not be started again. `signals`: the handlers,
    when installed earlier."""
    signals = signals or ShutdownSignals()
    node = None
    try:
        rclpy.init(args=args)
        node = MatcherNode()
        # One thread: the callbacks only hand over, and more threads would only add the
        # multi-threaded executor's polling (benchmarks/results/bench_node_cpu.md).
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception as error:
        # What a signal cut short (a model load) may fail in its own way: no error then.
        interrupted = signals.closing
        signals.closing = True  # set before any call: no signal interrupts the rest
        if not interrupted:
            if not isinstance(error, (LoftrRosError, rclpy.exceptions.ParameterException)):
                raise
            rclpy.logging.get_logger(NODE_NAME).fatal(f'cannot start: {error}')
            return 1
    finally:
        signals.closing = True
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        signals.ignore()
    return 1 if node is not None and node.worker_failed else 0
