"""What ``loftr-ros eval`` and ``loftr-ros record`` share: their bag, pairing and matcher
arguments, the :class:`~loftr_ros.core.replay.ReplayOptions` and matcher runs these give (the
mode and topics not given inferred from the bag), and the warning for a skipped pair. The
replay itself is :mod:`loftr_ros.core.replay`."""
import sys
from collections import Counter
from pathlib import Path
from typing import Callable, List, NamedTuple, Tuple

from loftr_ros.core.bag import IMAGE_TYPES, BagReader
from loftr_ros.core.config import MatcherConfig, load_matcher_config
from loftr_ros.core.errors import ConfigError, ImageError
from loftr_ros.core.replay import MODES, ReplayOptions
from loftr_ros.core.tracking.config import TrackerConfig, load_tracks_settings
from loftr_ros.tools.arguments import add_matcher_arguments

# Frames per topic whose stamps tell a stereo pair (equal stamps) from two unrelated cameras.
STAMP_SAMPLE = 20


def add_pairing_arguments(parser, tracks: bool = False):
    """Bag, topics, pairing and matcher options; `tracks`: --mode also offers 'tracks'."""
    defaults = ReplayOptions()
    parser.add_argument('bag', help='rosbag2 directory (sqlite3 or mcap) or ROS 1 .bag file')
    parser.add_argument('--mode', choices=MODES + (('tracks',) if tracks else ()),
                        help='default: inferred from the bag: consecutive with --topic or '
                             '--ground-truth or when it has one image topic, stereo with '
                             '--left/--right or when it has two whose stamps are equal'
                             + ('; tracks: the feature tracker over the frames, stereo or '
                                'mono (--topic) as the pairs would be' if tracks else ''))
    parser.add_argument('--left', help='stereo: left image topic, raw or compressed (default: '
                                       'the first, by name, of two image topics)')
    parser.add_argument('--right', help='stereo: right image topic (default: the second)')
    parser.add_argument('--topic', help='consecutive: the image topic; implies --mode '
                                        'consecutive (default: the first image topic by name)')
    parser.add_argument('--slop-ms', type=float, default=defaults.slop_ns / 1e6,
                        help='stereo: largest stamp difference of a pair in ms (default: '
                             '%(default)s, equal stamps)')
    parser.add_argument('--step', type=int, default=defaults.step,
                        help='consecutive: pair frame i with frame i+STEP, every STEP-th frame '
                             '(default: %(default)s)')
    parser.add_argument('--first', type=int,
                        help='first frame index of the left/only topic (default: the first)')
    parser.add_argument('--last', type=int, help='last frame index, inclusive (default: the last)')
    parser.add_argument('--start', type=float,
                        help='time window start, seconds from bag start (default: its start)')
    parser.add_argument('--end', type=float,
                        help='time window end (inclusive), seconds from bag start (default: its '
                             'end)')
    parser.add_argument('--max-pairs', type=int, help='stop after this many pairs (default: all)')
    tracks_section = (", and in tracks mode its tracks section (the tracker's settings)"
                      if tracks else '')
    parser.add_argument('--config', help="matcher YAML, plain or the node's parameter file: its "
                                         f'matcher section{tracks_section} (default: none, the '
                                         'defaults)')
    add_matcher_arguments(parser, ('backend', 'device'), repeatable=('backend',))


def replay_options(args, reader: BagReader) -> Tuple[ReplayOptions, str]:
    """The ReplayOptions of the pairing arguments, with the mode and topics that were not given
    inferred from the bag's image topics, and a sentence saying which pairs these are and why.
    ConfigError when the arguments contradict each other or the bag leaves the choice open."""
    # Tracks follow the frames of the pairs the other arguments select: stereo or one topic.
    mode = None if args.mode == 'tracks' else args.mode
    if args.topic and (mode == 'stereo' or args.left or args.right):
        raise ConfigError('--topic is the image topic of consecutive pairs; stereo pairs take '
                          '--left and --right')
    if (args.left or args.right) and mode == 'consecutive':
        raise ConfigError('--left/--right are the topics of stereo pairs; consecutive pairs '
                          'take --topic')
    images = sorted(topic for topic, kind in reader.topics.items() if kind in IMAGE_TYPES)
    if mode is None:
        if args.topic:
            mode, why = 'consecutive', 'as --topic asks'
        elif args.left or args.right:
            mode, why = 'stereo', 'as --left/--right ask'
        elif getattr(args, 'ground_truth', None) and args.mode != 'tracks':
            mode, why = 'consecutive', 'as --ground-truth scores consecutive pairs'
        else:
            mode, why = _infer_mode(reader, images)
    else:
        why = f'as --mode {mode} asks'
    if args.mode == 'tracks':
        why = f'tracks, {why}'
    topics = {}
    if mode == 'consecutive':
        topics['topic'] = args.topic or _image_topics(reader, images, 1)[0]
        if not args.topic and len(images) > 1:
            why += f', the first of its {len(images)} image topics'
        text = f"consecutive pairs of {topics['topic']} ({why})"
    else:
        given = [args.left, args.right]
        if None in given:
            found = [topic for topic in _image_topics(reader, images, 2) if topic not in given]
            given = [topic or found.pop(0) for topic in given]
        topics['left'], topics['right'] = given
        text = f'stereo pairs of {given[0]} (left) and {given[1]} (right) ({why})'
    options = ReplayOptions(mode=mode, **topics, slop_ns=int(args.slop_ms * 1e6),
                            step=args.step, first=args.first, last=args.last, start=args.start,
                            end=args.end, max_pairs=args.max_pairs)
    return options, text


