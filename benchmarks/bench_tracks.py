"""Frames per second of matcher_node's tracks mode, end to end through the node (issue 11,
acceptance 6; a benchmark, not a test).

The EuRoC stereo bag (../shared/data/euroc_v101_stereo, 752x480) is replayed by this process
into matcher_node running in ANOTHER process (started here, tracks mode, the bag's calibration):
each frame (a stereo pair, or the left image in mono) is published as soon as the node's
~/tracks for the previous one arrived, so the node is never idle and never drops (latest wins
plays no part): frames per second is the node's capacity for that configuration, transport,
conversion, tracking in the matching process and publication included. Per backend
(``--backend``, repeatable) it measures, one after the other with a fresh node each:

- ``stereo tracks``, ``mono tracks``;
- ``stereo matches``: the same backend in stereo mode (pairs matched, no tracking), the
  reference measured in the same run: on a shared machine absolute rates move with the load,
  the ratio of tracks to matching far less.

With ``--rate HZ`` the frames are published open loop instead, at that fixed rate as a camera
does, for ``--seconds``: frames per second is then the frames the node tracked (its outputs)
per second, with the share of the frames sent that were tracked (the others were superseded:
latest wins) and the latency from publication to output. A node whose per-frame work overlaps
with the transport of the next frame tracks more frames per second this way than closed loop,
where every round trip is on the critical path.

xfeat runs with mutual nearest neighbours (matcher.options.matcher: mnn), as the tracker's
target says. Writes a Markdown table to stdout and, with ``--output``, to a file (the machine's
load average is recorded with each row).

    scripts/ros_env.sh python benchmarks/bench_tracks.py [--backend xfeat --backend opencv]
        [--frames 60 | --rate 20 --seconds 30] [--set matcher.resize:=512 --label 'resize 512']
        [--output benchmarks/results/bench_tracks_cpu.md]
"""
import argparse
import os
import platform
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import numpy as np

os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
# scripts/ros_env.sh sets PYTHONSAFEPATH: this folder is not on the path by itself.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_node import EUROC_BAG, load_bag_pairs  # noqa: E402  (this folder's script)

CALIBRATION = EUROC_BAG.parent / 'calibration.yaml'
OPTIONS = {'xfeat': {'matcher.options.matcher': 'mnn'}}
CONFIGURATIONS = {
    'stereo tracks': {'mode': 'tracks', 'tracks.stereo': True},
    'mono tracks': {'mode': 'tracks', 'tracks.stereo': False},
    'stereo matches': {'mode': 'stereo'},
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--backend', action='append', help='xfeat, opencv, lightglue, ... '
                        '(repeatable; default xfeat and opencv)')
    parser.add_argument('--frames', type=int, default=60,
                        help='frames measured per configuration, after 5 of warm-up')
    parser.add_argument('--rate', type=float,
                        help='publish open loop at this rate (Hz) instead of closed loop')
    parser.add_argument('--seconds', type=float, default=30.0,
                        help='with --rate: seconds measured per configuration, after 5 frames '
                        'of warm-up sent closed loop')
    parser.add_argument('--set', action='append', default=[], metavar='NAME:=VALUE',
                        help='a node parameter for every row, e.g. matcher.resize:=512 '
                        '(repeatable)')
    parser.add_argument('--label', default='', help='what --set changed, for the table')
    parser.add_argument('--configuration', action='append', choices=list(CONFIGURATIONS),
                        help='measure only these (repeatable; default all three)')
    parser.add_argument('--output', type=Path, help='also write the table to this file')
    return parser.parse_args()


class Run:
    """One node in another process and the client that feeds it closed loop."""

    def __init__(self, backend: str, configuration: dict, settings: dict):
        from loftr_ros.msg import FeatureTracks
        from loftr_ros.testing.client import MatcherClient, NodeProcess
        self.tracks = configuration['mode'] == 'tracks'
        self.stereo = configuration.get('tracks.stereo', True)
        parameters = {'matcher.backend': backend, 'diagnostics.period': 0.5,
                      'qos_reliability': 'reliable', 'qos_depth': 10,
                      'tracks.calibration': str(CALIBRATION), **OPTIONS.get(backend, {}),
                      **configuration, **settings}
        self.node = NodeProcess(parameters)
        self.client = MatcherClient(name='bench_tracks_client')
        self.arrivals = {}
        self._lock = threading.Lock()
        if self.tracks:
            self.client.node.create_subscription(FeatureTracks, '/matcher_node/tracks',
                                                 self._on_output, 100)
        self.topics = ['/left/image', '/right/image'] if self.stereo else ['/image']
        self.client.wait_for_subscribers(self.topics, timeout=300.0, process=self.node)
        ros_now = self.client.node.get_clock().now().nanoseconds * 1e-9
        self._clock_offset = ros_now - time.monotonic()

    def _on_output(self, msg):
        from loftr_ros.core.stamps import stamp_to_ns
        with self._lock:
            self.arrivals[stamp_to_ns(msg.header.stamp)] = time.monotonic()

    def publish(self, pair, stamp: int):
        """Publish one frame (the left image alone in mono)."""
        self.client.publish_pair(self.topics, pair if self.stereo else pair[:1], stamp)

    def arrival(self, stamp: int) -> Optional[float]:
        """time.monotonic() when the output for the frame stamped `stamp` arrived (None: not
        yet, or never)."""
        if self.tracks:
            with self._lock:
                return self.arrivals.get(stamp)
        with self.client.lock:
            received = self.client.received_ns.get(stamp)
        # MatcherClient stamps arrivals by the ROS clock (ns); convert to monotonic seconds.
        return None if received is None else received * 1e-9 - self._clock_offset

    def send(self, pair, stamp: int, timeout: float = 120.0):
        """Publish one frame and wait for its output."""
        self.publish(pair, stamp)
        deadline = time.monotonic() + timeout
        while self.arrival(stamp) is None:
            self.node.raise_if_exited()
            if time.monotonic() > deadline:
                raise SystemExit(f'no output for the frame stamped {stamp} in {timeout} s')
            time.sleep(0.001)

    def close(self):
        self.client.close()
        self.node.stop()


