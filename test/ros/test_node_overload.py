"""Input faster than the model: latency stays bounded, memory flat, drops counted."""
import time

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from loftr_ros.core.stamps import stamp_to_ns
from loftr_ros.ros.conversions import image_msg_from_array, make_header

RATE_HZ = 30.0
SECONDS = 8.0


@pytest.mark.slow
def test_30hz_input_with_a_slower_model_keeps_latency_and_memory_bounded(node_process,
                                                                         harness):
    # OpenCV SIFT at 640x480 takes ~0.09-0.3 s per pair here: 3-11 Hz against 30 Hz input.
    node = node_process(mode='consecutive', **{
        'matcher.backend': 'opencv', 'consecutive.reference': 'previous',
        'diagnostics.period': 0.5, 'matcher.resize': 0})
    node.wait_ready()
    harness.wait_for_subscribers(['/image'])
    photo = cv2.cvtColor(np.ascontiguousarray(skdata.astronaut()[:, :, ::-1]),
                         cv2.COLOR_BGR2GRAY)
    frames = [cv2.resize(np.roll(photo, 4 * index, axis=1), (640, 480)) for index in range(8)]
    clock = harness.node.get_clock()
    start = time.monotonic()
    rss = {}
    sent = 0
    while (elapsed := time.monotonic() - start) < SECONDS:
        header = make_header(clock.now().nanoseconds, 'camera')
        harness.publish('/image', image_msg_from_array(frames[sent % len(frames)], 'mono8',
                                                       header))
        sent += 1
        for mark in (2.0, SECONDS - 0.5):
            if elapsed >= mark and mark not in rss:
                rss[mark] = node.rss_mib()
        time.sleep(max(0.0, start + sent / RATE_HZ - time.monotonic()))
    diagnostics = harness.diagnostics_after(time.monotonic())
    received = harness.wait_matches(1)

    frames = int(diagnostics['frames_received'])
    processed = int(diagnostics['pairs_processed'])
    superseded = int(diagnostics['drops.superseded'])
    # Enough input reached the node to overload it. Not every frame sent: while the model keeps
    # both CPU cores of a small machine busy, DDS itself drops best-effort samples (QoS depth 1)
    # before the node's callback runs; such samples never reach the node to be counted.
    assert frames >= 30, (sent, diagnostics)
    # Overloaded: a large share of what arrived was superseded by a newer frame. (On a quiet
    # machine SIFT ran at 11 Hz while DDS delivered 22 Hz, so half is not a safe bound.)
    assert 5 <= processed < 0.75 * frames, diagnostics
    assert superseded >= frames / 4, diagnostics
    # Every frame is accounted for: matched, superseded, or the first one / the one in work.
    assert 0 <= frames - processed - superseded <= 3, diagnostics
    # Latest wins: a published pair is at most about two model runs old, whatever the backlog.
    assert float(diagnostics['latency_p95_ms']) < 1500, diagnostics
    latencies = [(received_msg.processing_time.sec + received_msg.processing_time.nanosec
                  * 1e-9) for received_msg in received]
    # A growing backlog would make the late latencies grow by seconds; p90 keeps one stall of
    # a shared CPU (a scheduling hiccup, not a queue) from failing the test.
    assert np.percentile(latencies[len(latencies) // 2:], 90) < 1.5, latencies
    stamps = [stamp_to_ns(msg.header.stamp) for msg in received]
    assert stamps == sorted(stamps)
    assert rss[SECONDS - 0.5] - rss[2.0] < 40, rss
