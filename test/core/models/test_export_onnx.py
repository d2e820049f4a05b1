"""ONNX export of the whole EfficientLoFTR matcher: ONNX Runtime on CPU gives PyTorch's matches."""
import numpy as np
import pytest
import torch

from loftr_ros.core.errors import ConfigError, ImageError
from loftr_ros.core.models.efficientloftr import EfficientLoFTR
from loftr_ros.core.models.efficientloftr_weights import synthetic_weights
from loftr_ros.core.models.export_onnx import OnnxEfficientLoFTR, export_onnx, main
from loftr_ros.core.synthetic import load_photo

pytest.importorskip('onnxruntime')

SMALL_CONF = dict(stage_blocks=(1, 1, 2, 2), stage_channels=(16, 16, 32, 64), hidden_size=64,
                  num_layers=2)
SIZE = (256, 192)


def photo_pair():
    import cv2
    gray = cv2.cvtColor(load_photo('astronaut'), cv2.COLOR_BGR2GRAY)
    gray = cv2.resize(gray, (300, 300), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    width, height = SIZE
    return (np.ascontiguousarray(gray[:height, :width]),
            np.ascontiguousarray(gray[2:height + 2, 3:width + 3]))


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    model = EfficientLoFTR(SMALL_CONF)
    synthetic_weights(model, [torch.from_numpy(photo_pair()[0])[None, None]], seed=4)
    model.reparameterize()
    path = export_onnx(model, tmp_path_factory.mktemp('onnx') / 'eloftr.onnx', SIZE)
    return model, OnnxEfficientLoFTR(path)


def test_onnx_runtime_gives_the_pytorch_matches(exported):
    model, session = exported
    image0, image1 = photo_pair()
    outputs = session(image0, image1)
    with torch.inference_mode():
        expected = model(torch.from_numpy(image0)[None, None], torch.from_numpy(image1)[None, None])
    assert len(expected['scores']) >= 10
    assert outputs['keypoints0'].shape == (len(expected['scores']), 2)
    np.testing.assert_allclose(outputs['keypoints0'], expected['keypoints0'].numpy(), atol=1e-3)
    np.testing.assert_allclose(outputs['keypoints1'], expected['keypoints1'].numpy(), atol=1e-3)
    np.testing.assert_allclose(outputs['scores'], expected['scores'].numpy(), atol=1e-4)


def test_no_matches_gives_empty_outputs(exported):
    _, session = exported
    blank = np.zeros(SIZE[::-1], np.float32)
    outputs = session(blank, blank)
    assert outputs['keypoints0'].shape == (0, 2) and outputs['scores'].shape == (0,)


def test_size_errors(exported, tmp_path):
    model, session = exported
    with pytest.raises(ImageError, match='image0 is 320x192, the model was exported for 256x192'):
        session(np.zeros((192, 320), np.float32), np.zeros((192, 256), np.float32))
    with pytest.raises(ConfigError, match='multiples of 32'):
        export_onnx(model, tmp_path / 'bad.onnx', (250, 192))


def test_command_line_export(tmp_path):
    from loftr_ros.core.models.efficientloftr_weights import save_hf
    save_hf(EfficientLoFTR(SMALL_CONF), tmp_path / 'hf')
    main([str(tmp_path / 'hf'), str(tmp_path / 'cli.onnx'), '--size', '128x96'])
    assert OnnxEfficientLoFTR(tmp_path / 'cli.onnx').size == (128, 96)
