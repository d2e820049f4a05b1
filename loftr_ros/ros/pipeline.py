"""What a configured matcher node holds: its matching process, worker, inputs and outputs.

A plain node builds it when it starts and activates it at once; a lifecycle node builds it on
`configure` (the model loaded and warmed up in its own process), subscribes and publishes
between `activate` and `deactivate`, and ends it on `cleanup`, which returns the model's memory
(CPU and GPU) with its process.
"""
import dataclasses
import time
from typing import Any, Callable, Dict

from loftr_ros.core.keyframe import KeyframePolicy
from loftr_ros.core.matching_process import MatchingProcess
from loftr_ros.ros.conversions import matches_msg_from_result
from loftr_ros.ros.diagnostics import (DiagnosticsReport, Statistics, ThrottledWarnings,
                                       diagnostics_status_name)
from loftr_ros.ros.inputs import ImageInputs
from loftr_ros.ros.masks import static_mask
from loftr_ros.ros.overlay import OverlayPublisher, OverlaySettings
from loftr_ros.ros.parameters import matcher_config_from_parameters
from loftr_ros.ros.tracks_mode import TracksMode, tracks_settings
from loftr_ros.ros.worker import Frame, MatchingWorker
from loftr_ros.msg import Matches


class MatcherPipeline:
    """The matching process, the worker, the image inputs and the Matches and overlay outputs
    of `node`, from its parameters (read through `parameter(name)`).

    Raises what starting the matching process raises (ConfigError, BackendError, WeightsError,
    MatchingProcessError); nothing is left running then. `create_publisher` makes the outputs'
    publishers (a lifecycle node's publish only while it is active). Inactive until `activate`.
    """

    def __init__(self, node, parameter: Callable, create_publisher: Callable,
                 on_worker_failure: Callable[[str], None]):
        self.mode = parameter('mode')
        self._node = node
        self._parameter = parameter
        config = matcher_config_from_parameters(node)
        mask = static_mask(parameter('mask'))
        node.get_logger().info(f'loading {config.backend} matcher on {config.device}...')
        self.matching = MatchingProcess(config, mask)
        self.stats = Statistics()
        self.warnings = ThrottledWarnings(node.get_logger())
        # What the last Matches' geometry was and, when it is not the configured one, why.
        self.geometry_status = ''
        self.worker = None
        self.tracks = None  # tracks mode's outputs
        try:
            self._matches_pub = create_publisher(Matches, '~/matches', 10)
            self.overlay = OverlayPublisher(
                self.mode, OverlaySettings(**{
                    field.name: parameter(f'overlay.{field.name}')
                    for field in dataclasses.fields(OverlaySettings)}), create_publisher)
            self.worker = MatchingWorker(
                self.matching, self.stats, self.warnings, self._publish, node.context.ok,
                on_worker_failure, lambda: node.executor and node.executor.wake(),
                KeyframePolicy(parameter('keyframe.min_matches'),
                               parameter('keyframe.min_overlap')),
                every_frame=parameter('consecutive.reference') == 'previous')
            self.worker.pause()
            self.inputs = ImageInputs(node, self.mode, parameter, self.stats, self.warnings,
                                      self.worker, lambda: self.matching.config)
            if self.mode == 'tracks':
                self.tracks = self.worker.tracks = TracksMode(
                    node, self.matching, tracks_settings(parameter), self.stats, self.overlay,
                    create_publisher, list(self.inputs.camera_info_topics.values()))
            self.report = DiagnosticsReport(
                self.stats, diagnostics_status_name(node.get_fully_qualified_name()))
        except BaseException:
            self.close()
            raise

    @property
    def active(self) -> bool:
        return self.inputs.subscribed

    def activate(self):
        """Subscribe and publish; a consecutive stream starts again from its next frame."""
        self.worker.resume()
        self.inputs.subscribe()
        self.report.restart_rates()

    def deactivate(self):
        """Stop taking frames and publishing; the model stays loaded. Nothing is published once
        this returns (a publication under way ends first)."""
        self.inputs.unsubscribe()
        self.worker.pause()

    def close(self):
        """End the worker and the matching process (the model's memory goes with it)."""
        if self.worker is not None:
            self.worker.close()
        else:
            self.matching.close()

    def destroy(self, destroy_publisher: Callable):
        """close(), and destroy the subscriptions and (with `destroy_publisher`) the
        publishers: a lifecycle node's cleanup."""
        self.inputs.unsubscribe()
        self.close()
        tracks = self.tracks.publishers if self.tracks is not None else ()
        for publisher in (self._matches_pub, self.overlay.publisher, *tracks):
            destroy_publisher(publisher)

    def apply(self, changes: Dict[str, Dict[str, Any]]):
        """Runtime parameter changes by group (matcher, keyframe, overlay: field -> value),
        all or none (ConfigError)."""
        config = self.matching.config.replace(**changes.get('matcher', {}))
        policy = dataclasses.replace(self.worker.keyframe_policy, **changes.get('keyframe', {}))
        overlay = dataclasses.replace(self.overlay.settings, **changes.get('overlay', {}))
        # Sent with the next request: the matching process applies them from then on.
        self.matching.config = config
        self.worker.keyframe_policy = policy
        self.overlay.settings = overlay

    # -- the worker's thread --------------------------------------------------------------

    def _note_geometry(self, result, config, reference: Frame, current: Frame):
        """Keep geometry_status and say once (throttled) why essential was not used."""
        if config.geometry != 'essential' or result.geometry_model != 'fundamental':
            self.geometry_status = result.geometry_model
            return
        if not self._parameter('use_camera_info'):
            why = 'use_camera_info is false'
        else:
            topics = list(self.inputs.camera_info_topics.values())  # left and right
            if len(topics) == 1:  # consecutive: both frames from the one camera
                topics *= 2
            missing = {topic for topic, frame in zip(topics, (reference, current))
                       if frame.camera is None}
            why = self.inputs.camera_problems(missing)
        self.geometry_status = f'fundamental: essential needs both cameras, {why}'
        self.warnings.warn(current.topic, 'no_camera_model',
                           f'Matches verified with the fundamental matrix: essential needs '
                           f'both cameras, {why}')

    def _publish(self, result, config, reference: Frame, current: Frame):
        self._note_geometry(result, config, reference, current)
        processing = time.monotonic() - current.received
        msg = matches_msg_from_result(result, current.header, reference.header,
                                      self.matching.model_name, config.config_id, processing)
        self._matches_pub.publish(msg)
        latency = (self._node.get_clock().now().nanoseconds - current.stamp_ns) * 1e-9
        self.stats.published(latency, processing, result.timings.get('total', float('nan')),
                             len(result))
        if self.overlay.maybe_publish(result, reference.image, current.image, current.header):
            self.stats.count('overlays')
