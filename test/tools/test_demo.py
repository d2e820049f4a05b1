"""`make demo` end to end, shortened: the node in its own process, the player here."""
import subprocess
import sys

import pytest


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
