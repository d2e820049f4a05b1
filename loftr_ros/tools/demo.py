"""`make demo`: the matcher node end to end, in under a minute on a laptop CPU.

Starts ``matcher_node`` in its own process (stereo mode, xfeat: real weights that install
offline), plays a stereo sequence to it over DDS, prints a line per matched pair and a summary
(pairs, matches per pair, latency, drops), and writes the node's overlay images to
demo_output/.

The default sequence is a real photo collage (scikit-image's bundled photos) rendered by
loftr_ros.core.synthetic along a known stereo camera path, so the summary can also say how
many matches lie on the true epipolar geometry. ``--bag DIR`` replays the image topics of a
rosbag2 directory instead (sqlite3 or mcap): two image topics are played as a stereo pair, one
as a consecutive-frame sequence.

    python -m loftr_ros.tools.demo [--bag DIR] [--backend xfeat] [--frames 16] [--rate 2]
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

OUTPUT_DIR = Path('demo_output')
# The demo's parameters, on top of the mode's file (both in the package's config/).
DEMO_PARAMETERS = 'demo.yaml'


def parse_args(argv):
    parser = argparse.ArgumentParser(prog='make demo', description=__doc__.split('\n\n')[0])
    parser.add_argument('--bag', type=Path, help='rosbag2 directory to replay instead')
    # Not given: config/demo.yaml's value, else the mode's parameters file's.
    parser.add_argument('--backend', help="matcher backend (default: config/demo.yaml's, xfeat; "
                        'eloftr needs its weights)')
    parser.add_argument('--weights', help="weights for the backend (default: the backend's)")
    parser.add_argument('--device', help='auto, cpu, cuda or cuda:N (default auto)')
    parser.add_argument('--frames', type=int, default=16,
                        help='stereo pairs to render, or frames/pairs to replay from a bag')
    parser.add_argument('--rate', type=float, default=2.0,
                        help='synthetic pairs published per second')
    parser.add_argument('--speed', type=float, default=0.1,
                        help='bag playback speed factor (a 20 Hz bag at 0.1: 2 pairs/s)')
    parser.add_argument('--output', type=Path, default=OUTPUT_DIR,
                        help='where overlay PNGs and the node log go')
    return parser.parse_args(argv)


def synthetic_sequence(count):
    """[(stamp_ns, {topic: bgr image})] of a stereo camera moving in front of the photo wall,
    and the stereo calibration to check matches against."""
    from loftr_ros.core import synthetic
    camera = synthetic.default_camera(640, 480, 500.0)
    frames = []
    for index, pose in enumerate(synthetic.camera_path(count)):
        left_pose, right_pose = synthetic.stereo_pair(pose)
        left, _ = synthetic.render(camera, left_pose, supersample=1)
        right, _ = synthetic.render(camera, right_pose, supersample=1)
        frames.append({'left': left, 'right': right})
        if sys.stdout.isatty():
            print(f'\rrendering the synthetic stereo sequence: {index + 1}/{count}', end='',
                  flush=True)
    print(f'\rrendered a synthetic stereo sequence of {count} pairs (640x480, photos from '
          f'scikit-image on a multi-plane scene, known poses)')
    return frames, synthetic.stereo_calibration(camera)


def config_directory() -> Path:
    """The installed config/ of the package (what `ros2 launch` uses too)."""
    from ament_index_python.packages import get_package_share_directory
    return Path(get_package_share_directory('loftr_ros')) / 'config'


def demo_parameters(config_dir: Path) -> dict:
    """The ros__parameters of config/demo.yaml."""
    import yaml
    document = yaml.safe_load((config_dir / DEMO_PARAMETERS).read_text())
    return document['/**']['ros__parameters']


def node_arguments(args, mode, remappings, config_dir: Path):
    """(parameters, ros_args) of the node: the mode's parameters file of config/, then
    config/demo.yaml (the demo's own values), then the flags given (as parameters)."""
    files = [config_dir / ('stereo_matcher.yaml' if mode == 'stereo' else 'matcher.yaml'),
             config_dir / DEMO_PARAMETERS]
    ros_args = [argument for path in files for argument in ('--params-file', str(path))]
    for source, target in remappings.items():
        ros_args += ['-r', f'{source}:={target}']
    parameters = {f'matcher.{name}': getattr(args, name)
                  for name in ('backend', 'weights', 'device') if getattr(args, name) is not None}
    return parameters, ros_args


def start_node(args, mode, remappings, log_path, config_dir):
    from loftr_ros.testing.client import NodeProcess
    parameters, ros_args = node_arguments(args, mode, remappings, config_dir)
    return NodeProcess(parameters, log_path, ros_args)


class DemoClient:
    """The demo's MatcherClient (`client`) and what it receives: prints a line per Matches,
    keeps what the summary needs, writes the node's overlays as PNGs."""

    def __init__(self, output, calibration):
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        from loftr_ros.testing.client import MATCHER_NODE, MatcherClient
        self.output = output
        self.calibration = calibration
        self.results = []        # (latency_s, matches, inliers, within_1px or None)
        self.overlays = 0
        self.client = MatcherClient(
            name='loftr_ros_demo', qos=QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE),
            on_matches=self._on_matches)
        self.client.node.create_subscription(Image, f'{MATCHER_NODE}/overlay', self._on_overlay,
                                             10)

    def _on_matches(self, msg):
        from loftr_ros.core.camera import sampson_distances
        from loftr_ros.core.stamps import stamp_to_ns
        from loftr_ros.ros.conversions import result_from_matches_msg
        result = result_from_matches_msg(msg)
        latency = self.client.latency_s(stamp_to_ns(msg.header.stamp))
        accuracy = None
        if self.calibration is not None and len(result):
            distances = sampson_distances(result.keypoints0, result.keypoints1,
                                          self.calibration)
            accuracy = float(np.mean(distances < 1.0))
        with self.client.lock:
            self.results.append((latency, len(result), result.num_inliers, accuracy))
            number = len(self.results)
        line = (f'  pair {number:3d}  stamp {msg.header.stamp.sec}.{msg.header.stamp.nanosec:09d}'
                f'  {len(result):5d} matches ({result.num_inliers} inliers'
                f'{", " + result.geometry_model if result.geometry_model else ""})'
                f'  latency {latency * 1e3:6.0f} ms')
        if accuracy is not None:
            line += f'  {accuracy * 100:5.1f} % within 1 px of the true epipolar lines'
        print(line, flush=True)

    def _on_overlay(self, msg):
        import cv2

        from loftr_ros.core.image_conversion import image_from_msg
        self.overlays += 1
        cv2.imwrite(str(self.output / f'overlay_{self.overlays:04d}.png'), image_from_msg(msg))


