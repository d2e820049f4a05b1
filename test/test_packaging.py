"""The package's shape: what colcon installs, the ROS-free core, and `pip install .`."""
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import loftr_ros

REPO_ROOT = Path(__file__).resolve().parents[1]
INSTALL_PREFIX = Path(loftr_ros.__file__).resolve().parents[4]


def test_colcon_installs_executables_launch_and_config():
    assert INSTALL_PREFIX.name == 'loftr_ros', INSTALL_PREFIX
    for executable in ('matcher_node', 'loftr-ros'):
        path = INSTALL_PREFIX / 'lib' / 'loftr_ros' / executable
        assert path.is_file() and os.access(path, os.X_OK), path
    share = INSTALL_PREFIX / 'share' / 'loftr_ros'
    for source in (REPO_ROOT / 'launch').iterdir():
        assert (share / 'launch' / source.name).is_file(), source.name
    for source in (REPO_ROOT / 'config').iterdir():
        assert (share / 'config' / source.name).is_file(), source.name
    assert (share / 'msg' / 'Matches.msg').is_file() and (share / 'srv' / 'MatchImages.srv').is_file()


def test_ros2_launch_finds_the_installed_launch_and_config_files():
    # ros2launch (get_share_file_path_from_package, get_launch_file_paths) finds a package's
    # launch files with os.walk of its share directory, which neither enters a linked
    # directory nor tells a linked file from the checkout's: the install holds real files.
    share = INSTALL_PREFIX / 'share' / 'loftr_ros'
    walked = {Path(root, name).relative_to(share).as_posix(): Path(root, name)
              for root, _, names in os.walk(share) for name in names}
    expected = {'package.xml'} | {f'{folder}/{source.name}' for folder in ('launch', 'config')
                                  for source in (REPO_ROOT / folder).iterdir()
                                  if source.name != '__pycache__'}
    assert expected <= set(walked), sorted(expected - set(walked))
    links = sorted(name for name in expected if walked[name].is_symlink())
    assert not links, links


CORE_IMPORT_CHECK = textwrap.dedent('''
    import importlib, pkgutil, sys
    import loftr_ros.core, loftr_ros.tools
    names = [m.name for package in (loftr_ros.core, loftr_ros.tools)
             for m in pkgutil.walk_packages(package.__path__, package.__name__ + '.')]
    for name in names:
        importlib.import_module(name)
    ros = sorted(m for m in sys.modules
                 if m.split('.')[0] in ('rclpy', 'rosidl_runtime_py', 'sensor_msgs', 'std_msgs')
                 or m.startswith(('loftr_ros.msg', 'loftr_ros.srv', 'loftr_ros.ros')))
    print(len(names), 'modules;', 'ROS modules imported:', ros)
    sys.exit(1 if ros or len(names) < 3 else 0)
''')


def test_core_and_tools_import_without_ros():
    # Every module of the core and the offline tools, imported in a fresh interpreter, pulls in
    # neither rclpy nor any message package.
    run = subprocess.run([sys.executable, '-c', CORE_IMPORT_CHECK], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.slow
def test_pip_install_in_a_plain_venv_gives_the_core_and_cli(tmp_path):
    # It installs the suite's torch into the venv: the CPU build this machine ships.
    torch = pytest.importorskip('torch')
    if torch.version.cuda is not None:
        pytest.skip(f'the suite runs a CUDA torch ({torch.__version__}; Python 3.12 for Jazzy '
                    f'has only that on PyPI): installing it into a plain venv downloads several '
                    f'GB; this check of setup.py runs where torch is the CPU build (make test)')
    source = tmp_path / 'src'
    source.mkdir()
    for name in ('setup.py', 'README.md', 'LICENSE'):
        shutil.copy(REPO_ROOT / name, source)
    shutil.copytree(REPO_ROOT / 'loftr_ros', source / 'loftr_ros',
                    ignore=shutil.ignore_patterns('__pycache__'))
    venv = tmp_path / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(venv)], check=True)
    python = venv / 'bin' / 'python'
    # The venv has no pip of its own: drive the suite's pip with --python, and give it the
    # suite's torch (an unpinned torch would fetch a multi-GB CUDA build).
    env = {k: v for k, v in os.environ.items()
           if k not in ('PYTHONPATH', 'LD_LIBRARY_PATH', 'AMENT_PREFIX_PATH', 'VIRTUAL_ENV')}
    torch_spec = 'torch==' + torch.__version__.split('+')[0]
    pip = [sys.executable, '-m', 'pip', '--python', str(python), 'install', '-q']
    subprocess.run(pip + [torch_spec], check=True, env=env, timeout=600)
    subprocess.run(pip + [str(source)], check=True, env=env, timeout=600)
    check = ('import sys, loftr_ros.core.config, loftr_ros.core.camera, loftr_ros.core.types; '
             'assert "rclpy" not in sys.modules; print(loftr_ros.__file__)')
    run = subprocess.run([str(python), '-c', check], capture_output=True, text=True, env=env,
                         cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert str(venv) in run.stdout
    cli = subprocess.run([str(venv / 'bin' / 'loftr-ros'), '--help'], capture_output=True,
                         text=True, env=env)
    assert cli.returncode == 0 and 'match' in cli.stdout, cli.stdout + cli.stderr
