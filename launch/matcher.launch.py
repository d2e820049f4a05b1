"""Consecutive-frame matching on one camera.

    ros2 launch loftr_ros matcher.launch.py image:=/camera/image_raw backend:=xfeat
    ros2 launch loftr_ros matcher.launch.py image:=/camera/image_raw transport:=compressed \
        params_file:=/path/to/my_matcher.yaml rviz:=true

Publishes /matcher_node/matches (loftr_ros/msg/Matches), /matcher_node/overlay and
/diagnostics. Parameters come from params_file (default: the installed config/matcher.yaml);
the parameter arguments given (backend, weights, device, transport, use_sim_time) override
single values of it. `--show-args` lists all arguments; both launch files are built by
loftr_ros.ros.launch_description.
"""
from loftr_ros.ros.launch_description import generate_launch_description as _generate


def generate_launch_description():
    return _generate('consecutive')
