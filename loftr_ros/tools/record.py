"""`loftr-ros record`: replay a bag's images through the matcher and write the Matches stream
(and optionally the overlay images) into a new rosbag2 bag; with ``--mode tracks``, the feature
tracker's FeatureTracks and VINS-Fusion feature cloud (sensor_msgs/PointCloud), as the node
publishes them in tracks mode, for replay into a back-end.

The package's types are registered in a rosbags typestore from its own ``msg/*.msg``, so the
bag carries the same definitions and RIHS01 type hashes as the built interfaces: rclpy
(``deserialize_message`` with ``loftr_ros.msg.Matches``), ``ros2 bag`` and rosbags all read it.
"""
import sys
from collections import Counter
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from loftr_ros.core.bag import BagReader
from loftr_ros.core.camera import load_euroc_calibration
from loftr_ros.core.errors import BagError, ConfigError
from loftr_ros.core.replay import iterate_pairs, match_pair, prepared_pairs, tracked_frames
from loftr_ros.core.tracking.output import VINS_CHANNELS, feature_tracks_arrays, vins_features
from loftr_ros.core.stamps import duration_sec_nanosec, sec_nanosec
from loftr_ros.tools.bag_replay import (add_pairing_arguments, replay_options, run_configs,
                                        skipped_summary, warn_skipped)

MATCHES_TYPE = 'loftr_ros/msg/Matches'
TRACKS_TYPE = 'loftr_ros/msg/FeatureTracks'
IMAGE_TYPE = 'sensor_msgs/msg/Image'
POINT_CLOUD_TYPE = 'sensor_msgs/msg/PointCloud'


def definition_path(name: str = 'Matches') -> Path:
    """msg/<name>.msg of the installed package (ament index), else beside the sources."""
    try:
        from ament_index_python.packages import (PackageNotFoundError,
                                                 get_package_share_directory)
    except ImportError:
        get_package_share_directory = None
    if get_package_share_directory is not None:
        try:
            return Path(get_package_share_directory('loftr_ros')) / 'msg' / f'{name}.msg'
        except PackageNotFoundError:
            pass
    package = Path(__file__).resolve().parents[1]
    # Installed by colcon: <prefix>/lib/pythonX.Y/site-packages/loftr_ros -> <prefix>/share.
    candidates = [package.parents[3] / 'share' / 'loftr_ros' / 'msg' / f'{name}.msg',
                  package.parent / 'msg' / f'{name}.msg']
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    msg = (f'cannot find msg/{name}.msg: not in the ament index and not at '
           f"{' or '.join(str(c) for c in candidates)}")
    raise ConfigError(msg)


def package_typestore():
    """A ROS 2 typestore with loftr_ros/msg/Matches and FeatureTracks registered from their
    .msg definitions."""
    from rosbags.typesys import Stores, get_typestore, get_types_from_msg
    typestore = get_typestore(Stores.ROS2_KILTED)
    for kind in (MATCHES_TYPE, TRACKS_TYPE):
        typestore.register(get_types_from_msg(
            definition_path(kind.rsplit('/', 1)[1]).read_text(), kind))
    return typestore


def add_arguments(parser):
    add_pairing_arguments(parser, tracks=True)
    parser.add_argument('--output', '-o', required=True, help='new rosbag2 directory')
    parser.add_argument('--storage', choices=('sqlite3', 'mcap'), default='mcap')
    parser.add_argument('--matches-topic', default='/matcher_node/matches')
    parser.add_argument('--overlay-topic', default='/matcher_node/overlay',
                        help='written only with --overlay')
    parser.add_argument('--tracks-topic', default='/matcher_node/tracks',
                        help='tracks mode: the FeatureTracks topic')
    parser.add_argument('--feature-topic', default='/matcher_node/feature',
                        help="tracks mode: VINS-Fusion's feature cloud (sensor_msgs/PointCloud), "
                             'written with --calibration')
    parser.add_argument('--overlay', action='store_true',
                        help='also write the overlay images (pairs only)')
    parser.add_argument('--calibration',
                        help='EuRoC/Kalibr calibration.yaml: cameras for essential verification; '
                             "tracks mode: the tracker's cameras (undistorted coordinates, the "
                             'VINS cloud) and stereo extrinsics (default: none)')


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


def tracks_message(types, left, right, frame, model: str, config_id: str):
    """The FeatureTracks message the node would publish for this tracked frame (`right`: the
    right image's frame, None in mono)."""
    arrays = feature_tracks_arrays(frame)._asdict()
    width, height = frame.image_size
    right_width, right_height = frame.right_image_size or (0, 0)
    right_header = (_header(types, right) if right is not None else
                    types['std_msgs/msg/Header'](
                        stamp=types['builtin_interfaces/msg/Time'](sec=0, nanosec=0),
                        frame_id=''))
    return types[TRACKS_TYPE](
        header=_header(types, left), right_header=right_header, stereo=frame.stereo,
        width=width, height=height, right_width=right_width, right_height=right_height,
        **arrays, num_new=frame.num_new, num_lost=frame.num_lost, reset=frame.reset,
        model=model, config_id=config_id,
        processing_time=_duration(types, frame.timings.get('total', 0.0)))


def feature_message(types, left, frame):
    """VINS-Fusion's feature cloud of a tracked frame, None without camera models."""
    features = vins_features(frame)
    if features is None:
        return None
    point = types['geometry_msgs/msg/Point32']
    channel = types['sensor_msgs/msg/ChannelFloat32']
    return types[POINT_CLOUD_TYPE](
        header=_header(types, left),
        points=[point(x=float(x), y=float(y), z=float(z)) for x, y, z in features.points],
        channels=[channel(name=name, values=values)
                  for name, values in zip(VINS_CHANNELS, features.channels)])


