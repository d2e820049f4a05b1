"""Helpers of the core tests, as fixtures (test modules import nothing from each other):
weights in official formats written by the tests, for the backends whose weights cannot be
downloaded here, and real photo pairs."""
import cv2
import numpy as np
import pytest

from loftr_ros.core.synthetic import load_photo


@pytest.fixture(scope='session')
def loftr_checkpoint(tmp_path_factory):
    """A LoFTR checkpoint as the official repository saves it: {'state_dict': ...} with the
    LightningModule's 'matcher.' prefix on every key (random weights)."""
    import torch
    from kornia.feature import LoFTR

    torch.manual_seed(0)
    state_dict = LoFTR(pretrained=None).state_dict()
    path = tmp_path_factory.mktemp('loftr') / 'outdoor_ds.ckpt'
    torch.save({'state_dict': {f'matcher.{k}': v for k, v in state_dict.items()}}, path)
    return path


def _photo_pair(width, height, shift=(7, 5)):
    """Two overlapping grayscale crops of a real photo, the second shifted by `shift`."""
    gray = cv2.cvtColor(load_photo('astronaut'), cv2.COLOR_BGR2GRAY)
    gray = cv2.resize(gray, (width + 40, height + 40), interpolation=cv2.INTER_AREA)
    return (np.ascontiguousarray(gray[:height, :width]),
            np.ascontiguousarray(gray[shift[1]:shift[1] + height, shift[0]:shift[0] + width]))


def _assert_same_features(single, batched, atol=1e-5):
    """Equal per-image features of a backend (a PreparedImage's .features): tensors, lists of
    them, ImageFeatures, or dicts of a detector's keypoints, scores and descriptors, whose
    keypoints are compared as a set (in the order of their positions: a batch may list them in
    another order)."""
    if isinstance(single, dict):
        keypoints = [np.asarray(features['keypoints']).reshape(-1, 2)
                     for features in (single, batched)]
        order = [np.lexsort(points.T) for points in keypoints]
        assert len(order[0]) == len(order[1])
        for name in single:
            values = [np.asarray(features[name]) for features in (single, batched)]
            values = [value.reshape(len(points), -1)[index]
                      for value, points, index in zip(values, keypoints, order)]
            np.testing.assert_allclose(values[1], values[0], atol=atol, err_msg=name)
    elif single is None:
        assert batched is None
    else:
        tensors = [(features.coarse, *features.projected) for features in (single, batched)]
        for first, second in zip(*tensors):
            np.testing.assert_allclose(second.numpy(), first.numpy(), atol=atol)


@pytest.fixture(scope='session')
def photo_pair():
    return _photo_pair


@pytest.fixture(scope='session')
def assert_same_features():
    return _assert_same_features
