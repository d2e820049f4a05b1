"""The launch files as a robot user meets them: the real `ros2 launch` starts the node, whose
parameters are read back through its parameter services from this process.

Needs launch, launch_ros and ros2cli (`ros2 launch`), which CI lacks: skipped there.
"""
import importlib.util
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from loftr_ros.testing.client import READY_LINE
from loftr_ros.ros.launch_description import PARAMETER_ARGUMENTS

pytestmark = pytest.mark.skipif(
    shutil.which('ros2') is None or any(importlib.util.find_spec(name) is None
                                        for name in ('launch', 'launch_ros', 'ros2launch')),
    reason='needs the real `ros2 launch` (launch, launch_ros, ros2cli), not installable here')

LAUNCH_FILES = {'consecutive': 'matcher.launch.py', 'stereo': 'stereo_matcher.launch.py'}
# Parameter values in the user's file, and the command line's, for every parameter argument.
FILE_VALUES = {'matcher.backend': 'opencv', 'matcher.weights': 'from_file',
               'matcher.device': 'cpu', 'transport': 'compressed', 'use_sim_time': True,
               'stereo.slop': 0.02}
# '2014': a str that launch_ros would pass on as an int unless told the type.
COMMAND_LINE = {'weights': ('2014', '2014'),
                'transport': ('raw', 'raw'), 'use_sim_time': ('false', False),
                'slop': ('0.005', 0.005)}


class LaunchProcess:
    """`ros2 launch loftr_ros <file> <arguments>` in its own process group, as from a
    terminal; its output in a log file."""

    def __init__(self, launch_file, arguments, log_path):
        self.log_path = log_path
        self._log = open(log_path, 'w')
        self.process = subprocess.Popen(
            ['ros2', 'launch', 'loftr_ros', launch_file, *arguments], stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, 'PYTHONUNBUFFERED': '1', 'RCUTILS_LOGGING_BUFFERED_STREAM': '0'})

    @property
    def log(self):
        return self.log_path.read_text(errors='replace')

    def wait_for(self, text, timeout=90.0):
        deadline = time.monotonic() + timeout
        while text not in self.log:
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f'no {text!r} from ros2 launch (exit {self.process.poll()}):\n'
                            f'{self.log}')
            time.sleep(0.1)

    def interrupt(self, timeout=30.0):
        """A terminal's Ctrl-C (SIGINT to the whole process group); the exit code."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._log.close()
        return self.process.returncode


def processes_naming(text):
    """PIDs of the processes whose command line contains `text`."""
    found = []
    for entry in Path('/proc').iterdir():
        try:
            if entry.name.isdigit() and text in (entry / 'cmdline').read_bytes().decode(
                    errors='replace'):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile
            pass
    return found


def wait_gone(text, timeout=20.0):
    deadline = time.monotonic() + timeout
    while processes_naming(text) and time.monotonic() < deadline:
        time.sleep(0.2)
    return processes_naming(text)


def node_parameters(context, names, timeout=30.0):
    """name -> value of /matcher_node's parameters, through its get_parameters service."""
    import rclpy
    from rcl_interfaces.srv import GetParameters
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import parameter_value_to_python

    node = rclpy.create_node('launch_test_parameters', context=context)
    try:
        client = node.create_client(GetParameters, '/matcher_node/get_parameters')
        assert client.wait_for_service(timeout_sec=timeout), 'no /matcher_node/get_parameters'
        future = client.call_async(GetParameters.Request(names=list(names)))
        rclpy.spin_until_future_complete(node, future, SingleThreadedExecutor(context=context),
                                         timeout_sec=timeout)
        assert future.done(), 'get_parameters did not answer'
        return {name: parameter_value_to_python(value)
                for name, value in zip(names, future.result().values)}
    finally:
        node.destroy_node()


@pytest.fixture
def launched(tmp_path):
    """launched(launch_file, *arguments) -> LaunchProcess, interrupted after the test (and
    then no matcher node of it may be left)."""
    started = []

    def start(launch_file, *arguments):
        started.append(LaunchProcess(launch_file, arguments,
                                     tmp_path / f'launch{len(started)}.log'))
        return started[-1]

    yield start
    for launch in started:
        launch.interrupt()
    left = wait_gone(str(tmp_path))
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f'processes left running after ros2 launch ended: {left}'


