"""`python -m loftr_ros.matcher_node --ros-args ...`: run the matcher node."""
import sys

from loftr_ros.ros.node import main

if __name__ == '__main__':
    sys.exit(main())
