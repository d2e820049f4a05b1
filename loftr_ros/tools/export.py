"""`loftr-ros export --size WxH`: write the ONNX graphs of a matcher configuration (runtime
onnxruntime) into the cache where the node and the other tools find them, then load them with
the configured providers and match one pair per size, so that ONNX Runtime builds its TensorRT
engines now rather than at the node's first frame."""
import time

from loftr_ros.core.config import load_matcher_config
from loftr_ros.core.errors import ConfigError
from loftr_ros.core.onnx_runtime import cache_dir
from loftr_ros.tools.arguments import add_matcher_arguments, matcher_overrides


def parse_size(text: str):
    """'752x480' -> (752, 480)."""
    try:
        width, height = (int(value) for value in text.lower().split('x'))
    except ValueError:
        raise ConfigError(f"image size '{text}': expected WIDTHxHEIGHT, e.g. 752x480") from None
    if width <= 0 or height <= 0:
        raise ConfigError(f"image size '{text}': sides must be positive")
    return width, height


def add_arguments(parser):
    parser.add_argument('--size', action='append', required=True, metavar='WxH',
                        help='camera image size as received (before any resize); repeat for '
                        'several cameras. eloftr needs one export per size, xfeat takes any size')
    parser.add_argument('--config', help="YAML file with a 'matcher' section (plain or ROS "
                        'parameters file, e.g. config/stereo_matcher.yaml): the settings the node '
                        'will run with')
    add_matcher_arguments(parser, exclude=('runtime', 'warmup'))
    parser.add_argument('--force', action='store_true',
                        help='export again even when the cache has the graphs (after replacing '
                        'weights files in place)')
    parser.add_argument('--no-check', action='store_true',
                        help='only write the graphs (for copying the cache to another machine); '
                        'by default they are also loaded with the providers and run once')


def run(args) -> int:
    from loftr_ros.core.matcher import Matcher, export_onnx

    sizes = [parse_size(text) for text in args.size]
    config = load_matcher_config(args.config, **{**matcher_overrides(args),
                                                 'runtime': 'onnxruntime', 'warmup': False})
    start = time.perf_counter()
    paths = export_onnx(config, sizes, args.force)
    print(f'{config.backend} graphs (export id of these settings in each name) in '
          f'{cache_dir() / "onnx"}, {time.perf_counter() - start:.0f} s:')
    for path in paths:
        print(f'  {path.name}')
    if args.no_check:
        return 0
    matcher = Matcher(config)
    for width, height in sizes:
        start = time.perf_counter()
        matcher.warm_up([(width, height)])
        print(f'{width}x{height}: loaded and run on '
              f'{", ".join(matcher.backend.providers.names)} in '
              f'{time.perf_counter() - start:.1f} s')
    return 0
