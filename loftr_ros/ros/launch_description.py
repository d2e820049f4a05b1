"""What the three launch files do, written once: their arguments, the node parameters and topics
those set, and the launch description.

``lifecycle:=true`` starts the lifecycle node (loftr_ros.ros.lifecycle_node), unconfigured, for a
lifecycle manager (Nav2's) to drive; with ``autostart:=true`` launch itself configures it and,
once configured, activates it (launch_ros's LifecycleNode action and ChangeState events, as in
Humble to Kilted; Nav2's manager does the same through the node's ~/change_state service).

Precedence: the node's parameters come from ``params_file``; a parameter argument given on the
command line (``backend:=xfeat``) overrides its parameter, and one not given (empty) leaves the
file's value. ``mode`` belongs to the launch file. Everything that can fail (an argument of the
wrong type, a missing params file, ``rviz:=true`` without rviz2) is checked before any process
starts: launch loses track of processes already started when an action raises later
(ros2/launch#747), which left the matcher node running orphaned.

Only :func:`generate_launch_description` needs ``launch``/``launch_ros`` (imported there), so
the rest imports and is tested without them.
"""
import os
from dataclasses import dataclass, replace
from typing import Dict, List, Mapping, Tuple

from loftr_ros.core.errors import ConfigError
from loftr_ros.ros.parameters import SPECS

PACKAGE = 'loftr_ros'
PARAMS_FILES = {'consecutive': 'matcher.yaml', 'stereo': 'stereo_matcher.yaml',
                'tracks': 'tracker.yaml'}
RVIZ_CONFIG = 'loftr_ros.rviz'
TRUE_WORDS, FALSE_WORDS = ('true', '1'), ('false', '0')  # as launch's IfCondition reads them
LIFECYCLE_HELP = ('true: a managed (lifecycle) node, unconfigured until configured through '
                  "~/change_state (ros2 lifecycle set, Nav2's lifecycle_manager, or autostart)")
AUTOSTART_HELP = ('With lifecycle:=true: configure the node (load the model), then activate it. '
                  'The plain node is active from the start whatever this says')
USE_SIM_TIME_HELP = ('true: the node takes its clock (and so its latency figures) from /clock, '
                     'as when replaying a bag with `ros2 bag play --clock`.')


@dataclass(frozen=True)
class ParameterArgument:
    """A launch argument that sets one node parameter when given."""

    name: str
    parameter: str

    @property
    def description(self) -> str:
        spec = SPECS.get(self.parameter)
        text = spec.descriptor().description if spec else USE_SIM_TIME_HELP
        return f"{text} Not given: the params_file's {self.parameter}."


@dataclass(frozen=True)
class TopicArgument:
    """A launch argument that remaps one of the node's input topics."""

    name: str
    topic: str        # the node's own name for it
    default: str
    description: str


_COMMON_PARAMETERS = (
    ParameterArgument('backend', 'matcher.backend'),
    ParameterArgument('weights', 'matcher.weights'),
    ParameterArgument('device', 'matcher.device'),
    ParameterArgument('transport', 'transport'),
    ParameterArgument('use_sim_time', 'use_sim_time'),
)
PARAMETER_ARGUMENTS = {
    'consecutive': _COMMON_PARAMETERS,
    'stereo': _COMMON_PARAMETERS + (ParameterArgument('slop', 'stereo.slop'),),
    'tracks': _COMMON_PARAMETERS + (ParameterArgument('stereo', 'tracks.stereo'),
                                    ParameterArgument('calibration', 'tracks.calibration'),
                                    ParameterArgument('slop', 'stereo.slop')),
}
_MONO_TOPICS = (
    # The node resolves `image` first and appends /compressed itself, so this one
    # remapping serves both transports.
    TopicArgument('image', 'image', '/camera/image_raw', 'Image topic matched frame to frame'),
    TopicArgument('camera_info', 'camera_info', '/camera/camera_info',
                  'CameraInfo topic (used with use_camera_info)'),
)
_STEREO_TOPICS = (
    TopicArgument('left_image', 'left/image', '/stereo/left/image_raw', 'Left image topic'),
    TopicArgument('right_image', 'right/image', '/stereo/right/image_raw',
                  'Right image topic'),
    TopicArgument('left_camera_info', 'left/camera_info', '/stereo/left/camera_info',
                  'Left CameraInfo topic (used with use_camera_info)'),
    TopicArgument('right_camera_info', 'right/camera_info', '/stereo/right/camera_info',
                  'Right CameraInfo topic (used with use_camera_info)'),
)
TOPIC_ARGUMENTS = {
    'consecutive': _MONO_TOPICS,
    'stereo': _STEREO_TOPICS,
    # Mono or stereo by the stereo argument: the topics of both, and the VINS-Fusion cloud where
    # VINS-Fusion's estimator reads it (its own feature tracker's topic).
    'tracks': (replace(_MONO_TOPICS[0], description='Image topic tracked (stereo:=false)'),
               _MONO_TOPICS[1], *_STEREO_TOPICS,
               TopicArgument('feature', '~/feature', '/feature_tracker/feature',
                             "Where VINS-Fusion's feature cloud (sensor_msgs/PointCloud) is "
                             "published: VINS-Fusion's estimator subscribes to "
                             '/feature_tracker/feature')),
}


def _parse_bool(name: str, text: str) -> bool:
    if text.lower() in TRUE_WORDS + FALSE_WORDS:
        return text.lower() in TRUE_WORDS
    raise ConfigError(f"launch argument {name}:={text}: expected true or false")


