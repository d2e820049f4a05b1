"""The opencv backend taking SLOW_BACKEND_S seconds (from the environment) over each pair, and
creating the file SLOW_BACKEND_STARTED (when set) as it starts one: a long match to change
settings or shut the node down under. Registered by the tests in the test's process, imported
by the node's matching process (which inherits the environment)."""
import os
import time
from pathlib import Path

from loftr_ros.core.backends.opencv import OpenCVBackend


class SlowBackend(OpenCVBackend):

    def match(self, *args, **kwargs):
        if os.environ.get('SLOW_BACKEND_STARTED'):
            Path(os.environ['SLOW_BACKEND_STARTED']).touch()
        time.sleep(float(os.environ['SLOW_BACKEND_S']))
        return super().match(*args, **kwargs)