def run(args) -> int:
    from rosbags.rosbag2 import StoragePlugin

    from loftr_ros.core.matcher import Matcher

    runs = run_configs(args)
    if len(runs) != 1:
        raise ConfigError('record writes one Matches stream: give one --backend/--config')
    _, config, tracker_config = runs[0]
    with BagReader(args.bag) as reader:
        options, pairing = replay_options(args, reader)
    if args.overlay and args.mode == 'tracks':
        raise ConfigError('--overlay draws matched pairs: not with --mode tracks')
    calibration = load_euroc_calibration(args.calibration) if args.calibration else None
    output = Path(args.output)
    if output.exists():
        raise BagError(f'output bag {output} already exists')
    typestore = package_typestore()
    matcher = Matcher(config)
    print(f'loftr-ros record: {pairing}', flush=True)
    plugin = StoragePlugin.MCAP if args.storage == 'mcap' else StoragePlugin.SQLITE3
    tracks = args.mode == 'tracks'
    what = 'frame' if tracks else 'pair'
    skipped = []
    if tracks:
        messages = _tracks_messages(args, matcher, config, tracker_config, options, calibration,
                                    typestore.types, warn_skipped(skipped, what))
    else:
        messages = _matches_messages(args, matcher, config, options, calibration,
                                     typestore.types, warn_skipped(skipped, what))
    topics = ({args.tracks_topic: TRACKS_TYPE, args.feature_topic: POINT_CLOUD_TYPE} if tracks
              else {args.matches_topic: MATCHES_TYPE,
                    **({args.overlay_topic: IMAGE_TYPE} if args.overlay else {})})
    counts = _write(output, plugin, typestore, topics, messages, BagReader(
        args.bag, config.max_image_pixels, config.max_compressed_bytes), what)
    if counts is None:
        return 130
    written = ', '.join(f'{counts[topic]} {kind.rsplit("/", 1)[1]} messages ({topic})'
                        for topic, kind in topics.items())
    print(f'wrote {written} to {output}'
          + (f'; {skipped_summary(skipped, what)}' if skipped else ''))
    return 0


def _write(output: Path, plugin, typestore, topics: Dict[str, str], messages, reader: BagReader,
           what: str) -> Optional[Counter]:
    """Write into the new bag `output` the messages that `messages(reader)` yields, for each
    pair or frame (`what`) a list of (topic, stamp_ns, message), the topics' types in
    `topics`. Returns the count written per topic, None when Ctrl-C stopped it (the bag then
    holds everything written so far)."""
    from rosbags.rosbag2 import Writer, WriterError

    counts, units = Counter(), 0
    try:
        with reader, Writer(output, version=9, storage_plugin=plugin) as writer:
            connections = {topic: writer.add_connection(topic, kind, typestore=typestore)
                           for topic, kind in topics.items()}
            try:
                for unit in messages(reader):
                    for topic, stamp_ns, message in unit:
                        writer.write(connections[topic], stamp_ns,
                                     typestore.serialize_cdr(message, topics[topic]))
                        counts[topic] += 1
                    units += 1
                    sys.stderr.write(f'\rrecorded {units} {what}s')
            except KeyboardInterrupt:
                # The writer still closes: the bag holds every message written so far.
                sys.stderr.write(f'\ninterrupted: {output} holds the first {units} {what}s\n')
                return None
    except WriterError as error:
        raise BagError(f'cannot write bag {output}: {error}') from None
    sys.stderr.write('\n')
    return counts


def _matches_messages(args, matcher, config, options, calibration, types, on_skip):
    """The messages of each matched pair: Matches, and the overlay with --overlay."""
    from loftr_ros.core.drawing import draw_matches
    from loftr_ros.core.image_conversion import image_to_msg_fields

    cameras = (calibration.camera0, calibration.camera1) if calibration else (None, None)

    def messages(reader):
        for prepared in prepared_pairs(matcher, iterate_pairs(reader, options), on_skip):
            result = match_pair(matcher, prepared, *cameras)
            pair = prepared.pair
            unit = [(args.matches_topic, pair.frame1.stamp_ns, matches_message(
                types, pair, result, matcher.model_name, config.config_id))]
            if args.overlay:
                drawing = draw_matches(prepared.image0, prepared.image1, result)
                fields = image_to_msg_fields(drawing, 'bgr8')
                unit.append((args.overlay_topic, pair.frame1.stamp_ns,
                             types[IMAGE_TYPE](header=_header(types, pair.frame1), **fields)))
            yield unit
    return messages


def _tracks_messages(args, matcher, config, tracker_config, options, calibration, types,
                     on_skip):
    """The messages of each tracked frame: FeatureTracks, and the VINS cloud when the cameras
    are known."""
    from loftr_ros.core.tracking import Tracker

    stereo = options.mode == 'stereo'
    tracker = Tracker(matcher, tracker_config)
    if calibration is not None:
        # As the node: the stereo extrinsics check the right observations.
        tracker.set_cameras(calibration.camera0, calibration.camera1 if stereo else None,
                            calibration=calibration if stereo else None)
    else:
        print(f'note: no {args.feature_topic} (the VINS cloud needs the cameras: give '
              '--calibration)', file=sys.stderr)

    def messages(reader):
        frames = tracked_frames(tracker, iterate_pairs(reader, options), on_skip)
        for left, right, frame in frames:
            unit = [(args.tracks_topic, left.stamp_ns, tracks_message(
                types, left, right, frame, matcher.model_name, config.config_id))]
            cloud = feature_message(types, left, frame)
            # As the node: no cloud for a frame without features (the first after a start).
            if cloud is not None and len(frame):
                unit.append((args.feature_topic, left.stamp_ns, cloud))
            yield unit
    return messages
