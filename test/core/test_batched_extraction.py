"""Batched per-image stages (torch runtime): the two images of a stereo pair go through the
backend's per-image stage as one batch, with what two single extractions give (1e-5), and
Matcher.match on two arrays uses it."""
import importlib.util

import numpy as np
import pytest

from loftr_ros.core.config import MatcherConfig
from loftr_ros.core.matcher import Matcher

# (backend, options, image size): small images, the backends with a per-image stage.
CASES = [('eloftr', {}, (320, 240)),
         ('xfeat', {}, (320, 240)),
         ('lightglue', {}, (192, 128)),
         ('opencv', {}, (320, 240))]


def make_matcher(backend, options, eloftr_hf_dir):
    if backend in ('xfeat', 'lightglue') and not importlib.util.find_spec(f'scm_{backend}'):
        pytest.skip(f'scm-{backend} is not installed')
    weights = str(eloftr_hf_dir) if backend == 'eloftr' else ''
    return Matcher(MatcherConfig(backend=backend, weights=weights, device='cpu', resize=0,
                                 warmup=False, options=options))


@pytest.mark.parametrize('backend, options, size', CASES)
def test_batch_equals_single_extractions(backend, options, size, eloftr_hf_dir, photo_pair,
                                         assert_same_features):
    matcher = make_matcher(backend, options, eloftr_hf_dir)
    left, right = photo_pair(*size)
    batched = matcher.prepare_batch([left, right])
    for image, prepared in zip((left, right), batched):
        single = matcher.prepare(image)
        assert_same_features(single.features, prepared.features)
        np.testing.assert_array_equal(prepared.tensor.numpy(), single.tensor.numpy())
        assert prepared.transform == single.transform
        assert prepared.timings['preprocess'] > 0
    assert batched[0].timings['model'] == batched[1].timings['model'] > 0


@pytest.mark.parametrize('backend, options, size', CASES[:2])
def test_match_prepares_a_stereo_pair_as_one_batch(backend, options, size, eloftr_hf_dir,
                                                   photo_pair, monkeypatch):
    """Two arrays of one size: one batch of two; of two sizes: one batch each. The matches are
    those of two single preparations."""
    matcher = make_matcher(backend, options, eloftr_hf_dir)
    left, right = photo_pair(*size)
    reference = matcher.match(matcher.prepare(left), matcher.prepare(right))
    # Count the model's per-image runs and their batch sizes.
    model, method = ((matcher.backend.model, 'extract') if backend == 'eloftr'
                     else (matcher.backend.xfeat, 'detectAndCompute'))
    batches, run = [], getattr(model, method)

    def counted(images, *args, **kwargs):
        batches.append(len(images))
        return run(images, *args, **kwargs)

    monkeypatch.setattr(model, method, counted)
    result = matcher.match(left, right)
    assert batches == [2]
    assert len(result) >= 20 and abs(len(result) - len(reference)) <= 0.01 * len(reference)
    matcher.match(left, right[:-32])
    assert batches == [2, 1, 1]
