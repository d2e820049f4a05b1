"""Consecutive-frame matching on one camera.

    ros2 launch loftr_ros matcher.launch.py image:=/camera/image_raw backend:=xfeat
    ros2 launch loftr_ros matcher.launch.py image:=/camera/image_raw transport:=compressed \
        params_file:=/path/to/my_matcher.yaml rviz:=true

Publishes /matcher_node/matches (loftr_ros/msg/Matches), /matcher_node/overlay and
/diagnostics. Parameters come from params_file (default: the installed config/matcher.yaml);
the launch arguments below override single values of it.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    share = FindPackageShare('loftr_ros')
    return LaunchDescription([
        DeclareLaunchArgument(
            'params_file', default_value=PathJoinSubstitution([share, 'config', 'matcher.yaml']),
            description='ROS 2 parameters file of the node (its matcher section also works '
                        'with `loftr-ros --config`)'),
        DeclareLaunchArgument('backend', default_value='eloftr',
                              description='eloftr, hf, loftr, lightglue, xfeat or opencv'),
        DeclareLaunchArgument('weights', default_value='',
                              description="'' for the backend default, a hub id or a path"),
        DeclareLaunchArgument('device', default_value='auto',
                              description="auto, cpu, cuda or cuda:N"),
        DeclareLaunchArgument('transport', default_value='raw',
                              description="raw or compressed ('<image>/compressed')"),
        DeclareLaunchArgument('image', default_value='/camera/image_raw',
                              description='Image topic to match frame to frame'),
        DeclareLaunchArgument('camera_info', default_value='/camera/camera_info',
                              description='CameraInfo topic (used with use_camera_info)'),
        DeclareLaunchArgument('rviz', default_value='false',
                              description='Also start RViz showing the overlay'),
        Node(
            package='loftr_ros', executable='matcher_node', name='matcher_node',
            output='screen',
            parameters=[LaunchConfiguration('params_file'), {
                'mode': 'consecutive',
                'matcher.backend': LaunchConfiguration('backend'),
                'matcher.weights': LaunchConfiguration('weights'),
                'matcher.device': LaunchConfiguration('device'),
                'transport': LaunchConfiguration('transport'),
            }],
            # The node resolves `image` first and appends /compressed itself, so this one
            # remapping serves both transports.
            remappings=[('image', LaunchConfiguration('image')),
                        ('camera_info', LaunchConfiguration('camera_info'))],
        ),
        Node(
            package='rviz2', executable='rviz2', name='rviz2',
            arguments=['-d', PathJoinSubstitution([share, 'config', 'loftr_ros.rviz'])],
            condition=IfCondition(LaunchConfiguration('rviz')),
        ),
    ])
