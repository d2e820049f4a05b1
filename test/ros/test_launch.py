"""Launch and parameter files, checked without `launch`/`launch_ros` (not installable here):
everything they name is installed, and every parameter name exists on the node."""
import ast
import os
from pathlib import Path

import pytest
import yaml
from ament_index_python.packages import get_package_prefix, get_package_share_directory

from loftr_ros.core.config import load_matcher_config
from loftr_ros.ros.parameters import SPECS

SHARE = Path(get_package_share_directory('loftr_ros'))
PREFIX = Path(get_package_prefix('loftr_ros'))
LAUNCH_FILES = sorted((SHARE / 'launch').glob('*.launch.py'))
PARAMETER_FILES = sorted((SHARE / 'config').glob('*matcher.yaml'))


def calls(tree, name):
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)
            and getattr(node.func, 'id', getattr(node.func, 'attr', None)) == name]


def keyword(call, name):
    return next((k.value for k in call.keywords if k.arg == name), None)


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
    node = MatcherNode(context=context, parameter_overrides=[
        Parameter('matcher.backend', value='opencv'), Parameter('matcher.warmup', value=False),
        Parameter('mode', value='stereo'), Parameter('use_camera_info', value=True)])
    names = node.list_parameters([], 10).names
    subscribed = {subscription.topic_name for subscription in node.subscriptions}
    node.destroy_node()
    context.try_shutdown()
    return set(names) - {'use_sim_time', 'start_type_description_service'}, subscribed


def test_launch_files_are_installed():
    assert [path.name for path in LAUNCH_FILES] == ['matcher.launch.py',
                                                    'stereo_matcher.launch.py']


@pytest.mark.parametrize('launch_file', LAUNCH_FILES, ids=lambda path: path.name)
def test_launch_file_names_only_installed_files_and_declared_parameters(launch_file, declared):
    names, subscribed = declared
    tree = ast.parse(launch_file.read_text())
    nodes = calls(tree, 'Node')
    ours = [n for n in nodes if keyword(n, 'package').value == 'loftr_ros']
    assert len(ours) == 1
    executable = PREFIX / 'lib' / 'loftr_ros' / keyword(ours[0], 'executable').value
    assert executable.is_file() and os.access(executable, os.X_OK), executable
    # Every installed file they point to: PathJoinSubstitution([share, 'config', 'x.yaml']).
    for join in calls(tree, 'PathJoinSubstitution'):
        parts = [element.value for element in join.args[0].elts[1:]]
        assert (SHARE.joinpath(*parts)).is_file(), parts
    # Parameter overrides given inline.
    overrides = [element for element in keyword(ours[0], 'parameters').elts
                 if isinstance(element, ast.Dict)]
    for key in overrides[0].keys:
        assert key.value in names, key.value
    # Remappings rename topics the node subscribes to (in stereo mode with camera_info, or
    # their consecutive-mode counterparts).
    for pair in keyword(ours[0], 'remappings').elts:
        source = pair.elts[0].value
        assert f'/{source}' in subscribed | {'/image', '/camera_info'}, source
    # Every launch argument used is declared.
    declared_arguments = {c.args[0].value for c in calls(tree, 'DeclareLaunchArgument')}
    used = {c.args[0].value for c in calls(tree, 'LaunchConfiguration')}
    assert used <= declared_arguments, used - declared_arguments


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
