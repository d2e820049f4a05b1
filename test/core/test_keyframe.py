"""KeyframePolicy: when the current frame becomes the keyframe, and its settings."""
import numpy as np
import pytest

from loftr_ros.core.errors import ConfigError
from loftr_ros.core.keyframe import KeyframePolicy, overlap_fraction
from loftr_ros.core.types import MatchResult


def result_covering(fraction, count=200, size=(640, 480)):
    """`count` matches spread over the left `fraction` of a `size` image."""
    rng = np.random.default_rng(0)
    width, height = size
    points = rng.random((count, 2)).astype(np.float32) * [width * fraction, height]
    points[:4] = [[0, 0], [width * fraction, 0], [0, height], [width * fraction, height]]
    return MatchResult(points, points, np.ones(count, np.float32), size, size)


def test_replaced_when_matches_or_overlap_drop():
    policy = KeyframePolicy(min_matches=100, min_overlap=0.5)
    assert overlap_fraction(result_covering(0.8)) == pytest.approx(0.8, abs=0.01)
    assert not policy.should_replace(result_covering(0.8))
    assert policy.should_replace(result_covering(0.3))
    assert policy.should_replace(result_covering(0.8, count=50))


@pytest.mark.parametrize('settings, message', [
    ({'min_matches': -1}, r'min_matches must be in \[0, 1000000\], got -1'),
    ({'min_overlap': 1.5}, r'min_overlap must be in \[0.0, 1.0\], got 1.5'),
    # The types the declarations give (the node's parameters have the same ones).
    ({'min_matches': True}, 'min_matches must be an integer, got the boolean true'),
    ({'min_overlap': '0.5'}, "min_overlap must be a number, got the string '0.5'"),
])
def test_invalid_settings_are_config_errors(settings, message):
    with pytest.raises(ConfigError, match=message):
        KeyframePolicy(**settings)
