"""Write the node's parameter documentation from their declarations (loftr_ros.ros.parameters:
GROUPS, each a dataclass declared with setting(); the matcher's is MatcherConfig).

What it writes: three tables of README.md (each between its two marker lines: the node's own
parameters, the matcher settings, the tracker's TrackerConfig) and the ``ros__parameters`` of
every ``config/*matcher.yaml``: one comment per parameter from its help text, the groups and
parameters in declared order (the ``matcher`` section last), and the file's own value where it
sets one (the declared default for a new parameter). The lines above ``ros__parameters`` are the
file's own. After adding or changing a parameter:

    make docs                                                   # rewrite README.md, config/
    scripts/ros_env.sh python scripts/settings_docs.py --check  # exit 1 with the difference
"""
import argparse
import difflib
import sys
import textwrap
from pathlib import Path

import yaml

from loftr_ros.core.config import OPTIONS, MatcherConfig
from loftr_ros.core.settings import defaults_of, settings_of
from loftr_ros.core.tracking.config import TrackerConfig
from loftr_ros.ros.parameters import GROUPS

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / 'README.md'
# The node's parameter files: one per mode (tracker.yaml: tracks mode).
PARAMETER_FILES = sorted([*(ROOT / 'config').glob('*matcher.yaml'),
                          ROOT / 'config' / 'tracker.yaml'])
NODE_GROUPS = tuple(group for group in GROUPS if group[1] is not MatcherConfig)
MATCHER_GROUPS = (('matcher.', MatcherConfig),)
# README tables: (first marker, last marker, groups).
TABLES = (
    ('<!-- node parameters: generated from loftr_ros.ros.parameters.GROUPS by `make docs` -->',
     '<!-- end of node parameters -->', NODE_GROUPS),
    ('<!-- matcher settings: generated from loftr_ros.core.config.MatcherConfig by '
     '`make docs` -->', '<!-- end of matcher settings -->', MATCHER_GROUPS),
    ('<!-- tracker settings: generated from loftr_ros.core.tracking.config.TrackerConfig by '
     '`make docs` -->', '<!-- end of tracker settings -->', (('tracks.', TrackerConfig),)),
)
PARAMETERS_LINE = '  ros__parameters:'
INDENT = ' ' * 4
WIDTH = 100
RUNTIME_NOTE = 'Changeable at runtime.'


def yaml_value(value) -> str:
    """A value as it is written in the YAML files (quoted only where YAML needs it)."""
    if isinstance(value, dict):
        return yaml.safe_dump(value, default_flow_style=True).strip()
    text = yaml.safe_dump(value, default_flow_style=True).strip()
    return text[:-len('\n...')].strip() if text.endswith('...') else text


def help_text(spec) -> str:
    return spec.describe() + (f' {RUNTIME_NOTE}' if spec.runtime else '')


def group_values(parameters: dict, prefix: str) -> dict:
    """The values a ros__parameters mapping sets for the group of `prefix`."""
    values = parameters if not prefix else parameters.get(prefix[:-1])
    return values if isinstance(values, dict) else {}


def group_block(prefix: str, declaration, values: dict) -> list:
    """The YAML lines of one group holding `values` (defaults where missing)."""
    indent = INDENT
    lines = []
    if prefix:
        header = f'{INDENT}{prefix[:-1]}:'
        source = f'{declaration.__module__}.{declaration.__qualname__}'
        lines.append(f'{header:<30} # {source}; comments: make docs')
        indent += '  '
    defaults = defaults_of(declaration)
    for name, spec in settings_of(declaration).items():
        lines += [f'{indent}# {line}' for line in
                  textwrap.wrap(help_text(spec), WIDTH - len(indent) - 2,
                                break_on_hyphens=False, break_long_words=False)]
        value = values.get(name, defaults[name])
        if declaration is MatcherConfig and name == OPTIONS and not value:
            lines.append(f'{indent}# {name}: {{key: value}}')
        else:
            lines.append(f'{indent}{name}: {yaml_value(value)}')
    return lines


def parameter_file(path: Path) -> str:
    """The file with its ros__parameters written from the declarations."""
    text = path.read_text()
    lines = text.splitlines()
    start = lines.index(PARAMETERS_LINE) + 1
    parameters = next(iter(yaml.safe_load(text).values()))['ros__parameters']
    body = [line for prefix, declaration in GROUPS
            for line in group_block(prefix, declaration, group_values(parameters, prefix))]
    return '\n'.join(lines[:start] + body) + '\n'


def markdown_value(value) -> str:
    return "''" if value == '' else yaml_value(value)


def readme_table(groups) -> list:
    """A README table of `groups`: each parameter, its default (and where a parameter file of
    config/ sets another value) and its help text; ★ marks the runtime ones."""
    files = {path.name: next(iter(yaml.safe_load(path.read_text()).values()))['ros__parameters']
             for path in PARAMETER_FILES}
    rows = ['| parameter | default | meaning |', '|---|---|---|']
    for prefix, declaration in groups:
        defaults = defaults_of(declaration)
        for name, spec in settings_of(declaration).items():
            options = declaration is MatcherConfig and name == OPTIONS
            parameter = f'`{prefix}{name}.<key>`' if options else f'`{prefix}{name}`'
            default = '' if options else markdown_value(defaults[name])
            for file, parameters in files.items():
                values = group_values(parameters, prefix)
                if name in values and values[name] != defaults[name]:
                    default += f' ({file}: {markdown_value(values[name])})'
            star = '★ ' if spec.runtime else ''
            rows.append(f'| {star}{parameter} | {default} | {spec.describe()} |')
    return rows


def readme(text: str) -> str:
    lines = text.splitlines()
    for begin, end, groups in TABLES:
        start, stop = lines.index(begin), lines.index(end)
        lines = lines[:start + 1] + readme_table(groups) + lines[stop:]
    return '\n'.join(lines) + '\n'


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--check', action='store_true',
                        help='write nothing; exit 1 and print the difference when out of date')
    args = parser.parse_args(argv)
    outdated = []
    for path, render in [(README, readme)] + [(path, None) for path in PARAMETER_FILES]:
        old = path.read_text()
        new = render(old) if render else parameter_file(path)
        if new == old:
            continue
        outdated.append(path)
        if args.check:
            sys.stdout.writelines(difflib.unified_diff(
                old.splitlines(True), new.splitlines(True), str(path), f'{path} (generated)'))
        else:
            path.write_text(new)
            print(f'wrote {path.relative_to(ROOT)}')
    if args.check and outdated:
        print(f"\nout of date: {', '.join(str(p.relative_to(ROOT)) for p in outdated)}; "
              'run `make docs`', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
