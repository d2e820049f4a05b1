"""`loftr-ros record`: replay a bag's images through the matcher and write the Matches stream
(and optionally the overlay images) into a new rosbag2 bag.

The Matches type is registered in a rosbags typestore from the package's own ``msg/Matches.msg``,
so the bag carries the same definition and RIHS01 type hash as the built interface: rclpy
(``deserialize_message`` with ``loftr_ros.msg.Matches``), ``ros2 bag`` and rosbags all read it.
"""
import sys
from pathlib import Path

import numpy as np

from loftr_ros.core.bag import BagReader
from loftr_ros.core.camera import load_euroc_calibration
from loftr_ros.core.errors import BagError, ConfigError
from loftr_ros.core.replay import iterate_pairs, match_pair, prepared_pairs
from loftr_ros.core.stamps import duration_sec_nanosec, sec_nanosec
from loftr_ros.tools.bag_replay import (add_pairing_arguments, replay_options, run_configs,
                                        skipped_summary, warn_skipped)

MATCHES_TYPE = 'loftr_ros/msg/Matches'
IMAGE_TYPE = 'sensor_msgs/msg/Image'


def matches_definition_path() -> Path:
    """msg/Matches.msg of the installed package (ament index), else beside the sources."""
    try:
        from ament_index_python.packages import (PackageNotFoundError,
                                                 get_package_share_directory)
    except ImportError:
        get_package_share_directory = None
    if get_package_share_directory is not None:
        try:
            return Path(get_package_share_directory('loftr_ros')) / 'msg' / 'Matches.msg'
        except PackageNotFoundError:
            pass
    package = Path(__file__).resolve().parents[1]
    # Installed by colcon: <prefix>/lib/pythonX.Y/site-packages/loftr_ros -> <prefix>/share.
    candidates = [package.parents[3] / 'share' / 'loftr_ros' / 'msg' / 'Matches.msg',
                  package.parent / 'msg' / 'Matches.msg']
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    msg = ('cannot find msg/Matches.msg: not in the ament index and not at '
           f"{' or '.join(str(c) for c in candidates)}")
    raise ConfigError(msg)


def matches_typestore():
    """A ROS 2 typestore with loftr_ros/msg/Matches registered from its .msg definition."""
    from rosbags.typesys import Stores, get_typestore, get_types_from_msg
    typestore = get_typestore(Stores.ROS2_KILTED)
    typestore.register(get_types_from_msg(matches_definition_path().read_text(), MATCHES_TYPE))
    return typestore


def add_arguments(parser):
    add_pairing_arguments(parser)
    parser.add_argument('--output', '-o', required=True, help='new rosbag2 directory')
    parser.add_argument('--storage', choices=('sqlite3', 'mcap'), default='mcap')
    parser.add_argument('--matches-topic', default='/matcher_node/matches')
    parser.add_argument('--overlay-topic', default='/matcher_node/overlay',
                        help='written only with --overlay')
    parser.add_argument('--overlay', action='store_true', help='also write the overlay images')
    parser.add_argument('--calibration',
                        help='EuRoC/Kalibr calibration.yaml: cameras for essential verification')


def _header(types, frame):
    sec, nanosec = sec_nanosec(frame.stamp_ns)
    stamp = types['builtin_interfaces/msg/Time'](sec=sec, nanosec=nanosec)
    return types['std_msgs/msg/Header'](stamp=stamp, frame_id=frame.frame_id)


def _duration(types, seconds: float):
    # The same rounding as the node's: the recorded processing_time is the one it publishes.
    sec, nanosec = duration_sec_nanosec(seconds)
    return types['builtin_interfaces/msg/Duration'](sec=sec, nanosec=nanosec)


def matches_message(types, pair, result, model: str, config_id: str):
    """The Matches message the node would publish for this pair and result."""
    inliers = (result.inliers if result.inliers is not None else np.zeros(0, np.uint8))
    return types[MATCHES_TYPE](
        header=_header(types, pair.frame1), reference_header=_header(types, pair.frame0),
        reference_width=result.image_size0[0], reference_height=result.image_size0[1],
        current_width=result.image_size1[0], current_height=result.image_size1[1],
        keypoints0=np.ascontiguousarray(result.keypoints0, np.float32).ravel(),
        keypoints1=np.ascontiguousarray(result.keypoints1, np.float32).ravel(),
        scores=np.ascontiguousarray(result.scores, np.float32),
        inliers=np.ascontiguousarray(inliers, np.uint8),
        geometry_model=result.geometry_model, model=model, config_id=config_id,
        processing_time=_duration(types, result.timings.get('total', 0.0)))


def run(args) -> int:
    from rosbags.rosbag2 import StoragePlugin, Writer, WriterError

    from loftr_ros.core.drawing import draw_matches
    from loftr_ros.core.image_conversion import image_to_msg_fields
    from loftr_ros.core.matcher import Matcher

    runs = run_configs(args)
    if len(runs) != 1:
        raise ConfigError('record writes one Matches stream: give one --backend/--config')
    _, config = runs[0]
    with BagReader(args.bag) as reader:
        options, pairing = replay_options(args, reader)
    calibration = load_euroc_calibration(args.calibration) if args.calibration else None
    camera0 = calibration.camera0 if calibration else None
    camera1 = calibration.camera1 if calibration else None
    output = Path(args.output)
    if output.exists():
        raise BagError(f'output bag {output} already exists')
    typestore = matches_typestore()
    types = typestore.types
    matcher = Matcher(config)
    print(f'loftr-ros record: {pairing}', flush=True)
    plugin = StoragePlugin.MCAP if args.storage == 'mcap' else StoragePlugin.SQLITE3
    written = 0
    skipped = []
    try:
        with BagReader(args.bag, config.max_image_pixels,
                       config.max_compressed_bytes) as reader, Writer(
                           output, version=9, storage_plugin=plugin) as writer:
            matches = writer.add_connection(args.matches_topic, MATCHES_TYPE,
                                            typestore=typestore)
            overlay = (writer.add_connection(args.overlay_topic, IMAGE_TYPE, typestore=typestore)
                       if args.overlay else None)
            try:
                pairs = iterate_pairs(reader, options)
                for prepared in prepared_pairs(matcher, pairs, warn_skipped(skipped)):
                    result = match_pair(matcher, prepared, camera0, camera1)
                    pair = prepared.pair
                    message = matches_message(types, pair, result, matcher.model_name,
                                              config.config_id)
                    writer.write(matches, pair.frame1.stamp_ns,
                                 typestore.serialize_cdr(message, MATCHES_TYPE))
                    if overlay is not None:
                        drawing = draw_matches(prepared.image0, prepared.image1, result)
                        fields = image_to_msg_fields(drawing, 'bgr8')
                        image = types[IMAGE_TYPE](header=_header(types, pair.frame1), **fields)
                        writer.write(overlay, pair.frame1.stamp_ns,
                                     typestore.serialize_cdr(image, IMAGE_TYPE))
                    written += 1
                    sys.stderr.write(f'\rrecorded {written} pairs')
            except KeyboardInterrupt:
                # The writer still closes: the bag holds every pair written so far.
                sys.stderr.write(f'\ninterrupted: {output} holds the first {written} pairs\n')
                return 130
    except WriterError as error:
        raise BagError(f'cannot write bag {output}: {error}') from None
    sys.stderr.write('\n')
    print(f'wrote {written} Matches messages to {output} ({args.matches_topic})'
          + (f'; {skipped_summary(skipped)}' if skipped else ''))
    return 0
