"""Each matcher setting is declared once (MatcherConfig) and reaches every place that exposes
it: the YAML files in config/ with their comments, the README table, the node's parameters and
the flags of `loftr-ros match`. Adding a setting needs no edit here."""
import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from loftr_ros.core.config import OPTIONS, SETTINGS, MatcherConfig
from loftr_ros.core.settings import defaults_of

REPO_ROOT = Path(__file__).resolve().parents[2]
PARAMETER_FILES = sorted((REPO_ROOT / 'config').glob('*matcher.yaml'))
DEFAULTS = defaults_of(MatcherConfig)
SCALARS = [name for name in SETTINGS if name != OPTIONS]


def comment_above(lines, index):
    """The comment lines right above line `index`, joined into one text."""
    comments = []
    while index > 0 and lines[index - 1].strip().startswith('#'):
        index -= 1
        comments.insert(0, lines[index].strip()[1:].strip())
    return ' '.join(comments)


def test_the_generated_readme_table_and_yaml_comments_are_up_to_date():
    run = subprocess.run([sys.executable, str(REPO_ROOT / 'scripts' / 'settings_docs.py'),
                          '--check'], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize('path', PARAMETER_FILES, ids=lambda path: path.name)
def test_parameter_files_list_every_setting_with_its_help(path):
    lines = path.read_text().splitlines()
    document = yaml.safe_load(path.read_text())
    section = document['/**']['ros__parameters']['matcher']
    assert list(section) == SCALARS
    if path.name == 'matcher.yaml':
        assert section == {name: DEFAULTS[name] for name in SCALARS}
    for name, setting in SETTINGS.items():
        key = f'      # {name}: ' if name == OPTIONS else f'      {name}: '
        index = next(i for i, line in enumerate(lines) if line.startswith(key))
        comment = comment_above(lines, index)
        assert comment.startswith(setting.describe()), (name, comment)
        assert ('Changeable at runtime.' in comment) == setting.runtime, name


def test_readme_lists_every_setting_with_its_default():
    readme = (REPO_ROOT / 'README.md').read_text()
    for name, setting in SETTINGS.items():
        if name == OPTIONS:
            pattern = r'\| `matcher\.options\.<key>` \|'
        else:
            default = "''" if DEFAULTS[name] == '' else yaml.safe_dump(DEFAULTS[name]).split()[0]
            star = '★ ' if setting.runtime else ''
            pattern = rf'\| {star}`matcher\.{name}` \| {re.escape(default)}[ |]'
        assert re.search(pattern, readme), name


def test_every_setting_is_a_node_parameter_and_a_match_flag():
    from loftr_ros.ros.parameters import SPECS
    from loftr_ros.tools.match import add_arguments
    for name in SCALARS:
        spec = SPECS[f'matcher.{name}']
        assert spec.default == DEFAULTS[name] and spec.setting is SETTINGS[name]
        assert spec.descriptor().read_only != SETTINGS[name].runtime
        assert SETTINGS[name].help in spec.descriptor().description
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    flags = {action.dest: action for action in parser._actions}
    for name in SCALARS:
        if name == 'warmup':  # a one-shot match never warms up
            continue
        assert flags[name].choices == SETTINGS[name].choices, name
        assert SETTINGS[name].help in flags[name].help, name
