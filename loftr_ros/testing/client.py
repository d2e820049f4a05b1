"""The one DDS client of the matcher node, for the demo, the node benchmark and the node tests.

`NodeProcess` runs ``python -m loftr_ros.matcher_node`` in another process; `MatcherClient`
is a helper node (spun by its own executor thread) that publishes images to the matcher node,
sets its parameters, and collects its ``~/matches`` and its own ``/diagnostics`` status.
"""
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.srv import SetParameters
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.publisher import Publisher
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from loftr_ros.core.stamps import sec_nanosec, stamp_to_ns
from loftr_ros.ros.diagnostics import diagnostics_status_name
from loftr_ros.msg import Matches

# Fully qualified name of the matcher node unless remapped; its topics and its /diagnostics
# status are named after it.
MATCHER_NODE = '/matcher_node'
# What MatcherNode logs once it subscribes and publishes.
READY_LINE = 'ready: mode'
# Seconds for the other side of a just-matched connection to be discovered too.
DISCOVERY_SETTLE_S = 0.5
# Image publishers' QoS unless the caller gives one: what the node accepts with any setting.
RELIABLE_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)

# A topic name, or (name, message type) for a type other than sensor_msgs/Image.
Topic = Union[str, Tuple[str, type]]


class NodeProcess:
    """``python -m loftr_ros.matcher_node`` in another process, its output in a log file
    (discarded when `log_path` is None)."""

    def __init__(self, parameters: Mapping[str, object], log_path: Optional[Path] = None,
                 ros_args: Sequence[str] = (), lifecycle: bool = False):
        """`parameters`: name -> value, passed as ``-p name:=value`` after `ros_args` (so they
        override a ``--params-file`` there); `lifecycle`: the lifecycle node."""
        command = [sys.executable, '-m', 'loftr_ros.matcher_node',
                   *(['--lifecycle'] if lifecycle else []), '--ros-args', *ros_args]
        for name, value in parameters.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            command += ['-p', f'{name}:={text}']
        self.log_path = log_path
        self._log = open(log_path, 'w') if log_path is not None else None
        # Unbuffered: the log is read while the node runs.
        self.process = subprocess.Popen(
            command, stdout=self._log if self._log else subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            env={**os.environ, 'PYTHONUNBUFFERED': '1', 'RCUTILS_LOGGING_BUFFERED_STREAM': '0'})

    @property
    def log(self) -> str:
        """The node's output so far ('' without a log file)."""
        return self.log_path.read_text(errors='replace') if self.log_path else ''

    def wait_ready(self, timeout: float = 90.0):
        """Wait for the node's ready line (see wait_for_line)."""
        self.wait_for_line(READY_LINE, timeout)

    def wait_for_line(self, text: str, timeout: float = 20.0, poll: float = 0.1):
        """Wait until `text` is in the node's log (needs a log file); TimeoutError, with the
        log, when it does not come within `timeout` s or the node exits first."""
        deadline = time.monotonic() + timeout
        while text not in self.log:
            self.raise_if_exited(f' before {text!r}:\n{self.log}')
            if time.monotonic() > deadline:
                msg = f'no {text!r} in the matcher node log after {timeout} s:\n{self.log}'
                raise TimeoutError(msg)
            time.sleep(poll)

    def raise_if_exited(self, details: str = ''):
        """TimeoutError naming the exit status when the node has exited (what a wait for it
        would otherwise only learn at its deadline)."""
        if self.process.poll() is not None:
            raise TimeoutError(f'matcher node exited with {self.process.returncode}{details}')

    def children(self) -> List[int]:
        """The node's child processes (its matching process while it has one)."""
        return [int(child) for task in Path(f'/proc/{self.process.pid}/task').iterdir()
                for child in (task / 'children').read_text().split()]

    def rss_mib(self, key: str = 'VmRSS') -> float:
        """The node's resident memory in MiB, its matching process's included (Linux); key
        'VmHWM' gives the sum of their peaks so far."""
        pids, total = [self.process.pid], 0.0
        while pids:
            pid = pids.pop()
            for line in Path(f'/proc/{pid}/status').read_text().splitlines():
                if line.startswith(f'{key}:'):
                    total += int(line.split()[1]) / 1024
            for task in Path(f'/proc/{pid}/task').iterdir():
                pids += [int(child) for child in (task / 'children').read_text().split()]
        return total

    def stop(self, timeout: float = 20.0) -> int:
        """SIGINT (a clean shutdown), SIGKILL after `timeout` s; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log:
            self._log.close()
        return self.process.returncode


class MatcherClient:
    """A helper node that publishes images to the matcher node and collects its Matches and
    its own /diagnostics status, spun by its own executor thread.

    Read the collected fields under `lock` while the client runs; it is notified on every
    Matches and diagnostics message.
    """

    def __init__(self, context: Optional[Context] = None, name: str = 'loftr_ros_client',
                 qos: QoSProfile = RELIABLE_QOS,
                 matcher: str = MATCHER_NODE,
                 on_matches: Optional[Callable[[Matches], None]] = None):
        """`context`: an initialised rclpy Context, or None for one of the client's own (shut
        down by `close`); `qos`: of the image publishers; `matcher`: the matcher node's fully
        qualified name; `on_matches`: called in the executor thread with each Matches once it
        is recorded."""
        self._own_context = context is None
        if context is None:
            context = Context()
            rclpy.init(context=context)
        self.context = context
        self.node = rclpy.create_node(name, context=context)
        self.qos = qos
        self.matcher = matcher
        self.matches_topic = f'{matcher}/matches'
        self.lock = threading.Condition()
        self.matches: List[Matches] = []
        # header stamp (ns) -> this node's clock (ns) when an image with that stamp was last
        # published / when the Matches with that stamp arrived.
        self.published_ns: Dict[int, int] = {}
        self.received_ns: Dict[int, int] = {}
        # (time.monotonic() at arrival, key -> value) of the matcher node's own status.
        self.diagnostics: List[Tuple[float, Dict[str, str]]] = []
        self._status_name = diagnostics_status_name(matcher)
        self._on_matches_hook = on_matches
        self._publishers: Dict[str, Publisher] = {}
        self.node.create_subscription(Matches, self.matches_topic, self._on_matches, 100)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics,
                                      100)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        threading.Thread(target=self.executor.spin, daemon=True).start()

    def __enter__(self) -> 'MatcherClient':
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        self.executor.shutdown(timeout_sec=5)
        self.node.destroy_node()
        if self._own_context:
            self.context.try_shutdown()

    # -- publishing -----------------------------------------------------------------------

    def publisher(self, topic: str, msg_type: type = Image) -> Publisher:
        """The publisher of `topic`, created with the client's QoS on first use."""
        if topic not in self._publishers:
            self._publishers[topic] = self.node.create_publisher(msg_type, topic, self.qos)
        return self._publishers[topic]

    def publish(self, topic: str, msg, msg_type: type = Image):
        """Publish an image (or another message with a header) and note when."""
        publisher = self.publisher(topic, msg_type)
        # Noted before publishing, so that its Matches always find it.
        with self.lock:
            self.published_ns[stamp_to_ns(msg.header.stamp)] = \
                self.node.get_clock().now().nanoseconds
        publisher.publish(msg)

    def publish_pair(self, topics: Sequence[str], msgs: Sequence, stamp_ns: Optional[int] = None,
                     ) -> int:
        """Publish a stereo pair (left, right) on `topics`, both headers stamped `stamp_ns`
        (this client's clock now when None); returns the stamp."""
        if stamp_ns is None:
            stamp_ns = self.node.get_clock().now().nanoseconds
        for topic, msg in zip(topics, msgs):
            msg.header.stamp.sec, msg.header.stamp.nanosec = sec_nanosec(stamp_ns)
            self.publish(topic, msg)
        return stamp_ns

    def wait_for_subscribers(self, topics: Iterable[Topic], timeout: float = 30.0,
                             process: Optional[NodeProcess] = None):
        """Wait until each of `topics` has a subscriber and each topic this client subscribes
        to (~/matches, /diagnostics and any added to `node`) has a publisher, so that nothing
        published next is lost. TimeoutError naming what is missing after `timeout` s, or as
        soon as the matcher node's `process` exits."""
        deadline = time.monotonic() + timeout
        publishers = [self.publisher(*topic) if isinstance(topic, tuple) else
                      self.publisher(topic) for topic in topics]
        while True:
            missing = [f'nobody subscribes to {publisher.topic_name}'
                       for publisher in publishers if publisher.get_subscription_count() == 0]
            missing += [f'nobody publishes {subscription.topic_name}'
                        for subscription in self.node.subscriptions
                        if self.node.count_publishers(subscription.topic_name) == 0]
            if not missing:
                break
            if process is not None:
                process.raise_if_exited()
            if time.monotonic() > deadline:
                msg = f'after {timeout} s: {"; ".join(missing)}'
                raise TimeoutError(msg)
            time.sleep(0.05)
        time.sleep(DISCOVERY_SETTLE_S)

    # -- parameters -----------------------------------------------------------------------

    def call(self, service_type: type, name: str, request, timeout: float = 10.0):
        """Call the matcher node's service `name` (relative to the node: 'set_parameters')
        and return its response; TimeoutError when it is not there or does not answer."""
        full_name = f'{self.matcher}/{name}'
        service = self.node.create_client(service_type, full_name)
        try:
            if not service.wait_for_service(timeout_sec=timeout):
                raise TimeoutError(f'no {full_name} service within {timeout} s')
            answered = threading.Event()
            future = service.call_async(request)
            future.add_done_callback(lambda _: answered.set())
            if not answered.wait(timeout):
                raise TimeoutError(f'{full_name} did not answer in {timeout} s')
            return future.result()
        finally:
            self.node.destroy_client(service)

    def set_parameters(self, values: Mapping[str, object], timeout: float = 10.0) -> list:
        """Set parameters of the matcher node through its ``set_parameters`` service, as
        ``ros2 param set`` does; returns its SetParametersResult for each, in order."""
        request = SetParameters.Request(parameters=[
            Parameter(name, value=value).to_parameter_msg() for name, value in values.items()])
        return list(self.call(SetParameters, 'set_parameters', request, timeout).results)

    # -- life cycle (the lifecycle node) ----------------------------------------------------

    def lifecycle_state(self, timeout: float = 10.0) -> str:
        """The lifecycle node's state label ('unconfigured', 'inactive', ...), from
        ~/get_state as ``ros2 lifecycle get`` reads it."""
        from lifecycle_msgs.srv import GetState
        return self.call(GetState, 'get_state', GetState.Request(), timeout).current_state.label

    def change_state(self, transition: str, timeout: float = 60.0) -> bool:
        """Trigger `transition` ('configure', 'activate', 'deactivate', 'cleanup', 'shutdown')
        through ~/change_state, as ``ros2 lifecycle set`` does; whether it succeeded."""
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState
        if transition == 'shutdown':  # one transition per state; the node picks by label
            request = ChangeState.Request(transition=Transition(label='shutdown'))
        else:
            request = ChangeState.Request(transition=Transition(
                id=getattr(Transition, f'TRANSITION_{transition.upper()}')))
        return self.call(ChangeState, 'change_state', request, timeout).success

    # -- collecting -----------------------------------------------------------------------

    def _on_matches(self, msg: Matches):
        now = self.node.get_clock().now().nanoseconds
        with self.lock:
            self.matches.append(msg)
            self.received_ns[stamp_to_ns(msg.header.stamp)] = now
            self.lock.notify_all()
        if self._on_matches_hook is not None:
            self._on_matches_hook(msg)

    def _on_diagnostics(self, msg: DiagnosticArray):
        # Other nodes publish on /diagnostics too.
        for status in msg.status:
            if status.name == self._status_name:
                with self.lock:
                    self.diagnostics.append((time.monotonic(),
                                             {kv.key: kv.value for kv in status.values}))
                    self.lock.notify_all()

    def _wait(self, done: Callable[[], bool], timeout: float, waiting_for: Callable[[], str]):
        """Wait until done(); TimeoutError saying waiting_for() (built at the timeout, so that
        it tells what had arrived by then)."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while not done():
                left = deadline - time.monotonic()
                if left <= 0:
                    msg = f'no {waiting_for()} within {timeout} s'
                    raise TimeoutError(msg)
                self.lock.wait(left)

    def wait_matches(self, count: int, timeout: float = 30.0) -> List[Matches]:
        """Wait until `count` Matches have arrived in total; returns them all."""
        self._wait(lambda: len(self.matches) >= count, timeout,
                   lambda: f'{count} Matches (got {len(self.matches)})')
        with self.lock:
            return list(self.matches)

    def wait_for_stamp(self, stamp_ns: int, timeout: float = 30.0):
        """Wait until the Matches stamped `stamp_ns` (its current image's stamp) arrived."""
        self._wait(lambda: stamp_ns in self.received_ns, timeout,
                   lambda: f'Matches stamped {stamp_ns}')

    def latency_s(self, stamp_ns: int) -> float:
        """Seconds from the last publication of an image stamped `stamp_ns` to the arrival of
        its Matches (0 when this client did not publish it)."""
        with self.lock:
            received = self.received_ns[stamp_ns]
            return (received - self.published_ns.get(stamp_ns, received)) * 1e-9

    def latest_diagnostics(self) -> Dict[str, str]:
        """The matcher node's last status ({} before the first)."""
        with self.lock:
            return dict(self.diagnostics[-1][1]) if self.diagnostics else {}

    def diagnostics_after(self, since: float, timeout: float = 10.0) -> Dict[str, str]:
        """The matcher node's first status received after `since` (time.monotonic())."""
        def fresh():
            return [values for received, values in self.diagnostics if received > since]
        self._wait(lambda: bool(fresh()), timeout, lambda: '/diagnostics from the matcher node')
        with self.lock:
            return fresh()[0]
