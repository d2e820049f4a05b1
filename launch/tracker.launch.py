"""Feature tracks with persistent ids for VIO and SLAM back-ends, mono or stereo.

    ros2 launch loftr_ros tracker.launch.py \
        left_image:=/cam0/image_raw right_image:=/cam1/image_raw \
        left_camera_info:=/cam0/camera_info right_camera_info:=/cam1/camera_info
    ros2 launch loftr_ros tracker.launch.py stereo:=false image:=/cam0/image_raw \
        calibration:=/path/to/euroc/calibration.yaml

Publishes /matcher_node/tracks (loftr_ros/msg/FeatureTracks), VINS-Fusion's feature cloud
(sensor_msgs/PointCloud) on /feature_tracker/feature (the `feature` argument; the topic
VINS-Fusion's estimator reads, so no VINS feature tracker is needed: see the README's VINS-Fusion
recipe), /matcher_node/overlay (trails coloured by id) and /diagnostics. The cloud needs the
cameras' models: camera_info (use_camera_info, on in config/tracker.yaml) or the calibration
argument. Parameters come from params_file (default: the installed config/tracker.yaml); the
parameter arguments given (backend, weights, device, transport, use_sim_time, stereo,
calibration, slop) override single values of it. `--show-args` lists all arguments.
"""
from loftr_ros.ros.launch_description import generate_launch_description as _generate


def generate_launch_description():
    return _generate('tracks')
