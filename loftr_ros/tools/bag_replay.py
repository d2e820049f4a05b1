"""What ``loftr-ros eval`` and ``loftr-ros record`` share: their bag, pairing and matcher
arguments, the :class:`~loftr_ros.core.replay.ReplayOptions` and matcher runs these give, and
the warning for a skipped pair. The replay itself is :mod:`loftr_ros.core.replay`."""
import sys
from collections import Counter
from pathlib import Path
from typing import Callable, List, Tuple

from loftr_ros.core.config import MatcherConfig, load_matcher_config
from loftr_ros.core.errors import ImageError
from loftr_ros.core.replay import MODES, ReplayOptions
from loftr_ros.tools.arguments import add_matcher_arguments


def add_pairing_arguments(parser):
    """Bag, topics, pairing and matcher options."""
    defaults = ReplayOptions()
    parser.add_argument('bag', help='rosbag2 directory (sqlite3 or mcap) or ROS 1 .bag file')
    parser.add_argument('--mode', choices=MODES, default=defaults.mode)
    parser.add_argument('--left', default=defaults.left,
                        help='stereo: left image topic (raw or compressed)')
    parser.add_argument('--right', default=defaults.right, help='stereo: right image topic')
    parser.add_argument('--topic', default=defaults.topic, help='consecutive: the image topic')
    parser.add_argument('--slop-ms', type=float, default=defaults.slop_ns / 1e6,
                        help='stereo: largest stamp difference of a pair (default exact)')
    parser.add_argument('--step', type=int, default=defaults.step,
                        help='consecutive: pair frame i with frame i+STEP, every STEP-th frame')
    parser.add_argument('--first', type=int, help='first frame index (of the left/only topic)')
    parser.add_argument('--last', type=int, help='last frame index, inclusive')
    parser.add_argument('--start', type=float, help='time window start, seconds from bag start')
    parser.add_argument('--end', type=float,
                        help='time window end (inclusive), seconds from bag start')
    parser.add_argument('--max-pairs', type=int, help='stop after this many pairs')
    parser.add_argument('--config', help='matcher YAML (plain or the node\'s parameter file)')
    add_matcher_arguments(parser, ('backend', 'device'), repeatable=('backend',))


def replay_options(args) -> ReplayOptions:
    """The ReplayOptions of the pairing arguments."""
    return ReplayOptions(mode=args.mode, left=args.left, right=args.right, topic=args.topic,
                         slop_ns=int(args.slop_ms * 1e6), step=args.step, first=args.first,
                         last=args.last, start=args.start, end=args.end,
                         max_pairs=args.max_pairs)


def run_configs(args) -> List[Tuple[str, MatcherConfig]]:
    """[(label, MatcherConfig)]: one per --compare file, else one per --backend, else one."""
    files = list(getattr(args, 'compare', None) or []) or [args.config]
    backends = args.backend or [None]
    runs = []
    for path in files:
        for backend in backends:
            config = load_matcher_config(path, backend=backend, device=args.device)
            label = config.backend if path is None else Path(path).stem
            if len(backends) > 1:
                label = f'{label}-{config.backend}' if path is not None else config.backend
            runs.append((f'{label}-{config.config_id}', config))
    return runs


def warn_skipped(skipped: List[ImageError]) -> Callable[[ImageError], None]:
    """An `on_skip` for prepared_pairs: a warning on stderr, the error kept in `skipped`."""
    def warn(error: ImageError):
        print(f'\nwarning: pair skipped: {error}', file=sys.stderr)
        skipped.append(error)
    return warn


def skipped_summary(skipped: List[ImageError]) -> str:
    """'N pair(s) skipped (cause count, ...) ...' for the final report."""
    causes = Counter(error.cause for error in skipped)
    counts = ', '.join(f'{cause} {count}' for cause, count in sorted(causes.items()))
    return (f'{len(skipped)} pair(s) skipped ({counts}) for an image that does not decode, is '
            'above the limits or that the matcher refuses')
