"""`python -m loftr_ros.matcher_node --ros-args ...`: run the matcher node."""
import sys

from loftr_ros.ros.shutdown_signals import ShutdownSignals


def main(args=None) -> int:
    # First: importing the node takes a while (rclpy, the messages), and a Ctrl-C meanwhile ends
    # it quietly.
    signals = ShutdownSignals()
    try:
        from loftr_ros.ros.node import main as run_node
    except BaseException:
        if not signals.closing:
            raise
        # Interrupted by a signal (a KeyboardInterrupt, or the ImportError an extension
        # module makes of it).
        signals.ignore()
        return 0
    return run_node(args, signals)


if __name__ == '__main__':
    sys.exit(main())
