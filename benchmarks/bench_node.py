"""End-to-end latency of matcher_node and its overhead beyond the model.

For each image size, a stereo pair of a real photo collage (loftr_ros.core.synthetic) is
matched:
  1. reference: Matcher.match() called directly in this process (the model's own time);
  2. lockstep: the node in ANOTHER process, one pair published at a time, stamped with the
     current time; latency = Matches received here - image stamp. The node's overhead (image
     arrival to Matches ready, minus the matcher's time for that pair) comes from its
     /diagnostics;
  3. rate: pairs published at --rate Hz; latency and what the node dropped (latest wins).
--soak-minutes N runs phase 3 for N minutes and reports the node's memory growth.

    scripts/ros_env.sh python benchmarks/bench_node.py [--backend opencv] [--rate 20]
        [--pairs 30] [--sizes 640x480,752x480] [--device auto] [--soak-minutes 10]
"""
import argparse
import os
import time

import cv2

os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')


TOPICS = ('/left/image', '/right/image')


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--backend', default='opencv')
    parser.add_argument('--device', default='auto')
    parser.add_argument('--sizes', default='640x480,752x480')
    parser.add_argument('--pairs', type=int, default=30)
    parser.add_argument('--rate', type=float, default=20.0)
    parser.add_argument('--soak-minutes', type=float, default=0.0)
    return parser.parse_args()


def stereo_images(width, height):
    from loftr_ros.core import synthetic
    camera = synthetic.default_camera(width, height, 0.8 * width)
    left_pose, right_pose = synthetic.stereo_pair(synthetic.camera_path(1)[0])
    left, _ = synthetic.render(camera, left_pose, supersample=1)
    right, _ = synthetic.render(camera, right_pose, supersample=1)
    return cv2.cvtColor(left, cv2.COLOR_BGR2GRAY), cv2.cvtColor(right, cv2.COLOR_BGR2GRAY)


def p50_p95(values_s):
    """'p50 / p95' in milliseconds, 'n/a / n/a' without values."""
    from loftr_ros.core.evaluation import latency_summary
    if not len(values_s):
        return 'n/a / n/a'
    summary = latency_summary(values_s)
    return f"{summary['p50_ms']:.1f} / {summary['p95_ms']:.1f}"


def reference_times(backend, device, left, right, repeats):
    from loftr_ros.core.config import MatcherConfig
    from loftr_ros.core.matcher import Matcher
    matcher = Matcher(MatcherConfig(backend=backend, device=device))
    matcher.match(left, right)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        matcher.match(left, right)
        times.append(time.perf_counter() - start)
    return times, str(matcher.device), matcher.model_name


def stamp_to_arrival_s(client, stamp):
    """Image stamp to Matches received, in seconds."""
    with client.lock:
        return (client.received_ns[stamp] - stamp) * 1e-9


def run_size(args, width, height):
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from loftr_ros.ros.conversions import image_msg_from_array, make_header
    from loftr_ros.testing.client import MatcherClient, NodeProcess
    left, right = stereo_images(width, height)
    reference, device, model = reference_times(args.backend, args.device, left, right,
                                               args.pairs)
    node = NodeProcess({'mode': 'stereo', 'matcher.backend': args.backend,
                        'matcher.device': args.device, 'diagnostics.period': 0.5})
    client = MatcherClient(name='bench_node_client',
                           qos=QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
    try:
        try:
            client.wait_for_subscribers(TOPICS, timeout=120.0, process=node)
        except TimeoutError as error:
            raise SystemExit(f'matcher_node did not start ({width}x{height}): {error}') from None
        pair = [image_msg_from_array(left, 'mono8', make_header(0, 'left')),
                image_msg_from_array(right, 'mono8', make_header(0, 'right'))]
        lockstep = []
        for index in range(args.pairs + 2):
            stamp = client.publish_pair(TOPICS, pair)
            try:
                client.wait_for_stamp(stamp)
            except TimeoutError:
                continue
            if index >= 2:  # two warm-up pairs
                lockstep.append(stamp_to_arrival_s(client, stamp))
        time.sleep(0.6)  # one diagnostics period: the lockstep figures as the node saw them
        lock_diagnostics = client.latest_diagnostics()
        period = 1.0 / args.rate
        seconds = args.soak_minutes * 60 if args.soak_minutes else args.pairs * period
        start = time.monotonic()
        rss_start = node.rss_mib()
        rate_stamps = []
        while time.monotonic() - start < seconds:
            rate_stamps.append(client.publish_pair(TOPICS, pair))
            time.sleep(max(0.0, start + len(rate_stamps) * period - time.monotonic()))
        time.sleep(1.5)
        rss_end = node.rss_mib()
        sent = len(rate_stamps)
        rated = [stamp_to_arrival_s(client, stamp) for stamp in rate_stamps
                 if stamp in client.received_ns]
        diagnostics = client.latest_diagnostics()
    finally:
        client.close()
        node.stop()
    drops = {k[6:]: v for k, v in diagnostics.items() if k.startswith('drops.')}
    return {
        'size': f'{width}x{height}', 'model': model, 'device': device,
        'reference': p50_p95(reference), 'lockstep': p50_p95(lockstep),
        'node_matcher': f"{lock_diagnostics.get('matcher_p50_ms')} / "
                        f"{lock_diagnostics.get('matcher_p95_ms')}",
        'node_overhead': f"{lock_diagnostics.get('overhead_p50_ms')} / "
                         f"{lock_diagnostics.get('overhead_p95_ms')}",
        'rate': p50_p95(rated), 'sent': sent, 'matched': len(rated),
        'drops': ', '.join(f'{k} {v}' for k, v in drops.items()) or 'none',
        'rss': f'{rss_start:.0f} -> {rss_end:.0f} MiB over {seconds:.0f} s',
    }


def main():
    args = parse_args()
    rows = []
    for size in args.sizes.split(','):
        width, height = (int(v) for v in size.split('x'))
        rows.append(run_size(args, width, height))
        print(rows[-1], flush=True)
    soak = f', soak {args.soak_minutes:g} min' if args.soak_minutes else ''
    print(f'\nmatcher_node, stereo mono8, backend {args.backend}, {args.pairs} pairs, '
          f'rate phase {args.rate:g} Hz{soak}')
    print('times in ms, p50 / p95. node overhead = time from image arrival at the node to '
          'Matches ready, minus the matcher\'s own time for that pair (measured in the node)\n')
    print('| size | model | device | Matcher.match in this process | matcher time in node | '
          'node overhead | end-to-end lockstep | end-to-end at rate | sent / matched | drops | '
          'node RSS |')
    print('|---|---|---|---|---|---|---|---|---|---|---|')
    for r in rows:
        print(f"| {r['size']} | {r['model']} | {r['device']} | {r['reference']} | "
              f"{r['node_matcher']} | {r['node_overhead']} | {r['lockstep']} | {r['rate']} | "
              f"{r['sent']} / {r['matched']} | {r['drops']} | {r['rss']} |")


if __name__ == '__main__':
    main()