def bag_sequence(bag_dir, count):
    """(mode, {role: bag topic}, [(topic, msg)]) for up to `count` frames (or pairs)."""
    from loftr_ros.core.errors import BagError
    from loftr_ros.testing.player import bag_image_messages, bag_image_topics
    topics = [topic for topic, _ in bag_image_topics(bag_dir)]
    if not topics:
        raise BagError(f'bag {bag_dir} has no sensor_msgs Image/CompressedImage topic')
    if len(topics) >= 2:
        mode, roles = 'stereo', {'left/image': topics[0], 'right/image': topics[1]}
    else:
        mode, roles = 'consecutive', {'image': topics[0]}
    messages = []
    for topic, msg in bag_image_messages(bag_dir, list(roles.values())):
        messages.append((topic, msg))
        if len(messages) >= count * len(roles):
            break
    return mode, roles, messages


def summarize(demo, published_pairs, started):
    from loftr_ros.core.evaluation import latency_summary
    with demo.client.lock:
        results = list(demo.results)
    diagnostics = demo.client.latest_diagnostics()
    latency = latency_summary([r[0] for r in results])
    counts = np.array([r[1] for r in results])
    inliers = np.array([r[2] for r in results])
    accuracies = [r[3] for r in results if r[3] is not None]
    drops = {key[6:]: value for key, value in diagnostics.items()
             if key.startswith('drops.') and value != '0'}
    print('\nSummary')
    print(f'  pairs published      {published_pairs}')
    print(f'  pairs matched        {len(results)}  (model {diagnostics.get("model", "?")} on '
          f'{diagnostics.get("device", "?")})')
    if len(results):
        print(f'  matches per pair     median {np.median(counts):.0f}  (min {counts.min()}, '
              f'max {counts.max()}); inliers median {np.median(inliers):.0f}')
        print(f'  latency publish->Matches received  p50 {latency["p50_ms"]:.0f} ms'
              f'  p95 {latency["p95_ms"]:.0f} ms')
    if accuracies:
        print(f'  on the true epipolar geometry (<1 px Sampson): '
              f'{np.mean(accuracies) * 100:.1f} % of matches')
    print(f'  drops                {", ".join(f"{k}: {v}" for k, v in drops.items()) or "none"}'
          f'  (superseded = a newer pair arrived while the model was busy)')
    print(f'  overlays             {demo.overlays} PNGs in {demo.output}/')
    print(f'  wall time            {time.monotonic() - started:.0f} s')


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    args.output.mkdir(parents=True, exist_ok=True)
    for old in args.output.glob('overlay_*.png'):
        old.unlink()

    from loftr_ros.core.errors import LoftrRosError
    from loftr_ros.core.stamps import stamp_to_ns
    from loftr_ros.ros.conversions import image_msg_from_array, make_header
    try:
        if args.bag is not None:
            mode, roles, messages = bag_sequence(args.bag, args.frames)
            frames, calibration = None, None
            print(f'replaying {len(messages)} messages of {", ".join(roles.values())} from '
                  f'{args.bag} ({mode} mode)')
        else:
            mode, roles = 'stereo', {'left/image': '/demo/left/image_raw',
                                     'right/image': '/demo/right/image_raw'}
    except LoftrRosError as error:
        print(f'demo: {error}', file=sys.stderr)
        return 1

    log_path = args.output / 'matcher_node.log'
    config_dir = config_directory()
    own = demo_parameters(config_dir)
    backend = args.backend or own['matcher']['backend']
    process = start_node(args, mode, roles, log_path, config_dir)
    try:
        if args.bag is None:
            frames, calibration = synthetic_sequence(args.frames)
        demo = DemoClient(args.output, calibration)
        client = demo.client
        try:
            print(f'starting matcher_node ({backend}, log: {log_path})...', flush=True)
            try:
                client.wait_for_subscribers(roles.values(), timeout=120.0, process=process)
            except TimeoutError:
                print(f'demo: matcher_node did not come up; its log ({log_path}):',
                      file=sys.stderr)
                print(process.log[-3000:], file=sys.stderr)
                return 1
            last_stamp = None
            published = 0
            if frames is not None:
                for images in frames:
                    stamp = client.publish_pair(
                        (roles['left/image'], roles['right/image']),
                        [image_msg_from_array(images[side], 'bgr8', make_header(0, f'demo_{side}'))
                         for side in ('left', 'right')])
                    last_stamp, published = stamp, published + 1
                    time.sleep(1.0 / args.rate)
            else:
                speed = args.speed
                first_bag, first_wall = None, time.monotonic()
                for topic, msg in messages:
                    stamp = stamp_to_ns(msg.header.stamp)
                    first_bag = stamp if first_bag is None else first_bag
                    wait = first_wall + (stamp - first_bag) * 1e-9 / speed - time.monotonic()
                    time.sleep(max(0.0, wait))
                    client.publish(topic, msg)
                    if topic == list(roles.values())[-1]:
                        last_stamp, published = stamp, published + 1
            if last_stamp is not None:
                try:
                    client.wait_for_stamp(last_stamp, timeout=30.0)
                except TimeoutError:
                    print('demo: the last pair was not matched within 30 s', file=sys.stderr)
            time.sleep(own['diagnostics']['period'] + 0.1)  # one more diagnostics message
            summarize(demo, published, started)
        finally:
            client.close()
    finally:
        process.stop()
    print('\nTry EfficientLoFTR instead (needs its weights: run once with internet, or point '
          'to a local copy):\n'
          "  make demo DEMO_ARGS='--backend eloftr'\n"
          "  make demo DEMO_ARGS='--backend eloftr --weights /path/to/efficientloftr'\n"
          'Replay your own stereo bag: make demo BAG=/path/to/rosbag2_dir')
    return 0


if __name__ == '__main__':
    sys.exit(main())