def _typed(argument: ParameterArgument, text: str):
    """`text` as a value of the argument's parameter (ConfigError naming the argument)."""
    spec = SPECS.get(argument.parameter)
    kind = type(spec.default) if spec else bool
    if kind is bool:
        return _parse_bool(argument.name, text)
    try:
        value = kind(text)
    except ValueError:
        raise ConfigError(f'launch argument {argument.name}:={text}: {argument.parameter} '
                          f'takes a {kind.__name__}') from None
    reason = spec.check(value)
    if reason:
        raise ConfigError(f'launch argument {argument.name}:={text}: {reason}')
    return value


def parameter_overrides(mode: str, arguments: Mapping[str, str]) -> Dict[str, object]:
    """The node parameters the launch file sets over params_file: `mode`, and the parameter of
    each argument given (non-empty in `arguments`, name -> text), typed as that parameter."""
    overrides: Dict[str, object] = {'mode': mode}
    for argument in PARAMETER_ARGUMENTS[mode]:
        text = arguments.get(argument.name, '')
        if text != '':
            overrides[argument.parameter] = _typed(argument, text)
    return overrides


def remappings(mode: str, arguments: Mapping[str, str]) -> List[Tuple[str, str]]:
    """(node topic, topic) for each topic argument (its default when not in `arguments`)."""
    return [(argument.topic, arguments.get(argument.name, argument.default))
            for argument in TOPIC_ARGUMENTS[mode]]


def generate_launch_description(mode: str):
    """The LaunchDescription of the launch file for `mode` (consecutive, stereo, tracks)."""
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import PathJoinSubstitution
    from launch_ros.substitutions import FindPackageShare

    reason = SPECS['mode'].check(mode)
    if reason:
        raise ConfigError(reason)
    default_params = PathJoinSubstitution([FindPackageShare(PACKAGE), 'config',
                                           PARAMS_FILES[mode]])
    arguments = [DeclareLaunchArgument(
        'params_file', default_value=default_params,
        description='ROS 2 parameters file of the node (its matcher section also works with '
                    '`loftr-ros --config`); the arguments below override single values of it')]
    arguments += [DeclareLaunchArgument(argument.name, default_value='',
                                        description=argument.description)
                  for argument in PARAMETER_ARGUMENTS[mode]]
    arguments += [DeclareLaunchArgument(argument.name, default_value=argument.default,
                                        description=argument.description)
                  for argument in TOPIC_ARGUMENTS[mode]]
    arguments.append(DeclareLaunchArgument(
        'rviz', default_value='false',
        description=f'Also start RViz with config/{RVIZ_CONFIG} (the overlay); needs rviz2'))
    arguments.append(DeclareLaunchArgument('lifecycle', default_value='false',
                                           description=LIFECYCLE_HELP))
    arguments.append(DeclareLaunchArgument('autostart', default_value='false',
                                           description=AUTOSTART_HELP))
    return LaunchDescription([*arguments, OpaqueFunction(function=_launch_nodes, args=[mode])])


def _launch_nodes(context, mode: str):
    """The node actions for the arguments' values, each of them checked first."""
    from ament_index_python.packages import (PackageNotFoundError, get_package_prefix,
                                             get_package_share_directory)
    from launch_ros.actions import Node

    values = context.launch_configurations
    params_file = values['params_file']
    if not os.path.isfile(params_file):
        raise ConfigError(f'params_file:={params_file}: no such file')
    overrides = parameter_overrides(mode, values)
    rviz = _parse_bool('rviz', values['rviz'])
    lifecycle = _parse_bool('lifecycle', values['lifecycle'])
    autostart = _parse_bool('autostart', values['autostart'])
    if rviz:
        try:
            get_package_prefix('rviz2')
        except PackageNotFoundError:
            raise ConfigError('rviz:=true, but the rviz2 package is not installed (apt install '
                              'ros-$ROS_DISTRO-rviz2, or leave rviz out): nothing started'
                              ) from None
    node_arguments = dict(
        package=PACKAGE, executable='matcher_node', name='matcher_node', output='screen',
        # Typed values: launch_ros passes a str on as a str (weights:=2014 stays '2014').
        parameters=[params_file, overrides],
        remappings=remappings(mode, values))
    if lifecycle:
        nodes = _lifecycle_node(node_arguments, autostart)
    else:
        nodes = [Node(**node_arguments)]
    if rviz:
        config = os.path.join(get_package_share_directory(PACKAGE), 'config', RVIZ_CONFIG)
        nodes.append(Node(package='rviz2', executable='rviz2', name='rviz2',
                          arguments=['-d', config]))
    return nodes


def _lifecycle_node(node_arguments, autostart: bool) -> list:
    """The lifecycle node's action and, with `autostart`, the configure event and the activate
    that follows its success (once: a node deactivated, or cleaned up and configured again by
    hand later, stays as it is put)."""
    from launch.actions import EmitEvent, RegisterEventHandler
    from launch.events import matches_action
    from launch_ros.actions import LifecycleNode
    from launch_ros.event_handlers import OnStateTransition
    from launch_ros.events.lifecycle import ChangeState
    from lifecycle_msgs.msg import Transition

    from loftr_ros.ros.node import LIFECYCLE_FLAG

    node = LifecycleNode(namespace='', arguments=[LIFECYCLE_FLAG], **node_arguments)
    if not autostart:
        return [node]

    def change_state(transition_id):
        return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                           transition_id=transition_id))
    return [node,
            RegisterEventHandler(OnStateTransition(
                target_lifecycle_node=node, start_state='configuring', goal_state='inactive',
                entities=[change_state(Transition.TRANSITION_ACTIVATE)], handle_once=True)),
            # Launch waits for the node's ~/change_state service before calling it.
            change_state(Transition.TRANSITION_CONFIGURE)]
