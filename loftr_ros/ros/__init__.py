"""The ROS 2 layer of loftr_ros: node, parameters and message conversion (imports rclpy)."""
