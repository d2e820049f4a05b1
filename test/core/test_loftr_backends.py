"""The LoFTR-family backends without reachable weights: the tests write random weights in the
official on-disk formats (a Hugging Face directory with config.json and model.safetensors; a
LoFTR .ckpt with a state_dict), load them through the real loading code, run the whole pipeline
on odd image sizes, and compare with the reference implementations called directly."""
import copy

import cv2
import numpy as np
import pytest
import torch

from loftr_ros.core.config import MatcherConfig
from loftr_ros.core.errors import WeightsError
from loftr_ros.core.matcher import Matcher

ODD_SIZES = [(752, 480), (1280, 720), (641, 479)]


def _photo_pair(size, shift=(21, 11), colour=False):
    """Two overlapping crops of scikit-image's astronaut photo, each of `size` (grayscale, or
    BGR with `colour`)."""
    import skimage.data

    width, height = size
    code = cv2.COLOR_RGB2BGR if colour else cv2.COLOR_RGB2GRAY
    big = cv2.resize(cv2.cvtColor(skimage.data.astronaut(), code),
                     (width + shift[0], height + shift[1]), interpolation=cv2.INTER_AREA)
    return big[:height, :width].copy(), big[shift[1]:, shift[0]:].copy()


def _spread_random_init(model):
    """Random weights whose features vary over the image: He-normal convolutions and linear
    layers, batch norms near identity (transformers' init scales them by 0.02, which makes
    every coarse feature equal and every confidence 1 / cells^2)."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.zero_()
            elif isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                torch.nn.init.kaiming_normal_(module.weight)
                if module.bias is not None:
                    module.bias.zero_()


@pytest.fixture(scope='module')
def eloftr_dir(tmp_path_factory):
    """A small EfficientLoFTR in the Hugging Face format (config.json, model.safetensors and the
    image processor's preprocessor_config.json), as save_pretrained writes it."""
    from transformers import EfficientLoFTRConfig, EfficientLoFTRForKeypointMatching
    from transformers.models.efficientloftr import EfficientLoFTRImageProcessorPil

    torch.manual_seed(0)
    # Four stages of one block and one attention layer keep CPU time small; the head size (8
    # heads of 8) keeps RoPE's partial rotary factor of 4 consistent with the hidden size.
    config = EfficientLoFTRConfig(stage_num_blocks=[1, 1, 1, 1], out_features=[16, 16, 32, 64],
                                  hidden_size=64, num_attention_layers=1, num_attention_heads=8,
                                  num_key_value_heads=8, intermediate_size=128)
    model = EfficientLoFTRForKeypointMatching(config).eval()
    _spread_random_init(model)
    path = tmp_path_factory.mktemp('eloftr')
    model.save_pretrained(path)
    EfficientLoFTRImageProcessorPil().save_pretrained(path)
    assert (path / 'config.json').is_file() and (path / 'model.safetensors').is_file()
    return path


def _check_result(result, size):
    width, height = size
    assert result.image_size0 == size and result.image_size1 == size
    assert result.keypoints0.dtype == np.float32
    assert len(result) > 0
    for points in (result.keypoints0, result.keypoints1):
        assert np.all((points >= -0.5) & (points < [width - 0.5, height - 0.5]))
    assert np.all(np.diff(result.scores) <= 0)


@pytest.mark.slow
def test_hf_efficientloftr_pipeline_on_odd_sizes(eloftr_dir):
    matcher = Matcher(MatcherConfig(backend='hf', weights=str(eloftr_dir), resize=320,
                                    confidence_threshold=0.0, geometry='fundamental',
                                    warmup=False))
    assert matcher.model_name == f'hf:{eloftr_dir}'
    for size in ODD_SIZES:
        _check_result(matcher.match(*_photo_pair(size)), size)


@pytest.mark.slow
def test_loftr_checkpoint_pipeline_on_odd_sizes(loftr_checkpoint):
    matcher = Matcher(MatcherConfig(backend='loftr', weights=str(loftr_checkpoint), resize=320,
                                    confidence_threshold=0.0, warmup=False))
    assert matcher.model_name == f'loftr:{loftr_checkpoint}'
    for size in ODD_SIZES:
        _check_result(matcher.match(*_photo_pair(size)), size)


@pytest.fixture(scope='module')
def reference_pipeline(eloftr_dir):
    """transformers' own keypoint-matching pipeline for the test weights: the image processor
    found by AutoImageProcessor and the model by AutoModelForKeypointMatching."""
    from transformers import AutoImageProcessor, AutoModelForKeypointMatching

    processor = AutoImageProcessor.from_pretrained(eloftr_dir)
    model = AutoModelForKeypointMatching.from_pretrained(eloftr_dir).eval()
    # Random weights: keep every mutual nearest neighbour, in the reference and in ours.
    model.config.coarse_matching_threshold = 0.0
    return processor, model


def _as_rgb(image):
    """A grey or BGR image as the HxWx3 RGB array the image processors take."""
    return np.dstack([image] * 3) if image.ndim == 2 else image[:, :, ::-1].copy()


def _pipeline_matches(reference_pipeline, image0, image1):
    """The pipeline's matches (processor, model, post-processing) with the keypoints taken
    before post-processing casts them to int32."""
    processor, model = reference_pipeline
    height, width = image0.shape[:2]
    inputs = processor([_as_rgb(image0), _as_rgb(image1)],
                       size={'height': height, 'width': width}, return_tensors='pt')
    with torch.inference_mode():
        outputs = model(**inputs)
    rounded = processor.post_process_keypoint_matching(outputs, [[(height, width)] * 2])[0]
    keypoints = outputs.keypoints[0] * torch.tensor([width, height])
    valid0, valid1 = (outputs.matches[0] > -1) & (outputs.matching_scores[0] > 0)
    keypoints0, keypoints1 = keypoints[0][valid0].numpy(), keypoints[1][valid1].numpy()
    # These float keypoints are exactly those the pipeline rounds.
    np.testing.assert_array_equal(rounded['keypoints0'].numpy(), keypoints0.astype(np.int32))
    np.testing.assert_array_equal(rounded['keypoints1'].numpy(), keypoints1.astype(np.int32))
    return keypoints0, keypoints1, outputs.matching_scores[0, 0][valid0].numpy()


def _as_rows(keypoints0, keypoints1, scores):
    """Matches as [x0 y0 x1 y1 score] rows in a canonical order, for set comparison."""
    rows = np.column_stack([keypoints0, keypoints1, scores])
    return rows[np.lexsort(rows[:, ::-1].T)]


@pytest.fixture(scope='module')
def hf_matcher(eloftr_dir):
    return Matcher(MatcherConfig(backend='hf', weights=str(eloftr_dir), resize=0,
                                 confidence_threshold=0.0, warmup=False))


def test_hf_matches_the_transformers_pipeline(hf_matcher, reference_pipeline):
    """Same weights, same 320x256 image pair: the Matcher's matches are the pipeline's float
    keypoints, shifted by the documented -0.5 px into the pixel-centre frame, without those
    the model places outside an image."""
    image0, _ = _photo_pair((320, 256))
    # Identical images, so that random weights still give many matches inside the images.
    reference0, reference1, reference_scores = _pipeline_matches(reference_pipeline, image0,
                                                                 image0)
    result = hf_matcher.match(image0, image0)
    reference0, reference1 = reference0 - 0.5, reference1 - 0.5
    inside = np.all((reference0 >= -0.5) & (reference0 < [319.5, 255.5]) &
                    (reference1 >= -0.5) & (reference1 < [319.5, 255.5]), axis=1)
    assert inside.sum() >= 15
    np.testing.assert_allclose(
        _as_rows(result.keypoints0, result.keypoints1, result.scores),
        _as_rows(reference0[inside], reference1[inside], reference_scores[inside]), atol=1e-4)


@pytest.mark.parametrize('colour', [False, True], ids=['grey', 'colour'])
def test_hf_backend_pairs_keypoints_like_the_pipeline(hf_matcher, reference_pipeline, colour):
    """On two different images, every raw match of the backend (before the Matcher drops
    those outside the images) is the pipeline's, image 0 and image 1 in the right order. A
    colour pair is turned grey as the image processor does it (NTSC weights)."""
    image0, image1 = _photo_pair((320, 256), colour=colour)
    reference0, reference1, reference_scores = _pipeline_matches(reference_pipeline, image0,
                                                                 image1)
    assert len(reference0) >= 5
    processor = reference_pipeline[0]
    expected_input = processor([_as_rgb(image0), _as_rgb(image1)],
                               size={'height': 256, 'width': 320}, return_tensors='pt')
    prepared = hf_matcher.prepare(image0), hf_matcher.prepare(image1)
    np.testing.assert_allclose(hf_matcher.backend.pixel_values(*prepared).numpy(),
                               expected_input['pixel_values'].numpy(), atol=1e-6)
    with torch.inference_mode():
        raw = hf_matcher.backend.match(*prepared, hf_matcher.confidence_threshold)
    # The backend reports the model's frame; the Matcher subtracts frame_offset (0.5 here).
    offset = hf_matcher.backend.frame_offset
    np.testing.assert_allclose(
        _as_rows(raw.keypoints0.numpy() - offset, raw.keypoints1.numpy() - offset,
                 raw.scores.numpy()),
        _as_rows(reference0 - 0.5, reference1 - 0.5, reference_scores), atol=1e-4)


@pytest.mark.parametrize('colour', [False, True], ids=['grey', 'colour'])
def test_loftr_matches_kornia_called_directly(loftr_checkpoint, colour, colour_stereo_pair):
    """Same weights, same images: the loftr backend's matches are kornia's, shifted by the
    documented -0.5 px into the pixel-centre frame. A colour image is turned grey as LoFTR's
    demo does (cv2.imread(path, IMREAD_GRAYSCALE): OpenCV's luma on the uint8 image), then
    scaled by 1/255."""
    from kornia.feature.loftr import loftr as kornia_loftr

    if colour:
        image0, image1 = colour_stereo_pair
    else:
        image0, image1 = _photo_pair((320, 256))
    height, width = image0.shape[:2]
    grey0, grey1 = (cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if colour else image
                    for image in (image0, image1))
    config = copy.deepcopy(kornia_loftr.default_cfg)
    config['match_coarse']['thr'] = 0.0
    reference_model = kornia_loftr.LoFTR(pretrained=None, config=config)
    state_dict = torch.load(loftr_checkpoint, weights_only=True)['state_dict']
    reference_model.load_state_dict(state_dict)
    reference_model.eval()
    with torch.inference_mode():
        reference = reference_model({
            'image0': torch.from_numpy(grey0 / 255.0).float()[None, None],
            'image1': torch.from_numpy(grey1 / 255.0).float()[None, None]})
    reference0 = reference['keypoints0'].numpy() - 0.5
    reference1 = reference['keypoints1'].numpy() - 0.5
    reference_scores = reference['confidence'].numpy()
    limit = [width - 0.5, height - 0.5]
    inside = np.all((reference0 >= -0.5) & (reference0 < limit) &
                    (reference1 >= -0.5) & (reference1 < limit), axis=1)
    assert inside.sum() >= 30

    matcher = Matcher(MatcherConfig(backend='loftr', weights=str(loftr_checkpoint), resize=0,
                                    confidence_threshold=0.0, warmup=False))
    result = matcher.match(image0, image1)
    np.testing.assert_allclose(
        _as_rows(result.keypoints0, result.keypoints1, result.scores),
        _as_rows(reference0[inside], reference1[inside], reference_scores[inside]), atol=1e-4)


def test_loftr_checkpoint_with_wrong_keys_names_them(tmp_path, loftr_checkpoint):
    state_dict = torch.load(loftr_checkpoint, weights_only=True)['state_dict']
    state_dict.pop('matcher.backbone.conv1.weight')
    state_dict['matcher.extra.weight'] = torch.zeros(1)
    path = tmp_path / 'broken.ckpt'
    torch.save({'state_dict': state_dict}, path)
    with pytest.raises(WeightsError, match=r"1 missing key\(s\) \['backbone.conv1.weight'\], "
                                           r"1 unexpected key\(s\) \['extra.weight'\]"):
        Matcher(MatcherConfig(backend='loftr', weights=str(path), warmup=False))


def test_unreadable_checkpoint_and_empty_model_directory(tmp_path):
    garbage = tmp_path / 'garbage.ckpt'
    garbage.write_bytes(b'not a checkpoint')
    with pytest.raises(WeightsError, match='cannot read checkpoint .*garbage.ckpt'):
        Matcher(MatcherConfig(backend='loftr', weights=str(garbage), warmup=False))
    with pytest.raises(WeightsError, match='cannot load a keypoint-matching model from'):
        Matcher(MatcherConfig(backend='hf', weights=str(tmp_path), warmup=False))


def _detector_model_dir(tmp_path_factory, model: str):
    """A Hugging Face directory of transformers' `model` (SuperGlue or LightGlue, on SuperPoint
    keypoints) with random weights and its image processor."""
    import transformers

    directory = tmp_path_factory.mktemp(model.lower())
    torch.manual_seed(0)
    config = getattr(transformers, f'{model}Config')()
    getattr(transformers, f'{model}ForKeypointMatching')(config).save_pretrained(directory)
    getattr(transformers, f'{model}ImageProcessor')().save_pretrained(directory)
    return directory


@pytest.fixture(scope='module')
def superglue_dir(tmp_path_factory):
    return _detector_model_dir(tmp_path_factory, 'SuperGlue')


@pytest.fixture(scope='module')
def lightglue_dir(tmp_path_factory):
    return _detector_model_dir(tmp_path_factory, 'LightGlue')


def _assert_pipeline_matches(result, expected):
    """`result` holds the matches of transformers' post-processed `expected`, whose int32 cast
    moves a keypoint by under 1 px."""
    order = np.argsort(-expected['matching_scores'].numpy(), kind='stable')
    assert len(result) == len(order)
    for ours, theirs in ((result.keypoints0, expected['keypoints0']),
                         (result.keypoints1, expected['keypoints1'])):
        difference = ours - theirs.numpy()[order]
        assert ((difference >= 0) & (difference < 1)).all()
    np.testing.assert_allclose(result.scores, expected['matching_scores'].numpy()[order],
                               atol=1e-5)


@pytest.mark.slow
def test_hf_superglue_matches_the_transformers_pipeline(superglue_dir):
    """The detector-based branch of the hf backend (keypoints per image under a mask): the
    same matches as transformers' pipeline, whose int32 cast moves a keypoint by under 1 px.
    SuperPoint keypoints sit on whole pixels, so the NCC refinement is on by default; it is off
    here, where random weights pair keypoints arbitrarily."""
    from transformers import AutoImageProcessor, AutoModelForKeypointMatching

    image, _ = _photo_pair((320, 256))
    processor = AutoImageProcessor.from_pretrained(superglue_dir)
    model = AutoModelForKeypointMatching.from_pretrained(superglue_dir).eval()
    inputs = processor([np.dstack([image] * 3)] * 2, size={'height': 256, 'width': 320},
                       return_tensors='pt')
    with torch.inference_mode():
        outputs = model(**inputs)
    expected = processor.post_process_keypoint_matching(outputs, [[(256, 320)] * 2],
                                                        threshold=0.0)[0]
    assert len(expected['keypoints0']) >= 20

    config = MatcherConfig(backend='hf', weights=str(superglue_dir), resize=0,
                           confidence_threshold=0.0, warmup=False)
    assert Matcher(config).refinement is not None
    matcher = Matcher(config.replace(refinement='none'))
    assert matcher.backend.frame_offset == 0.0
    _assert_pipeline_matches(matcher.match(image, image), expected)


@pytest.mark.slow
def test_hf_default_threshold_is_the_loaded_models_own(eloftr_dir, lightglue_dir,
                                                       superglue_dir, tmp_path):
    """matcher.confidence_threshold -1 takes the threshold transformers applies for the model
    (its config's; the image processors' post-processing adds none): EfficientLoFTR 0.2,
    LightGlue 0.1, SuperGlue 0.0, and what a checkpoint's config.json sets instead."""
    import json
    import shutil

    def default(directory):
        return Matcher(MatcherConfig(backend='hf', weights=str(directory),
                                     warmup=False)).confidence_threshold

    assert default(eloftr_dir) == 0.2
    assert default(lightglue_dir) == 0.1
    assert default(superglue_dir) == 0.0
    own = shutil.copytree(lightglue_dir, tmp_path / 'own')
    config = json.loads((own / 'config.json').read_text())
    (own / 'config.json').write_text(json.dumps({**config, 'filter_threshold': 0.05}))
    assert default(own) == 0.05


def _detector_pipeline_matches(directory, image, filter_threshold):
    """transformers' pipeline for a LightGlue directory with the model's filter_threshold set,
    post-processed with its default threshold."""
    from transformers import AutoImageProcessor, AutoModelForKeypointMatching

    processor = AutoImageProcessor.from_pretrained(directory)
    model = AutoModelForKeypointMatching.from_pretrained(directory).eval()
    model.filter_threshold = filter_threshold
    height, width = image.shape
    inputs = processor([np.dstack([image] * 3)] * 2, size={'height': height, 'width': width},
                       return_tensors='pt')
    with torch.inference_mode():
        outputs = model(**inputs)
    return processor.post_process_keypoint_matching(outputs, [[(height, width)] * 2])[0]


@pytest.mark.slow
def test_hf_lightglue_threshold_reaches_the_model(lightglue_dir):
    """LightGlue filters its matches inside the model (filter_threshold): the Matcher's
    threshold, also one changed while it runs, must reach it, so that a threshold under the
    model's 0.1 keeps the matches the library keeps at that threshold (random weights score
    every match below 0.1)."""
    image, _ = _photo_pair((320, 256))
    matcher = Matcher(MatcherConfig(backend='hf', weights=str(lightglue_dir), resize=0,
                                    confidence_threshold=0.0, refinement='none',
                                    warmup=False))
    everything = _detector_pipeline_matches(lightglue_dir, image, 0.0)
    scores = np.sort(everything['matching_scores'].numpy())
    assert len(scores) >= 100 and scores[-1] < 0.1
    # Between two scores, so that the Matcher's >= and the model's > keep the same matches.
    middle = len(scores) // 2
    assert scores[middle - 1] < scores[middle]
    median = float(scores[middle - 1] + scores[middle]) / 2
    for threshold, expected in ((0.0, everything),
                                (median, _detector_pipeline_matches(lightglue_dir, image,
                                                                    median))):
        matcher.config = matcher.config.replace(confidence_threshold=threshold)
        _assert_pipeline_matches(matcher.match(image, image), expected)
