"""The matcher node as a managed (lifecycle) node: the ROS 2 life cycle Nav2 and Isaac ROS use.

    unconfigured --configure--> inactive --activate--> active --deactivate--> inactive
    inactive --cleanup--> unconfigured;  shutdown from each of them --> finalized

- configure: checks the parameters, starts the matching process (loads the weights, warms up)
  and creates the outputs. When that fails (bad weights, a bad parameter) the transition
  returns FAILURE, the reason is logged and the node stays unconfigured, alive: fix the
  parameters' file or the weights and configure again (read-only parameters are read at
  start, so a bad one needs a restart).
- activate: subscribes to the inputs; Matches, overlays and diagnostics are published.
- deactivate: unsubscribes; the model stays loaded. Nothing is published while inactive (no
  Matches, no overlay, no diagnostics: the state is on ~/get_state and ~/transition_event), a
  match in progress is not published and ~/match_images answers success false.
- cleanup: ends the matching process, which returns the model's memory (CPU and GPU).
- shutdown: from any state, as cleanup; the process stays until it is stopped (a signal).

The transitions run on the executor's thread, so a configure blocks callbacks for the model's
load and warm-up (nothing is subscribed yet then).
"""
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from loftr_ros.core.errors import LoftrRosError
from loftr_ros.ros.node import NODE_NAME, MatcherNodeMixin


class LifecycleMatcherNode(MatcherNodeMixin, LifecycleNode):
    """The matcher node, unconfigured until its configure transition."""

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        service = self._service_change_state
        service.callback = self._refusing_impossible_transitions(service.callback)
        self._setup()
        self.get_logger().info('unconfigured: waiting for the configure transition '
                               '(~/change_state)')

    def _refusing_impossible_transitions(self, change_state):
        """~/change_state's callback, answering success false to a transition the current state
        does not have (configure when active): Humble's and Jazzy's rclpy raise it out of the
        service callback, which ended the node (Kilted's answers false itself)."""
        def guarded(request, response):
            try:
                return change_state(request, response)
            except Exception as error:  # noqa: BLE001 -- rclpy's RCLError, not exported
                transition = request.transition.label or request.transition.id
                self.get_logger().warning(f'~/change_state: transition {transition} refused: '
                                          f'{error}')
                response.success = False
                return response
        return guarded

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._configure(self.create_lifecycle_publisher)
        except LoftrRosError as error:
            self.get_logger().error(f'configure failed: {error}')
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info(f'configured: {self.pipeline.matching.model_name} on '
                               f'{self.pipeline.matching.device} loaded; inactive')
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # enables the lifecycle publishers
        if result == TransitionCallbackReturn.SUCCESS:
            self._activate()
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.pipeline.deactivate()
        self.get_logger().info('inactive: unsubscribed, the model stays loaded')
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release_pipeline()
        self.get_logger().info('unconfigured: the matching process ended')
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release_pipeline()
        self.get_logger().info('finalized')
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        # A transition raised (a bug): end what was started and go back to unconfigured.
        self._release_pipeline()
        return TransitionCallbackReturn.SUCCESS

    def _destroy_output(self, publisher):
        self.destroy_lifecycle_publisher(publisher)