def measure(backend: str, name: str, pairs, args, settings: dict) -> dict:
    run = Run(backend, CONFIGURATIONS[name], settings)
    try:
        stamp = time.time_ns()
        for index in range(5):  # warm-up: kernels, the tracker's first frames
            stamp += 50_000_000
            run.send(pairs[index % len(pairs)], stamp)
        load = os.getloadavg()[0]
        if args.rate:
            fps, tracked, times = open_loop(run, pairs, stamp, args.rate, args.seconds)
        else:
            fps, tracked, times = closed_loop(run, pairs, stamp, args.frames)
        diagnostics = run.client.diagnostics_after(time.monotonic(), timeout=30)
        return {'backend': backend, 'configuration': name, 'label': args.label or '-',
                'fps': fps, 'tracked': tracked,
                'p50_ms': np.percentile(times, 50) * 1e3, 'p95_ms': np.percentile(times, 95) * 1e3,
                'matcher_p50_ms': diagnostics.get('matcher_p50_ms', 'n/a'),
                'features': diagnostics.get('tracks_tracked', '-'),
                'load': (load + os.getloadavg()[0]) / 2}
    finally:
        run.close()


def closed_loop(run: Run, pairs, stamp: int, frames: int):
    """(frames per second, share of frames with an output: 1, round-trip seconds per frame)
    with each frame sent when the previous one's output arrived."""
    start = time.monotonic()
    times = []
    for index in range(frames):
        stamp += 50_000_000
        sent = time.monotonic()
        run.send(pairs[(5 + index) % len(pairs)], stamp)
        times.append(time.monotonic() - sent)
    return frames / (time.monotonic() - start), 1.0, times


def open_loop(run: Run, pairs, stamp: int, rate: float, seconds: float):
    """(outputs per second, share of the frames sent that got an output, seconds from
    publication to output of those) with frames published at `rate` for `seconds`, on the
    camera's schedule whatever the node does; outputs arriving up to 2 s after the last frame
    count, and the rate is over the span from the first publication to the last output."""
    period = 1.0 / rate
    sent = {}
    start = time.monotonic()
    for index in range(int(round(rate * seconds))):
        due = start + index * period
        time.sleep(max(0.0, due - time.monotonic()))
        stamp += int(period * 1e9)
        sent[stamp] = time.monotonic()
        run.publish(pairs[(5 + index) % len(pairs)], stamp)
        run.node.raise_if_exited()
    time.sleep(2.0)
    arrived = {stamp: run.arrival(stamp) for stamp in sent}
    arrived = {stamp: when for stamp, when in arrived.items() if when is not None}
    if not arrived:
        raise SystemExit(f'no output for any of the {len(sent)} frames published at {rate} Hz')
    end = max(arrived.values())
    times = [arrived[stamp] - sent[stamp] for stamp in arrived]
    return len(arrived) / (end - start), len(arrived) / len(sent), times


def table(rows) -> list:
    lines = ['| backend | settings | configuration | frames/s | vs stereo matches '
             '| frames tracked | latency p50 / p95 ms | node matcher p50 ms '
             '| features tracked (last) | load avg (1 min) |',
             '|---|---|---|---|---|---|---|---|---|---|']
    reference = {row['backend']: row['fps'] for row in rows
                 if row['configuration'] == 'stereo matches'}
    for row in rows:
        ratio = row['fps'] / reference[row['backend']] if row['backend'] in reference else None
        lines.append(
            f"| {row['backend']} | {row['label']} | {row['configuration']} | {row['fps']:.2f} | "
            f"{'-' if ratio is None else f'{ratio:.2f}'} | {row['tracked']:.1%} | "
            f"{row['p50_ms']:.0f} / "
            f"{row['p95_ms']:.0f} | {row['matcher_p50_ms']} | {row['features']} | "
            f"{row['load']:.1f} |")
    return lines


def main():
    args = parse_args()
    backends = args.backend or ['xfeat', 'opencv']
    pairs = load_bag_pairs(EUROC_BAG)
    rows = []
    settings = dict(item.partition(':=')[::2] for item in args.set)
    for backend in backends:
        for name in args.configuration or CONFIGURATIONS:
            rows.append(measure(backend, name, pairs, args, settings))
            print(table(rows)[-1], flush=True)
    header = [f'# bench_tracks: tracks mode end to end through matcher_node, EuRoC 752x480',
              '',
              f'{time.strftime("%Y-%m-%d %H:%M")}, {platform.processor() or platform.machine()}, '
              f'{os.cpu_count()} cores, ' + (
                  f'frames published open loop at {args.rate:g} Hz for {args.seconds:g} s per '
                  'row after 5 of warm-up (frames/s: outputs per second; latency: publication '
                  'to output).' if args.rate else
                  f'{args.frames} frames per row after 5 of warm-up, each frame sent when the '
                  'previous output arrived (the node at capacity, no drops; latency: the round '
                  'trip).'),
              '']
    text = '\n'.join(header + table(rows)) + '\n'
    print(text)
    if args.output:
        args.output.write_text(text)


if __name__ == '__main__':
    main()
