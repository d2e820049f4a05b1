"""Each parameter is declared once (a dataclass of loftr_ros.ros.parameters.GROUPS: the node's
own, StereoPairing, KeyframePolicy, OverlaySettings, MatcherConfig) and reaches every place that
exposes it: the YAML files in config/ with their comments, the README tables, the node's
parameters and, for the matcher's, the flags of `loftr-ros match`. Adding a parameter needs no
edit here."""
import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from loftr_ros.core.config import OPTIONS, SETTINGS, MatcherConfig
from loftr_ros.core.settings import defaults_of, settings_of
from loftr_ros.ros.parameters import GROUPS

REPO_ROOT = Path(__file__).resolve().parents[2]
PARAMETER_FILES = sorted([*(REPO_ROOT / 'config').glob('*matcher.yaml'),
                          REPO_ROOT / 'config' / 'tracker.yaml'])
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


def group_lines(lines, prefix):
    """The lines of the group of `prefix` in a parameter file (its keys at one indent)."""
    if not prefix:
        return lines, '    '
    start = lines.index(next(line for line in lines if line.startswith(f'    {prefix[:-1]}:')))
    end = next((index for index in range(start + 1, len(lines))
                if lines[index].startswith('    ') and not lines[index].startswith('     ')),
               len(lines))
    return lines[start + 1:end], '      '


@pytest.mark.parametrize('path', PARAMETER_FILES, ids=lambda path: path.name)
def test_parameter_files_list_every_parameter_with_its_help(path):
    lines = path.read_text().splitlines()
    parameters = yaml.safe_load(path.read_text())['/**']['ros__parameters']
    section = parameters['matcher']
    assert list(section) == SCALARS
    assert list(parameters)[-1] == 'matcher'
    if path.name == 'matcher.yaml':
        assert section == {name: DEFAULTS[name] for name in SCALARS}
    for prefix, declaration in GROUPS:
        values = parameters[prefix[:-1]] if prefix else parameters
        group, indent = group_lines(lines, prefix)
        for name, setting in settings_of(declaration).items():
            options = declaration is MatcherConfig and name == OPTIONS
            assert options or name in values, (prefix, name)
            key = f'{indent}# {name}: ' if options else f'{indent}{name}: '
            index = next(i for i, line in enumerate(group) if line.startswith(key))
            comment = comment_above(group, index)
            assert comment.startswith(setting.describe()), (prefix, name, comment)
            assert ('Changeable at runtime.' in comment) == setting.runtime, (prefix, name)


def test_readme_lists_every_parameter_with_its_default():
    readme = (REPO_ROOT / 'README.md').read_text()
    for prefix, declaration in GROUPS:
        defaults = defaults_of(declaration)
        for name, setting in settings_of(declaration).items():
            if declaration is MatcherConfig and name == OPTIONS:
                pattern = r'\| `matcher\.options\.<key>` \|'
            else:
                default = ("''" if defaults[name] == '' else
                           yaml.safe_dump(defaults[name]).split()[0])
                star = '★ ' if setting.runtime else ''
                pattern = (rf'\| {star}`{re.escape(prefix + name)}` \| '
                           rf'{re.escape(default)}[ |]')
            assert re.search(pattern, readme), prefix + name


def test_every_declared_setting_is_a_node_parameter():
    """The node's parameters are the declarations: same default, same Setting (help, range,
    runtime), so a component and the node cannot disagree on them."""
    from loftr_ros.ros.parameters import PARAMETERS, SPECS
    declared = []
    for prefix, declaration in GROUPS:
        for name, default in defaults_of(declaration).items():
            if declaration is MatcherConfig and name == OPTIONS:
                continue
            spec = SPECS[prefix + name]
            assert spec.default == default and spec.setting is settings_of(declaration)[name]
            assert spec.descriptor().read_only != spec.setting.runtime
            assert spec.setting.help in spec.descriptor().description
            declared.append(prefix + name)
    assert [spec.name for spec in PARAMETERS] == declared


def test_every_matcher_setting_is_a_match_flag_with_its_help_and_values(capsys):
    from loftr_ros.tools.match import add_arguments
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    help_words = ''.join(parser.format_help().split())

    def parse(*flags):
        return parser.parse_args(['image0.png', 'image1.png', *flags])

    for name in SCALARS:
        flag = '--' + name.replace('_', '-')
        if name == 'warmup':  # a one-shot match never warms up
            assert flag not in help_words
            continue
        assert ''.join(SETTINGS[name].help.split()) in help_words, name
        default, choices = DEFAULTS[name], SETTINGS[name].choices
        if choices:
            for choice in choices:
                assert getattr(parse(flag, choice), name) == choice
            with pytest.raises(SystemExit):
                parse(flag, 'no-such-value')
            assert 'invalid choice' in capsys.readouterr().err
        elif isinstance(default, bool):
            assert getattr(parse(flag), name) is True
            assert getattr(parse(f'--no-{flag[2:]}'), name) is False
        elif isinstance(default, list):
            assert getattr(parse(flag, 'A', 'B'), name) == ['A', 'B']
        else:
            value = getattr(parse(flag, str(default)), name)
            assert value == default and type(value) is type(default), name
        assert getattr(parse(), name) is None  # not given: the --config file's value holds


def test_cpu_realtime_sets_declared_parameters_that_differ_from_the_stereo_files():
    """config/cpu_realtime.yaml is given after config/stereo_matcher.yaml (README): every value
    it sets is a declared parameter's, valid, and not the stereo file's (an equal value would
    be a copy that can go stale); eval and the other tools read the same matcher settings."""
    from loftr_ros.core.backends import backend_class
    from loftr_ros.core.config import load_matcher_config
    from loftr_ros.ros.parameters import SPECS
    path = REPO_ROOT / 'config' / 'cpu_realtime.yaml'
    own = yaml.safe_load(path.read_text())['/**']['ros__parameters']
    stereo = yaml.safe_load((REPO_ROOT / 'config' / 'stereo_matcher.yaml').read_text())[
        '/**']['ros__parameters']
    pending = [('', own, stereo)]
    while pending:
        prefix, values, base = pending.pop()
        for key, value in values.items():
            name = prefix + key
            if isinstance(value, dict) and name != 'matcher.options':
                pending.append((f'{name}.', value, base.get(key, {})))
                continue
            assert value != base.get(key), name
            if name != 'matcher.options':  # the backend's, checked below
                assert name in SPECS, name
                assert SPECS[name].check(value) is None, (name, SPECS[name].check(value))
    config = load_matcher_config(str(path))
    assert set(config.options) <= set(backend_class(config.backend).DEFAULT_CONF)
    assert sorted(config.differences(load_matcher_config(None))) == sorted(own['matcher'])
