"""EfficientLoFTR's two ONNX graphs: ONNX Runtime on the CPU gives PyTorch's per-image features
(in batches too) and matches."""
import numpy as np
import pytest
import torch

from loftr_ros.core.errors import ConfigError
from loftr_ros.core.models.efficientloftr import EfficientLoFTR
from loftr_ros.core.models.efficientloftr_weights import synthetic_weights
from loftr_ros.core.models.efficientloftr_onnx import FEATURE_NAMES, export_spec
from loftr_ros.core.onnx_runtime import CPU, OnnxGraph, ProviderChoice, export_graph
from loftr_ros.core.synthetic import load_photo

pytest.importorskip('onnxruntime', reason='onnxruntime is not installed')

SMALL_CONF = dict(stage_blocks=(1, 1, 2, 2), stage_channels=(16, 16, 32, 64), hidden_size=64,
                  num_layers=2)
SIZE = (256, 192)


def photo_pair():
    import cv2
    gray = cv2.cvtColor(load_photo('astronaut'), cv2.COLOR_BGR2GRAY)
    gray = cv2.resize(gray, (300, 300), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    width, height = SIZE
    return [torch.from_numpy(np.ascontiguousarray(image))[None, None]
            for image in (gray[:height, :width], gray[2:height + 2, 3:width + 3])]


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    model = EfficientLoFTR(SMALL_CONF)
    synthetic_weights(model, [photo_pair()[0]], seed=4)
    model.reparameterize()
    directory = tmp_path_factory.mktemp('onnx')
    cpu = ProviderChoice([CPU], [{}])
    graphs = {part: OnnxGraph(export_graph(export_spec(model, part, sizes),
                                           directory / f'{part}.onnx'), cpu)
              for part, sizes in (('extract', [SIZE]), ('match', [SIZE, SIZE]))}
    return model, graphs


def test_graphs_give_the_pytorch_features_and_matches(exported):
    model, graphs = exported
    images = photo_pair()
    batch = torch.cat(images).numpy()
    features = graphs['extract'](image=batch)
    with torch.inference_mode():
        expected = [model.extract(image) for image in images]
        matches = model.match_features(*expected)
    for index, reference in enumerate(expected):
        for name, tensor in zip(FEATURE_NAMES, (reference.coarse, *reference.projected)):
            np.testing.assert_allclose(features[name][index], tensor[0].numpy(), atol=1e-4)
    outputs = graphs['match'](threshold=np.float32(0.2),
                              **{f'{name}{index}': features[name][index:index + 1]
                                 for index in range(2) for name in FEATURE_NAMES})
    assert len(matches['scores']) >= 10
    np.testing.assert_allclose(outputs['keypoints0'], matches['keypoints0'].numpy(), atol=1e-3)
    np.testing.assert_allclose(outputs['keypoints1'], matches['keypoints1'].numpy(), atol=1e-3)
    np.testing.assert_allclose(outputs['scores'], matches['scores'].numpy(), atol=1e-4)
    # The coarse threshold is an input: the Matcher's threshold at each call.
    stricter = graphs['match'](threshold=np.float32(0.5),
                               **{f'{name}{index}': features[name][index:index + 1]
                                  for index in range(2) for name in FEATURE_NAMES})
    with torch.inference_mode():
        expected = model.match_features(*expected, coarse_threshold=0.5)
    assert 0 < len(expected['scores']) < len(matches['scores'])
    np.testing.assert_allclose(stricter['keypoints1'], expected['keypoints1'].numpy(), atol=1e-3)


def test_no_matches_gives_empty_outputs(exported):
    _, graphs = exported
    blank = np.zeros((1, 1, SIZE[1], SIZE[0]), np.float32)
    features = graphs['extract'](image=blank)
    outputs = graphs['match'](threshold=np.float32(0.2),
                              **{f'{name}{index}': features[name]
                                 for index in range(2) for name in FEATURE_NAMES})
    assert outputs['keypoints0'].shape == (0, 2) and outputs['scores'].shape == (0,)


def test_export_sizes_must_be_multiples_of_the_stride():
    with pytest.raises(ConfigError, match='250x192: sides must be multiples of 32'):
        export_spec(EfficientLoFTR(SMALL_CONF), 'extract', [(250, 192)])
