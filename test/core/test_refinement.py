"""NCC sub-pixel refinement on a real photo moved by known sub-pixel warps."""
import cv2
import numpy as np
import pytest
import skimage.data

from loftr_ros.core.refinement import NCCRefinement


def _photo():
    gray = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)
    return cv2.resize(gray, (640, 480), interpolation=cv2.INTER_AREA).astype(np.float32) / 255


def _warp(image, affine):
    """image seen through the 2x3 affine map (image-0 pixels -> image-1 pixels)."""
    return cv2.warpAffine(image, affine, image.shape[::-1], flags=cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REFLECT)


def _textured_points(image, count, seed=0):
    """Corners (strong texture) away from the border, in random order."""
    corners = cv2.goodFeaturesToTrack(image, 4 * count, 0.01, 8, blockSize=7)[:, 0]
    inside = ((corners >= 40) & (corners < np.array(image.shape[::-1]) - 40)).all(axis=1)
    corners = corners[inside]
    return corners[np.random.default_rng(seed).permutation(len(corners))[:count]]


def _apply(affine, points):
    return points @ affine[:, :2].T + affine[:, 2]


@pytest.mark.parametrize('angle, zoom', [(0.0, 1.0), (15.0, 0.85)])
def test_refined_keypoints_land_on_the_true_position(angle, zoom):
    image0 = _photo()
    affine = cv2.getRotationMatrix2D((320, 240), angle, zoom)
    affine[:, 2] += (3.37, -1.71)  # a sub-pixel translation on top
    image1 = _warp(image0, affine)
    keypoints0 = _textured_points(image0, 300)
    truth = _apply(affine, keypoints0)
    # Whole-pixel detections up to 4 px off, as a detector at 1/8 resolution gives.
    rng = np.random.default_rng(1)
    keypoints1 = np.round(truth + rng.integers(-4, 5, truth.shape)).astype(np.float32)

    refined, moved = NCCRefinement().refine(image0, image1, keypoints0, keypoints1)

    assert refined.dtype == np.float32 and refined.shape == keypoints1.shape
    assert moved.mean() > 0.9
    errors = np.linalg.norm(refined[moved] - truth[moved], axis=1)
    assert np.median(errors) < 0.1
    assert (errors < 0.5).mean() > 0.95
    assert np.array_equal(refined[~moved], keypoints1[~moved])


def test_matches_it_cannot_trust_keep_their_position():
    image0 = _photo()
    image1 = _warp(image0, np.array([[1.0, 0, 2.5], [0, 1.0, 0.5]]))
    flat = np.full_like(image0, 0.5)
    keypoints0 = np.array([[300.0, 200.0],   # textured, true partner 12 px away: beyond search
                           [3.0, 200.0],     # patch would leave image 0
                           [300.0, 476.0],   # search region would leave image 1
                           [320.0, 240.0]],  # flat patch (second image pair)
                          np.float32)
    keypoints1 = keypoints0 + np.array([[2.5 + 12, 0.5], [2.5, 0.5], [2.5, 0.5], [0, 0]],
                                       np.float32)
    refinement = NCCRefinement()
    _, moved = refinement.refine(image0, image1, keypoints0[:3], keypoints1[:3])
    assert not moved.any()
    _, moved = refinement.refine(flat, flat, keypoints0[3:], keypoints1[3:])
    assert not moved.any()


def test_no_matches_and_more_patches_than_one_remap_takes():
    image0 = _photo()
    image1 = _warp(image0, np.array([[1.0, 0, 1.25], [0, 1.0, -0.5]]))
    refined, moved = NCCRefinement().refine(image0, image1, np.zeros((0, 2)), np.zeros((0, 2)))
    assert refined.shape == (0, 2) and moved.shape == (0,)
    # 3000 patches of 27 px rows exceed OpenCV's 32767-pixel remap limit: several calls.
    keypoints0 = np.tile(_textured_points(image0, 300), (10, 1))
    truth = keypoints0 + np.array([1.25, -0.5], np.float32)
    refined, moved = NCCRefinement().refine(image0, image1, keypoints0, np.round(truth))
    assert moved.mean() > 0.9
    assert np.median(np.linalg.norm(refined[moved] - truth[moved], axis=1)) < 0.1


def test_a_reference_patch_that_the_warp_takes_outside_image_0_is_not_used():
    """Image 1 is image 0 zoomed out by 2: the reference patch is sampled on a grid twice as
    wide, so a keypoint 12 px from the border of image 0 is too close (and kept)."""
    image0 = _photo()
    affine = cv2.getRotationMatrix2D((320, 240), 0.0, 0.5)
    image1 = _warp(image0, affine)
    keypoints0 = np.vstack([_textured_points(image0, 60), [[12.0, 240.0]]]).astype(np.float32)
    truth = _apply(affine, keypoints0)
    keypoints1 = np.round(truth + 1).astype(np.float32)

    refined, moved = NCCRefinement().refine(image0, image1, keypoints0, keypoints1)

    assert not moved[-1] and np.array_equal(refined[-1], keypoints1[-1])
    assert moved[:-1].mean() > 0.8
    assert np.median(np.linalg.norm(refined[:-1][moved[:-1]] - truth[:-1][moved[:-1]],
                                    axis=1)) < 0.1


def test_correlations_are_opencvs_template_matching():
    """The NCC maps of all patches at once (one grouped convolution) are what one
    cv2.matchTemplate (TM_CCOEFF_NORMED) call per patch gives, on the photo's textured points
    searched in a shifted view, within float rounding; flat windows give 0 and a flat template
    1, as OpenCV's."""
    from loftr_ros.core.refinement import _ncc_maps, _windows

    image0 = _photo()
    image1 = _warp(image0, np.array([[1.0, 0.0, 1.4], [0.0, 1.0, -0.6]]))
    image1[200:260, 300:360] = 0.5  # a flat area
    points = np.concatenate([_textured_points(image0, 200), [[330.0, 230.0]]])
    half, search = 7, 6
    templates = np.stack([cv2.getRectSubPix(image0, (15, 15), tuple(point))
                          for point in points.astype(np.float32)])
    templates[-2] = 0.25  # a flat template
    templates -= templates.mean(axis=(1, 2), keepdims=True)
    regions = _windows(image1, np.round(points), 2 * (half + search) + 1)
    expected = np.stack([cv2.matchTemplate(region, template, cv2.TM_CCOEFF_NORMED)
                         for region, template in zip(regions, templates)])
    found = _ncc_maps(regions, templates)
    assert found.shape == expected.shape == (len(points), 13, 13)
    assert np.abs(found - expected).max() < 1e-5
    assert (found[-1] == 0).all() and (found[-2] == 1).all()
    best = expected[:-2].reshape(len(points) - 2, -1).max(axis=1)
    assert np.median(best) > 0.9  # real correlation peaks were compared
