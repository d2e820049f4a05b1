"""matcher_node: live feature matching of consecutive frames or stereo pairs.

Processes and threads: the model runs in a process of its own (loftr_ros.core.matching_process;
this one never imports torch). Here, a single-threaded executor runs the subscription callbacks
(loftr_ros.ros.inputs), which only convert, pair and hand the job to the worker
(loftr_ros.ros.worker); its ONE thread takes the newest job, has the matching process match it
and publishes. A job still waiting when a newer one arrives is superseded and counted, so
latency and memory stay bounded when the input outruns the model. The service waits for the
worker without blocking the executor (a coroutine).

Two nodes share this code (:class:`MatcherNodeMixin`): :class:`MatcherNode` configures and
activates itself when it starts; the lifecycle node (loftr_ros.ros.lifecycle_node, started with
``--lifecycle``) does so through the ROS 2 life cycle's transitions.
"""
import sys
import time
from typing import Any, Dict, List, Optional

import rclpy
import rclpy.exceptions
import rclpy.logging
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.utilities import remove_ros_args

from loftr_ros.core.errors import ConfigError, ImageError, LoftrRosError
from loftr_ros.core.image_conversion import image_from_msg
from loftr_ros.core.matching_process import MatchingProcess, error_in_words
from loftr_ros.ros.parameters import SPECS, declare_parameters
from loftr_ros.ros.pipeline import MatcherPipeline
from loftr_ros.ros.shutdown_signals import ShutdownSignals
from loftr_ros.ros.worker import SERVICE, Frame
from loftr_ros.ros.conversions import matches_msg_from_result
from loftr_ros.srv import MatchImages

NODE_NAME = 'matcher_node'
# The command-line flag (before --ros-args) that starts the lifecycle node.
LIFECYCLE_FLAG = '--lifecycle'