def _image_topics(reader: BagReader, images: List[str], count: int) -> List[str]:
    """The first `count` image topics by name; ConfigError when the bag has fewer."""
    if len(images) < count:
        msg = (f'bag {reader.path} has {len(images)} image topic(s), {count} needed; its '
               f"topics: {_listing(reader)}")
        raise ConfigError(msg)
    return images[:count]


def _infer_mode(reader: BagReader, images: List[str]) -> Tuple[str, str]:
    """(mode, why) from the bag's image topics: one is matched frame to frame, two with equal
    stamps are a stereo pair; anything else needs the user's choice."""
    if len(images) == 1:
        return 'consecutive', "the bag's only image topic"
    if len(images) == 2:
        stamps = [_first_stamps(reader, topic) for topic in images]
        shared = len(set(stamps[0]) & set(stamps[1]))
        if shared and shared >= min(len(s) for s in stamps) / 2:
            return 'stereo', "the bag's two image topics, with equal stamps"
        msg = (f"bag {reader.path} has two image topics whose stamps differ ({', '.join(images)}):"
               f' give --mode stereo --slop-ms MS to pair them by nearest stamps, or --topic T '
               f'for consecutive pairs of one')
        raise ConfigError(msg)
    msg = (f'bag {reader.path} has {len(images)} image topics: give --topic T for consecutive '
           f'pairs or --left L --right R for stereo pairs; its topics: {_listing(reader)}')
    raise ConfigError(msg)


def _first_stamps(reader: BagReader, topic: str) -> List[int]:
    stamps = []
    for frame in reader.frames([topic]):
        stamps.append(frame.stamp_ns)
        if len(stamps) == STAMP_SAMPLE:
            break
    return stamps


def _listing(reader: BagReader) -> str:
    return ', '.join(f'{name} ({kind})' for name, kind in sorted(reader.topics.items()))


class Run(NamedTuple):
    """One configuration a tool runs: its label, the matcher's settings and the tracker's (the
    config file's tracks section, for tracks mode; its node-only stereo and calibration are
    what the pairing arguments and --calibration say here)."""

    label: str
    config: MatcherConfig
    tracker: TrackerConfig


def run_configs(args) -> List[Run]:
    """One Run per --compare file, else one per --backend, else one."""
    files = list(getattr(args, 'compare', None) or []) or [args.config]
    backends = args.backend or [None]
    runs = []
    for path in files:
        tracker = load_tracks_settings(path).tracker
        for backend in backends:
            config = load_matcher_config(path, backend=backend, device=args.device)
            label = config.backend if path is None else Path(path).stem
            if len(backends) > 1:
                label = f'{label}-{config.backend}' if path is not None else config.backend
            runs.append(Run(f'{label}-{config.config_id}', config, tracker))
    return runs


def warn_skipped(skipped: List[ImageError], what: str = 'pair') -> Callable[[ImageError], None]:
    """An `on_skip` for prepared_pairs: a warning on stderr, the error kept in `skipped`;
    `what` is skipped ('pair', or 'frame' in tracks mode)."""
    def warn(error: ImageError):
        print(f'\nwarning: {what} skipped: {error}', file=sys.stderr)
        skipped.append(error)
    return warn


def skipped_summary(skipped: List[ImageError], what: str = 'pair') -> str:
    """'N pair(s) skipped (cause count, ...) ...' for the final report; `what`: as
    warn_skipped."""
    causes = Counter(error.cause for error in skipped)
    counts = ', '.join(f'{cause} {count}' for cause, count in sorted(causes.items()))
    return (f'{len(skipped)} {what}(s) skipped ({counts}) for an image that does not decode, is '
            'above the limits or that the matcher refuses')
