"""`make demo` end to end, shortened: the node in its own process, the player here."""
import subprocess
import sys

import pytest
import yaml

from loftr_ros.tools import demo


def run_demo(tmp_path, *args):
    process = subprocess.run(
        [sys.executable, '-m', 'loftr_ros.tools.demo', '--output', str(tmp_path), *args],
        capture_output=True, text=True, timeout=240)
    return process.returncode, process.stdout + process.stderr


@pytest.mark.slow
def test_demo_on_the_synthetic_sequence(tmp_path):
    code, output = run_demo(tmp_path, '--frames', '3', '--rate', '1')
    assert code == 0, output
    assert 'pairs published      3' in output
    assert 'on the true epipolar geometry' in output
    assert 'make demo DEMO_ARGS=\'--backend eloftr\'' in output
    assert len(list(tmp_path.glob('overlay_*.png'))) >= 1
    assert (tmp_path / 'matcher_node.log').read_text().count('ready: mode stereo') == 1


@pytest.mark.slow
def test_demo_replays_a_bag(tmp_path, euroc_dir):
    code, output = run_demo(tmp_path, '--bag', str(euroc_dir / 'bag'), '--frames', '3',
                            '--speed', '0.05')
    assert code == 0, output
    assert '/cam0/image_raw, /cam1/image_raw' in output and '(stereo mode)' in output
    assert 'pairs published      3' in output
    assert len(list(tmp_path.glob('overlay_*.png'))) >= 1


@pytest.mark.parametrize('bag', ['missing', '.'])
def test_demo_reports_a_bag_that_cannot_be_read(tmp_path, bag):
    code, output = run_demo(tmp_path, '--bag', str(tmp_path / bag))
    assert code == 1
    assert output.startswith('demo: cannot read bag') and 'Traceback' not in output


def flat(parameters, prefix=''):
    """A ros__parameters mapping as {parameter name: value} (matcher.options stays a mapping)."""
    values = {}
    for key, value in parameters.items():
        if isinstance(value, dict) and prefix + key != 'matcher.options':
            values.update(flat(value, f'{prefix}{key}.'))
        else:
            values[prefix + key] = value
    return values


def test_the_demo_runs_the_mode_file_then_its_own_file_then_the_flags_given():
    """No copy of a parameter in the demo's code: the node reads config/*matcher.yaml, then
    config/demo.yaml, then what the flags give (all from the installed share directory)."""
    config_dir = demo.config_directory()
    for mode, file in (('stereo', 'stereo_matcher.yaml'), ('consecutive', 'matcher.yaml')):
        parameters, ros_args = demo.node_arguments(demo.parse_args([]), mode, {'image': '/x'},
                                                   config_dir)
        assert parameters == {}
        assert ros_args == ['--params-file', str(config_dir / file), '--params-file',
                            str(config_dir / 'demo.yaml'), '-r', 'image:=/x']
    parameters, _ = demo.node_arguments(
        demo.parse_args(['--backend', 'eloftr', '--device', 'cpu']), 'stereo', {}, config_dir)
    assert parameters == {'matcher.backend': 'eloftr', 'matcher.device': 'cpu'}


def test_demo_yaml_changes_declared_parameters_only():
    """Each value of config/demo.yaml is a declared parameter's, valid, and differs from both
    mode files' (a value equal to theirs would be a copy that can go stale)."""
    from loftr_ros.ros.parameters import SPECS
    config_dir = demo.config_directory()
    own = flat(demo.demo_parameters(config_dir))
    assert own
    modes = [flat(yaml.safe_load((config_dir / file).read_text())['/**']['ros__parameters'])
             for file in ('matcher.yaml', 'stereo_matcher.yaml')]
    for name, value in own.items():
        assert name in SPECS, name
        assert SPECS[name].check(value) is None, (name, SPECS[name].check(value))
        assert all(value != parameters[name] for parameters in modes), name
