"""MatcherConfig from its declarations: values of the wrong type refused in words, and the
config_id made of the settings declared to identify the matches."""
import pytest

from loftr_ros.core.config import SETTINGS, MatcherConfig, load_matcher_config
from loftr_ros.core.errors import ConfigError
from loftr_ros.core.settings import defaults_of

DEFAULTS = defaults_of(MatcherConfig)
CPU = 'CPUExecutionProvider'


@pytest.mark.parametrize('line, reason', [
    ("ransac_threshold: '1.0'", "ransac_threshold must be a number, got the string '1.0'"),
    ('confidence_threshold: .nan', None),  # a float: refused by its range below
    ('max_matches: true', 'max_matches must be an integer, got the boolean true'),
    ('resize: 640.0', 'resize must be an integer, got the double 640.0'),
    ('warmup: 1', r'warmup must be a boolean \(true or false\), got the integer 1'),
    ('backend: 3', 'backend must be a string, got the integer 3'),
    ('providers: CPUExecutionProvider',
     "providers must be a list of strings, got the string 'CPUExecutionProvider'"),
    ('providers: [1]', 'providers must be a list of strings, got a list value'),
    ('options: [top_k]', 'options must be a mapping, got a list value'),
])
def test_a_value_of_the_wrong_type_is_refused_naming_setting_type_and_value(tmp_path, line,
                                                                           reason):
    path = tmp_path / 'matcher.yaml'
    path.write_text(f'matcher:\n  backend: opencv\n  {line}\n'.replace(
        '  backend: opencv\n  backend', '  backend'))
    with pytest.raises(ConfigError, match=reason or r'confidence_threshold must be in \[-1.0, '
                                                    r'1.0\], got nan'):
        load_matcher_config(str(path))


def test_an_integer_is_a_number_for_a_float_setting(tmp_path):
    path = tmp_path / 'matcher.yaml'
    path.write_text('matcher:\n  ransac_threshold: 2\n  confidence_threshold: 0\n')
    config = load_matcher_config(str(path))
    assert config.ransac_threshold == 2 and config.confidence_threshold == 0


def test_config_ids_are_those_of_before_identifies_was_declared():
    """Computed with the code before (main at 5a654b7, and the same before the threshold
    default became -1): the same values keep their id, so results, caches and exported graphs
    named by it stay valid."""
    assert MatcherConfig().config_id == '47b4cb30'
    threshold = {'confidence_threshold': 0.2}
    assert MatcherConfig(**threshold).config_id == '88ddfe1a'
    assert MatcherConfig(**threshold, device='cpu', warmup=False, max_image_pixels=5,
                         max_compressed_bytes=7, providers=[CPU],
                         provider_fallback=True).config_id == '88ddfe1a'
    assert MatcherConfig(backend='xfeat', confidence_threshold=0.1,
                         options={'top_k': 1024}).config_id == 'e70c79ac'
    assert MatcherConfig(**threshold, runtime='onnxruntime').config_id == '5781b38e'
    assert MatcherConfig(**threshold, runtime='onnxruntime', providers=[CPU],
                         provider_fallback=True, device='cpu').config_id == '54fab5ad'


def other_value(name, value):
    """A valid value of setting `name` other than `value`."""
    spec = SETTINGS[name]
    if spec.choices:
        return next(choice for choice in spec.choices if choice != value)
    if isinstance(value, bool):
        return not value
    if spec.value_range:
        return type(value)(spec.value_range[1])
    return {str: 'cpu', list: [CPU], dict: {'top_k': 1}}[type(value)]


# What does not change the matches (threads: the same work on more cores); with torch also the
# runtime's settings (ids as before).
SAME_MATCHES = {'device', 'warmup', 'threads', 'max_image_pixels', 'max_compressed_bytes'}
ONNXRUNTIME = {'providers', 'provider_fallback'}


@pytest.mark.parametrize('runtime', ['torch', 'onnxruntime'])
def test_config_id_holds_the_settings_declared_to_identify_the_matches(runtime):
    base = MatcherConfig(runtime=runtime)
    ignored = SAME_MATCHES | (ONNXRUNTIME if runtime == 'torch' else set())
    for name in DEFAULTS:
        changed = base.replace(**{name: other_value(name, getattr(base, name))})
        assert (changed.config_id == base.config_id) == (name in ignored), name
        # Declared with the setting (runtime counts from the moment it is not torch).
        if name != 'runtime':
            assert SETTINGS[name].identifies_in(base) == (name not in ignored), name
