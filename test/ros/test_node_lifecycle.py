"""The lifecycle node (``--lifecycle``) driven from this process through its lifecycle services,
as ``ros2 lifecycle set`` or Nav2's lifecycle manager drive it: what it publishes in each state,
a configure that fails, the memory cleanup returns, and shutdown from each state."""
import time

import pytest
from lifecycle_msgs.msg import TransitionEvent
from sensor_msgs.msg import Image

from loftr_ros.ros.conversions import image_msg_from_array, make_header
from loftr_ros.srv import MatchImages

MS = 1_000_000
START = 1_700_000_000 * 10**9
FAST = {'mode': 'consecutive', 'matcher.backend': 'opencv', 'matcher.device': 'cpu',
        'matcher.warmup': False, 'diagnostics.period': 0.2, 'qos_reliability': 'reliable',
        'qos_depth': 10}
# Seconds a node that publishes would have published something in (5 diagnostics periods).
QUIET_S = 1.0


class Outputs:
    """Everything the matcher node publishes, as this client receives it: Matches and its
    diagnostics (the harness's), overlays and transition events."""

    def __init__(self, harness):
        self.harness = harness
        self.overlays = []
        self.transitions = []
        harness.node.create_subscription(Image, '/matcher_node/overlay',
                                         lambda msg: self.overlays.append(msg), 10)
        harness.node.create_subscription(
            TransitionEvent, '/matcher_node/transition_event',
            lambda msg: self.transitions.append((msg.start_state.label, msg.goal_state.label)),
            10)

    def counts(self):
        with self.harness.lock:
            return (len(self.harness.matches), len(self.harness.diagnostics),
                    len(self.overlays))


class Frames:
    """Consecutive frames of the photo views on /image, stamps 50 ms apart."""

    def __init__(self, harness, views):
        self.harness, self.views, self.index = harness, views, 0

    def publish(self, number=1):
        for _ in range(number):
            view = self.views[self.index % len(self.views)]
            self.harness.publish('/image', image_msg_from_array(
                view, 'mono8', make_header(START + self.index * 50 * MS, 'camera')))
            self.index += 1
            time.sleep(0.05)

    def match(self, pairs):
        """Start a stream (its first frame becomes the reference) and have `pairs` frames
        matched, one at a time (none superseded)."""
        self.publish()
        time.sleep(0.5)
        for _ in range(pairs):
            matched = len(self.harness.matches)
            self.publish()
            self.harness.wait_matches(matched + 1)


