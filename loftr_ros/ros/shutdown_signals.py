"""SIGINT and SIGTERM end the node once, cleanly.

A terminal's Ctrl-C reaches a node started by ``ros2 launch`` more than once: the terminal
signals the whole process group, launch signals its nodes too, and escalates to SIGTERM after
5 s. Python's own SIGINT handler raises KeyboardInterrupt each time, so the second one landed
in the middle of the shutdown the first had begun (a traceback out of ``destroy_node``, exit
code -2), and SIGTERM during a model load went unnoticed until the load ended.

These handlers sit below rclpy's (``rclpy.init`` installs its own and calls the ones it found,
after shutting the context down): the first signal raises KeyboardInterrupt in the main
thread, which stops an import, a model load or the executor at once; later ones, and any
after ``closing`` is set, do nothing, so that the shutdown completes. Once it has, ``ignore``
makes the signals ignored for good: Python restores the default handlers when it exits, and
a signal during the teardown that follows (DDS, torch) would still kill the process (-2).
"""
import signal


class ShutdownSignals:
    """Installs the handlers when created; create it in the main thread, before rclpy.init
    and before the slow imports (torch)."""

    def __init__(self):
        self.closing = False
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum, frame):
        if not self.closing:
            self.closing = True
            raise KeyboardInterrupt

    def ignore(self):
        """Ignore SIGINT and SIGTERM from now on (call once the node is shut down)."""
        self.closing = True
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
