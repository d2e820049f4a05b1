"""Write the matcher settings' documentation from their declarations in MatcherConfig.

What it writes: the matcher table of README.md (between its two marker lines) and the
``matcher`` section of every ``config/*matcher.yaml`` (the last section of each file): one
comment per setting from its help text, the declared order, and the file's own value where it
sets one (the declared default for a new setting). After adding or changing a setting:

    make docs                                                   # rewrite README.md, config/
    scripts/ros_env.sh python scripts/settings_docs.py --check  # exit 1 with the difference
"""
import argparse
import difflib
import sys
import textwrap
from pathlib import Path

import yaml

from loftr_ros.core.config import OPTIONS, SETTINGS, MatcherConfig, matcher_section
from loftr_ros.core.settings import defaults_of

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / 'README.md'
PARAMETER_FILES = sorted((ROOT / 'config').glob('*matcher.yaml'))
BEGIN = ('<!-- matcher settings: generated from loftr_ros.core.config.MatcherConfig by '
         '`make docs` -->')
END = '<!-- end of matcher settings -->'
SECTION = '    matcher:'
KEY_INDENT = ' ' * 6
WIDTH = 100
RUNTIME_NOTE = 'Changeable at runtime.'


def yaml_value(value) -> str:
    """A value as it is written in the YAML files (quoted only where YAML needs it)."""
    if isinstance(value, dict):
        return yaml.safe_dump(value, default_flow_style=True).strip()
    text = yaml.safe_dump(value, default_flow_style=True).strip()
    return text[:-len('\n...')].strip() if text.endswith('...') else text


def help_text(name) -> str:
    spec = SETTINGS[name]
    return spec.describe() + (f' {RUNTIME_NOTE}' if spec.runtime else '')


def matcher_block(values) -> list:
    """The lines of the ``matcher`` section holding `values` (defaults where missing)."""
    defaults = defaults_of(MatcherConfig)
    lines = [f'{SECTION}                   # {MatcherConfig.__module__}.MatcherConfig; '
             'comments: make docs']
    for name in SETTINGS:
        lines += [f'{KEY_INDENT}# {line}' for line in
                  textwrap.wrap(help_text(name), WIDTH - len(KEY_INDENT) - 2)]
        value = values.get(name, defaults[name])
        if name == OPTIONS and not value:
            lines.append(f'{KEY_INDENT}# {name}: {{key: value}}')
        else:
            lines.append(f'{KEY_INDENT}{name}: {yaml_value(value)}')
    return lines


def parameter_file(path: Path) -> str:
    """The file with its matcher section written from the declarations."""
    text = path.read_text()
    values = matcher_section(yaml.safe_load(text), str(path))
    lines = text.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith(SECTION))
    return '\n'.join(lines[:start] + matcher_block(values)) + '\n'


def markdown_value(value) -> str:
    return "''" if value == '' else yaml_value(value)


def readme_table() -> list:
    """The README's matcher table: each setting, its default (and where a parameter file of
    config/ sets another value) and its help text; ★ marks the runtime ones."""
    defaults = defaults_of(MatcherConfig)
    files = {path.name: matcher_section(yaml.safe_load(path.read_text()), str(path))
             for path in PARAMETER_FILES}
    rows = ['| parameter | default | meaning |', '|---|---|---|']
    for name, spec in SETTINGS.items():
        parameter = f'`matcher.{name}.<key>`' if name == OPTIONS else f'`matcher.{name}`'
        default = '' if name == OPTIONS else markdown_value(defaults[name])
        default += ''.join(f' ({file}: {markdown_value(values[name])})'
                           for file, values in files.items()
                           if name in values and values[name] != defaults[name])
        star = '★ ' if spec.runtime else ''
        rows.append(f'| {star}{parameter} | {default} | {spec.describe()} |')
    return rows


def readme(text: str) -> str:
    lines = text.splitlines()
    start, end = lines.index(BEGIN), lines.index(END)
    return '\n'.join(lines[:start + 1] + readme_table() + lines[end:]) + '\n'


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