def wait_until(condition, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what()
        time.sleep(0.05)


def transition(harness, name, state):
    """Trigger transition `name` and check that it succeeded and led to `state`."""
    assert harness.change_state(name), name
    assert harness.lifecycle_state() == state


def assert_nothing_taken_or_published(outputs, frames):
    """Frames published now are not subscribed to, and nothing comes out meanwhile."""
    before = outputs.counts()
    frames.publish(3)
    time.sleep(QUIET_S)
    assert frames.harness.publisher('/image').get_subscription_count() == 0
    assert outputs.counts() == before


def match_request(views):
    return MatchImages.Request(
        image0=image_msg_from_array(views[0], 'mono8', make_header(START, 'camera')),
        image1=image_msg_from_array(views[1], 'mono8', make_header(START, 'camera')))


def test_every_transition_from_another_process(node_process, harness, photo_views):
    outputs = Outputs(harness)
    frames = Frames(harness, photo_views)
    node = node_process(lifecycle=True, **FAST)
    node.wait_for_line('unconfigured: waiting for the configure transition')
    assert harness.lifecycle_state() == 'unconfigured'
    assert node.children() == []
    time.sleep(1.0)  # the node process settled (imports, DDS discovery)
    unconfigured_mib = node.rss_mib()

    # configure: the matching process runs, nothing is subscribed or published.
    transition(harness, 'configure', 'inactive')
    assert len(node.children()) == 1
    configured_mib = node.rss_mib()
    assert_nothing_taken_or_published(outputs, frames)
    assert outputs.counts() == (0, 0, 0)

    # activate: subscribed, Matches, overlays and diagnostics published.
    transition(harness, 'activate', 'active')
    node.wait_for_line('ready: mode consecutive')
    # A transition the state does not have is refused; the node goes on.
    assert not harness.change_state('configure')
    assert harness.lifecycle_state() == 'active'
    # Also until ~/matches and ~/overlay (created by configure) are seen from here.
    harness.wait_for_subscribers(['/image'], process=node)
    frames.match(3)
    wait_until(lambda: all(outputs.counts()), lambda: f'outputs {outputs.counts()}')
    response = harness.call(MatchImages, 'match_images', match_request(photo_views))
    assert response.success and len(response.matches.scores) > 20, response.message

    # deactivate: the model stays loaded; nothing is published, the service refuses.
    transition(harness, 'deactivate', 'inactive')
    assert len(node.children()) == 1
    assert_nothing_taken_or_published(outputs, frames)
    response = harness.call(MatchImages, 'match_images', match_request(photo_views))
    assert not response.success and response.message.startswith('inactive: '), response

    # activate again: a new stream (its first frame is the reference), then Matches.
    assert harness.change_state('activate')
    harness.wait_for_subscribers(['/image'], process=node)
    frames.match(2)
    diagnostics = harness.diagnostics_after(time.monotonic())
    assert diagnostics['service_requests'] == '2', diagnostics
    assert diagnostics['service_refused.inactive'] == '1', diagnostics

    # deactivate and cleanup: the matching process ends, the memory goes back.
    assert harness.change_state('deactivate')
    transition(harness, 'cleanup', 'unconfigured')
    assert node.children() == []
    cleaned_mib = node.rss_mib()
    assert abs(cleaned_mib - unconfigured_mib) <= 0.1 * unconfigured_mib, (
        unconfigured_mib, configured_mib, cleaned_mib)
    assert configured_mib > 1.5 * unconfigured_mib  # the model's process was measured
    assert_nothing_taken_or_published(outputs, frames)

    # configure again after cleanup, activate, match; then shutdown from active.
    assert harness.change_state('configure')
    assert harness.change_state('activate')
    harness.wait_for_subscribers(['/image'], process=node)
    frames.match(2)
    transition(harness, 'shutdown', 'finalized')
    assert node.children() == []
    wait_until(lambda: ('active', 'shuttingdown') in outputs.transitions,
               lambda: outputs.transitions)
    assert outputs.transitions[:2] == [('unconfigured', 'configuring'),
                                       ('configuring', 'inactive')]
    assert node.stop() == 0
    assert 'Traceback' not in node.log


@pytest.mark.parametrize('parameters, reason', [
    ({'matcher.backend': 'xfeat', 'matcher.weights': '/nonexistent/xfeat.pt'},
     '/nonexistent/xfeat.pt'),
    ({'mode': 'mono'}, 'mode'),
])
def test_failed_configure_returns_failure_and_stays_unconfigured(node_process, harness,
                                                                 parameters, reason):
    node = node_process(lifecycle=True, **{**FAST, **parameters})
    node.wait_for_line('unconfigured: waiting for the configure transition')
    assert not harness.change_state('configure')
    assert harness.lifecycle_state() == 'unconfigured'
    node.wait_for_line('configure failed: ')
    failure = next(line for line in node.log.splitlines() if 'configure failed: ' in line)
    assert reason in failure, failure
    assert node.process.poll() is None and node.children() == []
    # Still a lifecycle node: shutdown from unconfigured.
    assert harness.change_state('shutdown')
    assert harness.lifecycle_state() == 'finalized'
    assert node.stop() == 0


def test_shutdown_from_inactive_ends_the_matching_process(node_process, harness):
    node = node_process(lifecycle=True, **FAST)
    node.wait_for_line('unconfigured: waiting for the configure transition')
    assert harness.change_state('configure')
    assert len(node.children()) == 1
    assert harness.change_state('shutdown')
    assert harness.lifecycle_state() == 'finalized'
    assert node.children() == []
    assert not harness.change_state('configure')  # finalized is final
    assert node.stop() == 0


def test_a_match_under_way_at_deactivate_is_dropped_not_published(photo_views, start_node,
                                                                   harness, slow_backend):
    """Deactivate while a pair is being matched: the transition does not wait for the match,
    and its result is not published once the node is inactive (counted as deactivated)."""
    from loftr_ros.ros.lifecycle_node import LifecycleMatcherNode
    match_started = slow_backend(2.0)
    start_node(LifecycleMatcherNode, **{**FAST, 'mode': 'stereo'})
    transition(harness, 'configure', 'inactive')
    transition(harness, 'activate', 'active')
    harness.wait_for_subscribers(['/left/image', '/right/image'])
    harness.publish_pair(['/left/image', '/right/image'], [
        image_msg_from_array(photo_views[index], 'mono8', make_header(0, side))
        for index, side in ((0, 'left'), (1, 'right'))], START)
    match_started()
    transition(harness, 'deactivate', 'inactive')
    time.sleep(3.0)  # the match ends meanwhile
    assert harness.matches == []
    transition(harness, 'activate', 'active')
    diagnostics = harness.diagnostics_after(time.monotonic())
    assert diagnostics['drops.deactivated'] == '2', diagnostics  # both frames of the pair
    assert diagnostics['frames_received'] == '2' and diagnostics['frames_pending'] == '0'
