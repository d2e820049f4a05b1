"""Result type shared by every backend, the node, the service and the bag tools."""
import dataclasses
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping, Optional

import numpy as np


# The fields holding arrays (inliers may be None).
_ARRAYS = ('keypoints0', 'keypoints1', 'scores', 'inliers')


@dataclass(frozen=True, eq=False)
class MatchResult:
    """Correspondences between a reference image (0) and a current image (1).

    keypoints0, keypoints1: [N x 2] float32, sub-pixel (x, y) in each ORIGINAL image's pixel
        frame (OpenCV convention: the centre of the top-left pixel is (0, 0)).
    scores: [N] float32 confidence in [0, 1], sorted best first.
    inliers: [N] uint8 (1 = inlier) from geometric verification, or None when it was off or
        could not run (too few matches).
    geometry_model: '', 'fundamental', 'essential' or 'homography': what produced `inliers`.
    image_size0, image_size1: (width, height) of the images as given to `match`.
    timings: seconds per stage: {'preprocess', 'model', 'refine', 'verify', 'total'} from the
        Matcher ('verify' includes mapping back and filtering); read-only, as the whole result:
        a changed result is a new one (``dataclasses.replace``).

    The arrays are read-only (``writeable`` False; a writeable array given is copied first, so
    that its owner cannot change the result either): a result is a value that the node, the
    tools and a consumer's callback may share. Results compare equal when every field does
    (arrays element by element, dtype included), and pickle (multiprocessing, caches).
    """

    keypoints0: np.ndarray
    keypoints1: np.ndarray
    scores: np.ndarray
    image_size0: tuple
    image_size1: tuple
    inliers: Optional[np.ndarray] = None
    geometry_model: str = ''
    timings: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.scores)
        if self.keypoints0.shape != (n, 2) or self.keypoints1.shape != (n, 2):
            msg = (f'keypoints must be [{n} x 2] like scores, got {self.keypoints0.shape} '
                   f'and {self.keypoints1.shape}')
            raise ValueError(msg)
        if self.inliers is not None and self.inliers.shape != (n,):
            msg = f'inliers must be [{n}], got {self.inliers.shape}'
            raise ValueError(msg)
        for name in _ARRAYS:
            array = getattr(self, name)
            if array is not None and array.flags.writeable:
                array = array.copy()
                array.flags.writeable = False
                object.__setattr__(self, name, array)
        object.__setattr__(self, 'timings', MappingProxyType(dict(self.timings)))

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        for field_ in dataclasses.fields(self):
            mine, theirs = getattr(self, field_.name), getattr(other, field_.name)
            if field_.name in _ARRAYS:
                if (mine is None) != (theirs is None) or (mine is not None and (
                        mine.dtype != theirs.dtype or not np.array_equal(mine, theirs))):
                    return False
            elif mine != theirs:
                return False
        return True

    # Equal results may hold different arrays; a result is not a dict key.
    __hash__ = None

    def __reduce__(self):
        # The timings' MappingProxyType does not pickle: rebuild through __init__ (which also
        # makes the unpickled arrays read-only again).
        values = {field_.name: getattr(self, field_.name) for field_ in dataclasses.fields(self)}
        values['timings'] = dict(self.timings)
        return _rebuild, (values,)

    def __len__(self):
        return len(self.scores)

    @property
    def num_inliers(self):
        return int(self.inliers.sum()) if self.inliers is not None else len(self)


def _rebuild(values) -> MatchResult:
    """A pickled MatchResult (see MatchResult.__reduce__)."""
    return MatchResult(**values)
