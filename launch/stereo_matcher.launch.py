"""Left/right matching of a stereo camera, pairs by header stamp.

    ros2 launch loftr_ros stereo_matcher.launch.py \
        left_image:=/cam0/image_raw right_image:=/cam1/image_raw backend:=xfeat
    ros2 launch loftr_ros stereo_matcher.launch.py slop:=0.005 rviz:=true

Publishes /matcher_node/matches (loftr_ros/msg/Matches: header = right image, reference_header =
left image), /matcher_node/overlay and /diagnostics. Parameters come from params_file (default:
the installed config/stereo_matcher.yaml); the launch arguments below override single values.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    share = FindPackageShare('loftr_ros')
    return LaunchDescription([
        DeclareLaunchArgument(
            'params_file',
            default_value=PathJoinSubstitution([share, 'config', 'stereo_matcher.yaml']),
            description='ROS 2 parameters file of the node (its matcher section also works '
                        'with `loftr-ros --config`)'),
        DeclareLaunchArgument('backend', default_value='eloftr',
                              description='eloftr, hf, loftr, lightglue, xfeat or opencv'),
        DeclareLaunchArgument('weights', default_value='',
                              description="'' for the backend default, a hub id or a path"),
        DeclareLaunchArgument('device', default_value='auto',
                              description="auto, cpu, cuda or cuda:N"),
        DeclareLaunchArgument('transport', default_value='raw',
                              description="raw or compressed ('<topic>/compressed')"),
        DeclareLaunchArgument('slop', default_value='0.0',
                              description='Largest left/right stamp difference in seconds'),
        DeclareLaunchArgument('left_image', default_value='/stereo/left/image_raw'),
        DeclareLaunchArgument('right_image', default_value='/stereo/right/image_raw'),
        DeclareLaunchArgument('left_camera_info', default_value='/stereo/left/camera_info'),
        DeclareLaunchArgument('right_camera_info', default_value='/stereo/right/camera_info'),
        DeclareLaunchArgument('rviz', default_value='false',
                              description='Also start RViz showing the overlay'),
        Node(
            package='loftr_ros', executable='matcher_node', name='matcher_node',
            output='screen',
            parameters=[LaunchConfiguration('params_file'), {
                'mode': 'stereo',
                'matcher.backend': LaunchConfiguration('backend'),
                'matcher.weights': LaunchConfiguration('weights'),
                'matcher.device': LaunchConfiguration('device'),
                'transport': LaunchConfiguration('transport'),
                'stereo.slop': ParameterValue(LaunchConfiguration('slop'), value_type=float),
            }],
            remappings=[('left/image', LaunchConfiguration('left_image')),
                        ('right/image', LaunchConfiguration('right_image')),
                        ('left/camera_info', LaunchConfiguration('left_camera_info')),
                        ('right/camera_info', LaunchConfiguration('right_camera_info'))],
        ),
        Node(
            package='rviz2', executable='rviz2', name='rviz2',
            arguments=['-d', PathJoinSubstitution([share, 'config', 'loftr_ros.rviz'])],
            condition=IfCondition(LaunchConfiguration('rviz')),
        ),
    ])
