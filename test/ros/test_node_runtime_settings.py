"""Matcher settings changed while the node runs, from another process as `ros2 param set` does:
each Matches message equals what a Matcher built with the new settings gives."""
import pytest
from rclpy.parameter import Parameter

from loftr_ros.core.config import MatcherConfig
from loftr_ros.core.matcher import Matcher
from loftr_ros.core.stamps import stamp_to_ns
from loftr_ros.ros.conversions import image_msg_from_array, make_header, result_from_matches_msg

START = 1_700_000_000 * 10**9
# Started strict, lowered, raised again (to another value than the start, so that a matcher
# that kept its first threshold shows as well as one that kept the lowest).
THRESHOLDS = (0.9, 0.05, 0.5)


@pytest.mark.slow
def test_confidence_threshold_lowered_and_raised_at_runtime_acts_on_the_matches(
        photo_views, node_process, harness, assert_same_matches):
    """xfeat (real weights): LighterGlue drops matches under the threshold itself; a backend
    that kept its start value gave 194 matches here at 0.05 instead of a fresh matcher's 537
    (issue 12: 219 instead of 1171 on EuRoC)."""
    left, right = photo_views[0], photo_views[3]
    node = node_process(mode='stereo', qos_reliability='reliable', qos_depth=10, **{
        'matcher.backend': 'xfeat', 'matcher.warmup': False,
        'matcher.confidence_threshold': THRESHOLDS[0]})
    node.wait_ready()
    harness.wait_for_subscribers(['/left/image', '/right/image'], process=node)
    counts = []
    for index, threshold in enumerate(THRESHOLDS):
        if index:
            results = harness.set_parameters({'matcher.confidence_threshold': threshold})
            assert results[0].successful, results[0].reason
        stamp = harness.publish_pair(
            ['/left/image', '/right/image'],
            [image_msg_from_array(image, 'mono8', make_header(0, side))
             for image, side in ((left, 'left'), (right, 'right'))], START + index * 10**8)
        harness.wait_for_stamp(stamp, timeout=60)
        msg = harness.wait_matches(index + 1)[-1]
        assert stamp_to_ns(msg.header.stamp) == stamp
        published = result_from_matches_msg(msg)
        expected = Matcher(MatcherConfig(backend='xfeat', warmup=False,
                                         confidence_threshold=threshold)).match(left, right)
        assert len(published) == len(expected), (threshold, len(published), len(expected))
        # `expected` prepares the two images as one batch, the node one by one.
        assert_same_matches(published, expected)
        counts.append(len(published))
    # The settings made a difference: more matches at 0.05 than at 0.5, more there than at 0.9.
    assert counts[1] > counts[2] > counts[0] > 0, counts
    assert node.stop() == 0


def test_matches_carry_the_config_id_they_were_matched_with(photo_views, start_node, harness,
                                                            slow_backend):
    """A setting changed while a pair is being matched applies from the next pair: the
    Matches of the pair in work name the settings it was matched with."""
    match_started = slow_backend(1.5)
    node = start_node(mode='stereo', qos_reliability='reliable', qos_depth=10, **{
        'matcher.backend': 'opencv', 'matcher.warmup': False}).node
    harness.wait_for_subscribers(['/left/image', '/right/image'])
    matched_with = node.matcher.config.config_id
    harness.publish_pair(['/left/image', '/right/image'], [
        image_msg_from_array(photo_views[index], 'mono8', make_header(0, side))
        for index, side in ((0, 'left'), (1, 'right'))], START)
    match_started()
    assert node.set_parameters([Parameter('matcher.confidence_threshold',
                                          value=0.5)])[0].successful
    changed = node.matcher.config.config_id
    assert changed != matched_with
    assert harness.wait_matches(1)[0].config_id == matched_with
