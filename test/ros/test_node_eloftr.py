"""The default backend, eloftr, through the node in consecutive mode: each frame's features are
computed once and reused as the reference of the next pairs (in the matching process), and
every Matches message carries what the Matcher computes from the same two frames. Random
weights (the suite's `eloftr_hf_dir`): the matches mean nothing, their computation and transport
do. That the pair's matcher time includes the current frame's extraction is tested on
MatchingSession (test/core/test_matching_process.py)."""
import time

import numpy as np
import pytest

from loftr_ros.core.matcher import Matcher
from loftr_ros.core.stamps import stamp_to_ns
from loftr_ros.ros.conversions import image_msg_from_array, make_header, result_from_matches_msg

START = 1_700_000_000 * 10**9
FRAME_NS = 50_000_000


@pytest.mark.slow
@pytest.mark.parametrize('precision', ['fp32', 'bf16'])
def test_consecutive_mode_publishes_the_matchers_matches(eloftr_hf_dir, small_step_photo_views,
                                                         start_node, harness, precision):
    frames = small_step_photo_views  # padded to 320x256 for the model
    node = start_node(mode='consecutive', **{
        'matcher.backend': 'eloftr', 'matcher.weights': str(eloftr_hf_dir),
        'matcher.device': 'cpu', 'matcher.precision': precision, 'matcher.resize': 0,
        'matcher.warmup': False, 'qos_reliability': 'reliable', 'qos_depth': 10,
        'diagnostics.period': 0.2}).node
    harness.wait_for_subscribers(['/image'])
    stamps = [START + index * FRAME_NS for index in range(len(frames))]
    for index, (frame, stamp) in enumerate(zip(frames, stamps)):
        harness.publish('/image', image_msg_from_array(frame, 'mono8',
                                                       make_header(stamp, 'camera')))
        if index:
            harness.wait_matches(index)
        else:
            # The first frame only becomes the reference: wait until the node took it (a
            # frame published at once would supersede it).
            deadline = time.monotonic() + 30
            while node.reference is None and time.monotonic() < deadline:
                time.sleep(0.01)
    messages = harness.wait_matches(len(frames) - 1)
    # The per-image stage ran once per frame, not twice per pair.
    assert node.matcher.prepared_images() == len(frames)
    diagnostics = harness.diagnostics_after(time.monotonic())
    assert diagnostics['pairs_processed'] == str(len(frames) - 1)
    assert {stamp_to_ns(msg.reference_header.stamp) for msg in messages} <= set(stamps[:-1])

    # The same computation in this process, from the same frames, by the node's configuration.
    matcher = Matcher(node.matcher.config)
    by_stamp = dict(zip(stamps, frames))
    for msg in messages:
        assert msg.model == f'eloftr:{eloftr_hf_dir}'
        reference = by_stamp[stamp_to_ns(msg.reference_header.stamp)]
        current = by_stamp[stamp_to_ns(msg.header.stamp)]
        expected = matcher.match(reference, current)
        result = result_from_matches_msg(msg)
        assert len(expected.scores) >= 10
        np.testing.assert_allclose(result.keypoints0, expected.keypoints0, atol=1e-3)
        np.testing.assert_allclose(result.keypoints1, expected.keypoints1, atol=1e-3)
        np.testing.assert_allclose(result.scores, expected.scores, atol=1e-4)