class MatcherNodeMixin:
    """What both matcher nodes do, as rclpy's LifecycleNodeMixin shares code between its nodes:
    parameters, the service, diagnostics, and the pipeline's configure, activate, deactivate
    and cleanup steps. Mixed into a Node (or LifecycleNode) subclass, which calls `_setup`."""

    def _setup(self):
        # First, so that destroy_node() works on a node whose construction failed below.
        self.pipeline: Optional[MatcherPipeline] = None
        self.worker_failed = False
        declare_parameters(self)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.create_service(MatchImages, SERVICE, self._on_match_images)
        # On the steady clock: with use_sim_time the ROS clock stands still until /clock
        # arrives (a bag not playing yet), and the diagnostics would go silent with it.
        self.create_timer(self._param('diagnostics.period'), self._publish_diagnostics,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.add_on_set_parameters_callback(self._on_set_parameters)

    # -- read-only views (for tests and tools) ------------------------------------------

    @property
    def matcher(self) -> Optional[MatchingProcess]:
        """The node's matcher (in its own process; None while unconfigured); its `config`
        holds the matcher settings in force, `model_name` and `device` what runs them."""
        return self.pipeline.matching if self.pipeline else None

    @property
    def reference(self) -> Optional[Frame]:
        """Consecutive mode: the frame new frames are matched against (None before the
        first one or after a reset)."""
        return self.pipeline.worker.reference if self.pipeline else None

    @property
    def overlay_subscribers(self) -> int:
        """How many subscriptions ~/overlay has (it is only drawn while there are any)."""
        return self.pipeline.overlay.publisher.get_subscription_count() if self.pipeline else 0

    # -- the life cycle's steps ---------------------------------------------------------

    def _param(self, name):
        return self.get_parameter(name).value

    def _configure(self, create_publisher):
        """Check the parameters, start the matching process (load and warm up the model) and
        create the outputs; raises LoftrRosError (nothing left running) when that fails."""
        for spec in SPECS.values():
            reason = spec.check(self._param(spec.name))
            if reason:
                raise ConfigError(reason)
        self.pipeline = MatcherPipeline(self, self._param, create_publisher,
                                        self._on_worker_failure)

    def _activate(self):
        self.pipeline.activate()
        matching = self.pipeline.matching
        self.get_logger().info(
            f'ready: mode {self.pipeline.mode}, model {matching.model_name} on '
            f'{matching.device}, inputs {", ".join(self.pipeline.inputs.topics)} '
            f'({self._param("transport")}, {self._param("qos_reliability")})')

    def _release_pipeline(self):
        """End the pipeline: the matching process ends and returns the model's memory."""
        pipeline, self.pipeline = self.pipeline, None
        if pipeline is not None:
            pipeline.destroy(self._destroy_output)

    def _destroy_output(self, publisher):
        self.destroy_publisher(publisher)

    def _on_worker_failure(self, text: str):
        """The matching process could not be restarted: stop the node loudly instead of
        running on without a model."""
        self.get_logger().fatal(f'matcher worker failed:\n{text}')
        self.worker_failed = True
        self.context.try_shutdown()

    # -- service --------------------------------------------------------------------------

    async def _on_match_images(self, request, response):
        """Matched by the worker before its next job; the executor goes on meanwhile. Refused
        (success false, counted as service_refused.inactive) while the node is not active."""
        start = time.monotonic()
        pipeline = self.pipeline
        name = self.resolve_service_name(SERVICE)
        if pipeline is None or not pipeline.active:
            response.success = False
            response.message = f'inactive: {self.get_name()} is not active (configure and ' \
                               f'activate it through its lifecycle services)'
            if pipeline is not None:
                pipeline.stats.service_call('inactive')
            return response
        max_pixels = pipeline.matching.config.max_image_pixels
        try:
            image0 = image_from_msg(request.image0, max_pixels)
            image1 = image_from_msg(request.image1, max_pixels)
            answer = await pipeline.worker.match_images(image0, image1)
        except Exception as error:  # noqa: BLE001 -- a request never ends the service
            cause = error.cause if isinstance(error, ImageError) else 'match_failed'
            text = str(error) if isinstance(error, LoftrRosError) else error_in_words(error)
            pipeline.stats.service_call(cause)
            pipeline.warnings.warn(name, cause, text)
            response.success = False
            response.message = f'{cause}: {text}'
            return response
        if answer is None:  # cancelled: the node is shutting down
            response.success = False
            response.message = f'{self.get_name()} is shutting down'
            return response
        result, config = answer
        pipeline.stats.service_call()
        response.matches = matches_msg_from_result(
            result, request.image1.header, request.image0.header,
            pipeline.matching.model_name, config.config_id, time.monotonic() - start)
        response.success = True
        return response

    # -- parameters -----------------------------------------------------------------------

    def set_parameters(self, parameter_list: List[Parameter]):
        types = self._descriptor_types(parameter_list)
        results = super().set_parameters(parameter_list)
        self._restore_descriptor_types({parameter.name: types.get(parameter.name)
                                        for parameter, result in zip(parameter_list, results)
                                        if not result.successful})
        return results

    def set_parameters_atomically(self, parameter_list: List[Parameter]):
        # What the set_parameters and set_parameters_atomically services call.
        types = self._descriptor_types(parameter_list)
        result = super().set_parameters_atomically(parameter_list)
        if not result.successful:
            self._restore_descriptor_types(types)
        return result

    def _descriptor_types(self, parameter_list) -> Dict[str, int]:
        return {parameter.name: self.describe_parameter(parameter.name).type
                for parameter in parameter_list if self.has_parameter(parameter.name)}

    def _restore_descriptor_types(self, types: Dict[str, Optional[int]]):
        """Dynamic typing (see ParameterSpec.descriptor) makes rclpy take each value's type into
        the stored descriptor before anything is checked: a set that fails gives every
        parameter of it its type back, whichever check refused it."""
        for name, kind in types.items():
            if kind is not None:
                self.describe_parameter(name).type = kind

    def _on_set_parameters(self, parameters):
        # rclpy refuses read-only parameters (matcher.options.* too) before calling this: only
        # those whose setting is runtime arrive, by group: matcher, keyframe and overlay. Every
        # value is checked, so that an atomic set names all the refused ones.
        changes: Dict[str, Dict[str, Any]] = {}
        reasons = []
        for parameter in parameters:
            spec = SPECS.get(parameter.name)
            if spec is None or spec.read_only:
                continue
            reason = spec.check(parameter.value)
            if reason:
                reasons.append(reason)
            group, _, field = parameter.name.partition('.')
            changes.setdefault(group, {})[field] = parameter.value
        if reasons:
            return SetParametersResult(successful=False, reason='; '.join(reasons))
        if self.pipeline is None:  # unconfigured: read when configured
            return SetParametersResult(successful=True)
        try:
            self.pipeline.apply(changes)
        except ConfigError as error:
            return SetParametersResult(successful=False, reason=str(error))
        return SetParametersResult(successful=True)

    # -- diagnostics ----------------------------------------------------------------------

    def _publish_diagnostics(self):
        """The pipeline's status; nothing while the node is not active."""
        pipeline = self.pipeline
        if pipeline is None or not pipeline.active:
            return
        matching = pipeline.matching
        identity = {'mode': pipeline.mode, 'model': matching.model_name,
                    'device': matching.device,
                    'config_id': matching.config.config_id,
                    # What the latency is measured in: /clock with use_sim_time, else the
                    # system clock.
                    'latency_clock': ('sim_time' if self.get_clock().ros_time_is_active
                                      else 'system_time'),
                    'geometry': pipeline.geometry_status or matching.config.geometry,
                    # The matching process started again after it ended (see worker.py).
                    'matcher_restarts': str(matching.restarts)}
        if pipeline.tracks is not None:
            identity.update(pipeline.tracks.diagnostics())
        if pipeline.inputs.masks is not None:
            identity.update(pipeline.inputs.masks.diagnostics())
        # The synchronizer counts its own drops and pending frames; this timer runs on the
        # image callbacks' thread, so reading them here races with nothing.
        sync = pipeline.inputs.sync
        status = pipeline.report.status(identity, matching.device, sync.drops, sync.pending,
                                        pipeline.inputs.publishers())
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics_pub.publish(array)

    # -- shutdown -------------------------------------------------------------------------

    def destroy_node(self):
        # Ends the matching process: the model's memory is returned at once.
        if self.pipeline is not None:
            self.pipeline.close()
        return super().destroy_node()


class MatcherNode(MatcherNodeMixin, Node):
    """The matcher node, configured and active from the start; raises LoftrRosError (or
    rclpy's ParameterException) when it cannot start."""

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self._setup()
        self._configure(self.create_publisher)
        self._activate()


def main(args=None, signals: Optional[ShutdownSignals] = None) -> int:
    """Run the node until shutdown (SIGINT, SIGTERM); 1 when it cannot start (one fatal line)
    or its matching process ended and could not be started again. `--lifecycle` (before
    --ros-args) runs the lifecycle node. `signals`: the handlers, when installed earlier."""
    signals = signals or ShutdownSignals()
    node = None
    try:
        rclpy.init(args=args)
        if LIFECYCLE_FLAG in remove_ros_args(args if args is not None else sys.argv)[1:]:
            from loftr_ros.ros.lifecycle_node import LifecycleMatcherNode
            node = LifecycleMatcherNode()
        else:
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
