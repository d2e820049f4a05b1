"""The opencv backend raising a RuntimeError (what a model or OpenCV raises on an input it cannot
take) on its second pair: the seam of a backend that fails unexpectedly. Registered by
test_node_hostile.py in the test's process, imported by the node's matching process."""
from loftr_ros.core.backends.opencv import OpenCVBackend


class FailingOnSecondPair(OpenCVBackend):
    pairs = 0

    def match(self, *args, **kwargs):
        FailingOnSecondPair.pairs += 1
        if FailingOnSecondPair.pairs == 2:
            raise RuntimeError('the backend cannot match this pair')
        return super().match(*args, **kwargs)
