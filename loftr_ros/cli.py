"""`loftr-ros`: the command-line front of the package.

Each subcommand lives in its own module under :mod:`loftr_ros.tools` exposing
``add_arguments(parser)`` and ``run(args) -> int``; modules are imported only when their
subcommand runs, so ``loftr-ros match`` does not pay for the bag reader and vice versa.
Errors the package raises on purpose become one line on stderr and exit code 2.
"""
import argparse
import importlib
import sys

from loftr_ros.core.errors import LoftrRosError

SUBCOMMANDS = {
    'match': ('loftr_ros.tools.match', 'match two images and write JSON and an overlay'),
    'eval': ('loftr_ros.tools.evaluate', 'replay a bag through a matcher and report accuracy'),
    'record': ('loftr_ros.tools.record', 'write the Matches stream of a bag into a new bag'),
    'export': ('loftr_ros.tools.export', 'write the ONNX graphs of a configuration into the '
               'cache (runtime onnxruntime)'),
}


def build_parser(argv):
    parser = argparse.ArgumentParser(prog='loftr-ros', description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')
    # Only the chosen subcommand's module is imported; the others get a bare entry for --help.
    chosen = next((a for a in argv if not a.startswith('-')), None)
    modules = {}
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            modules[name] = importlib.import_module(module_name)
            modules[name].add_arguments(sub)
    return parser, modules


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser, modules = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        return modules[args.command].run(args)
    except LoftrRosError as error:
        print(f'loftr-ros {args.command}: error: {error}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == '__main__':
    sys.exit(main())
