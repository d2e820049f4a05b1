"""Left/right matching of a stereo camera, pairs by header stamp.

    ros2 launch loftr_ros stereo_matcher.launch.py \
        left_image:=/cam0/image_raw right_image:=/cam1/image_raw backend:=xfeat
    ros2 launch loftr_ros stereo_matcher.launch.py slop:=0.005 rviz:=true

Publishes /matcher_node/matches (loftr_ros/msg/Matches: header = right image, reference_header =
left image), /matcher_node/overlay and /diagnostics. Parameters come from params_file (default:
the installed config/stereo_matcher.yaml); the parameter arguments given (backend, weights,
device, transport, use_sim_time, slop) override single values of it. `--show-args` lists all
arguments; both launch files are built by loftr_ros.ros.launch_description.
"""
from loftr_ros.ros.launch_description import generate_launch_description as _generate


def generate_launch_description():
    return _generate('stereo')
