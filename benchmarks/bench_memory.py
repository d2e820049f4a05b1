"""Peak memory of matcher_node per image size and backend: what `matcher.max_image_pixels`
is chosen from.

For each backend the node runs in its own process (stereo mode, the backend's default resize,
warm-up on) with the pixel limit lifted, and gets one raw mono8 stereo pair of each size, in
ascending order: the node's peak resident memory (VmHWM in /proc) after a size's Matches
arrived is the peak for that size. A watchdog kills the node when its memory passes --cap-gib
(the larger sizes are then reported as above the cap), so that the measurement cannot take
the machine's memory from other processes.

    scripts/ros_env.sh python benchmarks/bench_memory.py [--backends opencv,xfeat,eloftr]
        [--sizes 640x480,1920x1080,...] [--cap-gib 8]

Raw mono8 images up to 32 MiB (33.5 MP) pass the shipped shared-memory profile's segment;
larger ones need a bigger segment (see the README).
"""
import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')

SIZES = '640x480,1920x1080,3840x2160,4096x4096,6000x4000'


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--backends', default='opencv,xfeat,eloftr')
    parser.add_argument('--sizes', default=SIZES)
    parser.add_argument('--cap-gib', type=float, default=8.0)
    parser.add_argument('--timeout', type=float, default=600.0, help='seconds per pair at most')
    return parser.parse_args()


def stereo_images(width, height):
    """A real photo scaled to the size, and the same view 2 % to the side."""
    from loftr_ros.core.synthetic import load_photo
    photo = cv2.cvtColor(load_photo('astronaut'), cv2.COLOR_BGR2GRAY)
    shift = width // 50
    wide = cv2.resize(photo, (width + shift, height), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(wide[:, shift:]), np.ascontiguousarray(wide[:, :width])


def eloftr_weights(directory: Path) -> str:
    """The published EfficientLoFTR architecture with random weights (no trained weights are
    reachable offline; memory depends on the architecture and the input size only)."""
    import torch

    from loftr_ros.core.models.efficientloftr import EfficientLoFTR
    from loftr_ros.core.models.efficientloftr_weights import save_hf, synthetic_weights
    model = EfficientLoFTR()
    left, _ = stereo_images(640, 480)
    synthetic_weights(model, [torch.from_numpy(left.astype(np.float32) / 255)[None, None]],
                      seed=0)
    save_hf(model, directory)
    return str(directory)


def memory_mib(pid: int) -> dict:
    """VmRSS and VmHWM (peak) of a process, MiB."""
    values = {}
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        key, _, rest = line.partition(':')
        if key in ('VmRSS', 'VmHWM'):
            values[key] = int(rest.split()[0]) / 1024
    return values


class Watchdog(threading.Thread):
    """Kills the node once its resident memory passes `cap_mib`."""

    def __init__(self, node, cap_mib):
        super().__init__(daemon=True)
        self.node, self.cap_mib, self.fired, self.stopped = node, cap_mib, False, False

    def run(self):
        while not self.stopped and self.node.process.poll() is None:
            try:
                if memory_mib(self.node.process.pid)['VmRSS'] > self.cap_mib:
                    self.fired = True
                    self.node.process.kill()
                    return
            except (OSError, KeyError):
                return
            time.sleep(0.05)


def run_backend(backend, sizes, args, weights):
    import rclpy
    from rclpy.context import Context

    from loftr_ros.ros.conversions import image_msg_from_array, make_header
    from loftr_ros.testing.client import MatcherClient, NodeProcess
    parameters = {'mode': 'stereo', 'matcher.backend': backend,
                  'matcher.max_image_pixels': 10**12, 'diagnostics.period': 1.0}
    if weights:
        parameters['matcher.weights'] = weights
    node = NodeProcess(parameters, Path(tempfile.mkdtemp()) / 'node.log')
    watchdog = Watchdog(node, args.cap_gib * 1024)
    watchdog.start()
    context = Context()
    rclpy.init(context=context)
    client = MatcherClient(context, 'bench_memory_client')
    rows = []
    try:
        node.wait_ready(300)
        client.wait_for_subscribers(['/left/image', '/right/image'], timeout=120, process=node)
        idle = memory_mib(node.process.pid)
        for width, height in sizes:
            row = {'backend': backend, 'size': f'{width}x{height}',
                   'mp': width * height / 1e6, 'idle': idle['VmRSS']}
            rows.append(row)
            if watchdog.fired or node.process.poll() is not None:
                row['peak'] = f'> {args.cap_gib:g} GiB'
                continue
            left, right = stereo_images(width, height)
            stamp = client.node.get_clock().now().nanoseconds
            for topic, image in (('/left/image', left), ('/right/image', right)):
                client.publish(topic, image_msg_from_array(image, 'mono8',
                                                           make_header(stamp, 'camera')))
            start = time.monotonic()
            deadline = start + args.timeout
            while stamp not in client.received_ns and time.monotonic() < deadline:
                if node.process.poll() is not None:
                    break
                time.sleep(0.05)
            if stamp in client.received_ns:
                memory = memory_mib(node.process.pid)
                row['peak'] = f"{memory['VmHWM']:.0f}"
                row['seconds'] = f'{time.monotonic() - start:.1f}'
            elif watchdog.fired:
                row['peak'] = f'> {args.cap_gib:g} GiB (killed)'
            else:
                row['peak'] = 'no Matches (timeout)'
            print(row, flush=True)
    finally:
        watchdog.stopped = True
        client.close()
        context.try_shutdown()
        node.stop()
    return rows


def main():
    args = parse_args()
    sizes = [tuple(int(v) for v in size.split('x')) for size in args.sizes.split(',')]
    load = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for backend in args.backends.split(','):
            weights = eloftr_weights(Path(directory)) if backend == 'eloftr' else ''
            rows += run_backend(backend, sizes, args, weights)
    print(f'\nmatcher_node peak resident memory (VmHWM), stereo, one raw mono8 pair per size in '
          f'ascending order; load average {load[0]:.1f} at the start, '
          f'{os.getloadavg()[0]:.1f} at the end\n')
    print('| backend | size | MP | idle RSS [MiB] | peak RSS [MiB] | publish to Matches [s] |')
    print('|---|---|---|---|---|---|')
    for row in rows:
        print(f"| {row['backend']} | {row['size']} | {row['mp']:.1f} | {row['idle']:.0f} | "
              f"{row['peak']} | {row.get('seconds', '-')} |")


if __name__ == '__main__':
    main()
