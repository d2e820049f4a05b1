"""Launch and parameter files, checked without `launch`/`launch_ros` (not installable here):
the launch files are the shared implementation, everything it names is installed and exists
on the node, and its arguments override the params file only when given.
test_ros2_launch.py runs them with the real `ros2 launch` where it is installed."""
import ast
import os
import re
from pathlib import Path

import pytest
import yaml
from ament_index_python.packages import get_package_prefix, get_package_share_directory

from loftr_ros.core.config import load_matcher_config
from loftr_ros.core.errors import ConfigError
from loftr_ros.ros import launch_description as launching
from loftr_ros.ros.parameters import SPECS

SHARE = Path(get_package_share_directory('loftr_ros'))
PREFIX = Path(get_package_prefix('loftr_ros'))
LAUNCH_FILES = sorted((SHARE / 'launch').glob('*.launch.py'))
PARAMETER_FILES = sorted([*(SHARE / 'config').glob('*matcher.yaml'),
                          SHARE / 'config' / 'tracker.yaml'])
# The mode each launch file starts the node in.
LAUNCH_MODES = {'matcher.launch.py': 'consecutive', 'stereo_matcher.launch.py': 'stereo',
                'tracker.launch.py': 'tracks'}
MODES = SPECS['mode'].setting.choices


def calls(tree, name):
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)
            and getattr(node.func, 'id', getattr(node.func, 'attr', None)) == name]


def flatten(mapping, prefix=''):
    for key, value in mapping.items():
        if isinstance(value, dict):
            yield from flatten(value, f'{prefix}{key}.')
        else:
            yield f'{prefix}{key}', value


def yaml_parameters(path):
    document = yaml.safe_load(path.read_text())
    return dict(flatten(document['/**']['ros__parameters']))


@pytest.fixture(scope='module')
def declared():
    """Parameter names and defaults the node really declares (a node with the opencv backend,
    which builds instantly)."""
    import rclpy
    from rclpy.context import Context
    from rclpy.parameter import Parameter

    from loftr_ros.ros.node import MatcherNode
    context = Context()
    rclpy.init(context=context)
    topics = set()
    for mode in ('stereo', 'tracks'):
        node = MatcherNode(context=context, parameter_overrides=[
            Parameter('matcher.backend', value='opencv'),
            Parameter('matcher.warmup', value=False), Parameter('mode', value=mode),
            Parameter('tracks.stereo', value=True), Parameter('use_camera_info', value=True)])
        names = node.list_parameters([], 10).names
        topics |= {subscription.topic_name for subscription in node.subscriptions}
        topics |= {publisher.topic_name for publisher in node.publishers}
        node.destroy_node()
    context.try_shutdown()
    return set(names) - {'use_sim_time', 'start_type_description_service'}, topics


def test_launch_files_are_installed():
    assert [path.name for path in LAUNCH_FILES] == sorted(LAUNCH_MODES)


