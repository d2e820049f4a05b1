"""ROS-independent core of loftr_ros: matching, conversions, geometry, evaluation."""