@pytest.mark.parametrize('mode', LAUNCH_FILES)
def test_params_file_values_survive_and_command_line_arguments_override_them(
        mode, launched, ros_context, tmp_path):
    arguments = PARAMETER_ARGUMENTS[mode]
    in_file = {argument.parameter: FILE_VALUES[argument.parameter] for argument in arguments}
    # The file's own mode is the other launch file's: `mode` belongs to the launch file.
    document = {'mode': 'stereo' if mode == 'consecutive' else 'consecutive',
                'matcher': {'warmup': False}}
    for name, value in in_file.items():
        group, _, field = name.rpartition('.')
        (document.setdefault(group, {}) if group else document)[field] = value
    params_file = tmp_path / 'my_matcher.yaml'
    params_file.write_text(yaml.safe_dump({'/**': {'ros__parameters': document}}))
    given = {argument: COMMAND_LINE[argument.name] for argument in arguments
             if argument.name in COMMAND_LINE}
    assert given and len(given) < len(arguments)  # some given, some left to the file

    launch = launched(LAUNCH_FILES[mode], f'params_file:={params_file}',
                      *(f'{argument.name}:={text}' for argument, (text, _) in given.items()))
    launch.wait_for(READY_LINE)
    names = ['mode', *in_file]
    values = node_parameters(ros_context, names)

    expected = {**in_file, 'mode': mode}
    expected.update({argument.parameter: value for argument, (_, value) in given.items()})
    assert values == expected, launch.log


def test_rviz_without_rviz2_ends_the_launch_with_a_message_and_starts_nothing(launched,
                                                                               tmp_path):
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    try:
        get_package_prefix('rviz2')
        pytest.skip('rviz2 is installed here')
    except PackageNotFoundError:
        pass
    params_file = tmp_path / 'matcher.yaml'
    params_file.write_text(yaml.safe_dump({'/**': {'ros__parameters': {
        'matcher': {'backend': 'opencv', 'device': 'cpu', 'warmup': False}}}}))
    launch = launched('matcher.launch.py', f'params_file:={params_file}', 'rviz:=true')
    assert launch.process.wait(60) != 0
    time.sleep(3)  # a node being started would have been spawned by now
    assert not processes_naming(str(params_file)), f'matcher node orphaned:\n{launch.log}'
    assert 'rviz2 package is not installed' in launch.log, launch.log


@pytest.mark.parametrize('moment', ['loading', 'ready'])
def test_ctrl_c_twice_ends_launch_and_node_cleanly(moment, launched, tmp_path):
    params_file = tmp_path / 'matcher.yaml'
    params_file.write_text(yaml.safe_dump({'/**': {'ros__parameters': {
        'matcher': {'backend': 'xfeat', 'device': 'cpu'}}}}))
    launch = launched('matcher.launch.py', f'params_file:={params_file}')
    launch.wait_for('loading xfeat matcher' if moment == 'loading' else READY_LINE)
    # A terminal's Ctrl-C pressed twice: the whole process group gets SIGINT each time.
    os.killpg(launch.process.pid, signal.SIGINT)
    time.sleep(0.05)
    assert launch.interrupt() == 0, launch.log
    log = launch.log
    assert 'process has finished cleanly' in log, log
    assert 'Traceback' not in log and 'process has died' not in log, log


@pytest.mark.parametrize('launch_file, autostart', [('matcher.launch.py', 'true'),
                                                    ('stereo_matcher.launch.py', 'true'),
                                                    ('matcher.launch.py', 'false')])
def test_lifecycle_node_is_launched_and_autostart_configures_and_activates_it(
        launch_file, autostart, launched, harness, tmp_path):
    params_file = tmp_path / 'matcher.yaml'
    params_file.write_text(yaml.safe_dump({'/**': {'ros__parameters': {
        'matcher': {'backend': 'opencv', 'device': 'cpu', 'warmup': False}}}}))
    launch = launched(launch_file, f'params_file:={params_file}', 'lifecycle:=true',
                      f'autostart:={autostart}')
    if autostart == 'true':
        launch.wait_for(READY_LINE)
        assert harness.lifecycle_state() == 'active'
        assert "Failed to make transition" not in launch.log, launch.log
    else:
        launch.wait_for('unconfigured: waiting for the configure transition')
        time.sleep(2)  # what an autostart would have done by now
        assert harness.lifecycle_state() == 'unconfigured'
        assert READY_LINE not in launch.log
        assert harness.change_state('configure') and harness.change_state('activate')
        launch.wait_for(READY_LINE)
    assert launch.interrupt() == 0, launch.log
    assert 'process has finished cleanly' in launch.log, launch.log
    assert 'Traceback' not in launch.log, launch.log