@pytest.mark.parametrize('launch_file', LAUNCH_FILES, ids=lambda path: path.name)
def test_launch_files_are_the_shared_implementation_in_their_mode(launch_file):
    tree = ast.parse(launch_file.read_text())
    imports = [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert [node.module for node in imports] == ['loftr_ros.ros.launch_description']
    assert [name.name for name in imports[0].names] == ['generate_launch_description']
    modes = [call.args[0].value for call in calls(tree, '_generate')]
    assert modes == [LAUNCH_MODES[launch_file.name]]


@pytest.mark.parametrize('mode', MODES)
def test_launch_arguments_name_installed_files_and_the_nodes_parameters_and_topics(mode,
                                                                                   declared):
    names, topics = declared
    executable = PREFIX / 'lib' / 'loftr_ros' / 'matcher_node'
    assert executable.is_file() and os.access(executable, os.X_OK), executable
    for name in (launching.PARAMS_FILES[mode], launching.RVIZ_CONFIG):
        assert (SHARE / 'config' / name).is_file(), name
    for argument in launching.PARAMETER_ARGUMENTS[mode]:
        assert argument.parameter in names | {'use_sim_time'}, argument
    # Remappings rename topics the node subscribes to (in stereo mode with camera_info, or
    # their consecutive-mode counterparts) or publishes (tracks mode's ~/feature).
    for topic, _ in launching.remappings(mode, {}):
        name = topic.replace('~', '/matcher_node') if topic.startswith('~') else f'/{topic}'
        assert name in topics | {'/image', '/camera_info'}, topic
    arguments = [argument.name for argument in launching.PARAMETER_ARGUMENTS[mode]
                 + launching.TOPIC_ARGUMENTS[mode]]
    assert len(set(arguments)) == len(arguments)
    assert not set(arguments) & {'params_file', 'rviz'}


@pytest.mark.parametrize('mode', MODES)
def test_launch_arguments_not_given_leave_the_params_file_alone(mode):
    # What the launch files pass after params_file when no argument is given (launch gives
    # an argument left out its empty default).
    empty = {argument.name: '' for argument in launching.PARAMETER_ARGUMENTS[mode]}
    assert launching.parameter_overrides(mode, empty) == {'mode': mode}
    assert launching.parameter_overrides(mode, {}) == {'mode': mode}


def test_launch_arguments_given_override_their_parameter_typed_as_it():
    given = {'backend': 'xfeat', 'weights': '1234', 'device': 'cuda:1',
             'transport': 'compressed', 'use_sim_time': 'True', 'slop': '0.005'}
    assert launching.parameter_overrides('stereo', given) == {
        'mode': 'stereo', 'matcher.backend': 'xfeat', 'matcher.weights': '1234',
        'matcher.device': 'cuda:1', 'transport': 'compressed', 'use_sim_time': True,
        'stereo.slop': 0.005}
    assert launching.parameter_overrides('consecutive', {'use_sim_time': '0', 'slop': '0.1'}) \
        == {'mode': 'consecutive', 'use_sim_time': False}  # no slop in consecutive mode


@pytest.mark.parametrize('argument, text, reason', [
    ('slop', 'abc', 'slop:=abc: stereo.slop takes a float'),
    ('slop', '2.0', 'slop:=2.0: stereo.slop must be in [0.0, 1.0]'),
    ('backend', 'superglue', "backend:=superglue: invalid matcher.backend 'superglue', valid:"),
    ('transport', 'theora', "transport:=theora: invalid transport 'theora', valid: raw, "),
    ('use_sim_time', 'yes', 'use_sim_time:=yes: expected true or false'),
])
def test_invalid_launch_arguments_are_refused_naming_the_argument(argument, text, reason):
    with pytest.raises(ConfigError, match=re.escape(f'launch argument {reason}')):
        launching.parameter_overrides('stereo', {argument: text})


def test_launch_remappings_take_the_arguments_or_their_defaults():
    assert launching.remappings('consecutive', {'image': '/cam0/image_raw'}) == [
        ('image', '/cam0/image_raw'), ('camera_info', '/camera/camera_info')]
    assert dict(launching.remappings('stereo', {}))['right/image'] == '/stereo/right/image_raw'


@pytest.mark.parametrize('path', PARAMETER_FILES, ids=lambda path: path.name)
def test_parameter_files_name_only_declared_parameters(path, declared):
    names, _ = declared
    parameters = yaml_parameters(path)
    assert set(parameters) <= names, set(parameters) - names
    # and the same file configures the offline tools
    config = load_matcher_config(str(path))
    assert config.backend == parameters['matcher.backend']


def test_consecutive_parameter_file_holds_the_declared_defaults():
    parameters = yaml_parameters(SHARE / 'config' / 'matcher.yaml')
    assert set(parameters) == set(SPECS)
    for name, value in parameters.items():
        assert value == SPECS[name].default, name


def test_rviz_config_shows_the_overlay():
    rviz = yaml.safe_load((SHARE / 'config' / 'loftr_ros.rviz').read_text())
    displays = rviz['Visualization Manager']['Displays']
    assert any(d['Class'] == 'rviz_default_plugins/Image'
               and d['Topic']['Value'] == '/matcher_node/overlay' for d in displays)
