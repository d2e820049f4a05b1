"""Replaying bag pairs through a Matcher: which pairs the options select, and frames prepared
once, with a bad frame skipping only the pairs it is in."""
from types import SimpleNamespace

import numpy as np

from loftr_ros.core.bag import BagReader
from loftr_ros.core.config import MatcherConfig
from loftr_ros.core.matcher import Matcher
from loftr_ros.core.replay import ReplayOptions, iterate_pairs, prepared_pairs


def test_options_select_the_pairs(euroc_dir):
    options = ReplayOptions(mode='consecutive', topic='/cam0/image_raw', step=2, first=4,
                            max_pairs=3)
    with BagReader(euroc_dir / 'bag') as reader:
        pairs = list(iterate_pairs(reader, options))
        assert [(pair.frame0.index, pair.frame1.index) for pair in pairs] == [(4, 6), (6, 8),
                                                                             (8, 10)]
        stereo = list(iterate_pairs(reader, ReplayOptions(last=1)))
    assert [(pair.frame0.topic, pair.frame1.topic) for pair in stereo] == [
        ('/cam0/image_raw', '/cam1/image_raw')] * 2
    assert all(pair.frame0.stamp_ns == pair.frame1.stamp_ns for pair in stereo)


def test_a_frame_the_matcher_refuses_skips_its_pairs():
    """An image that decodes but that the Matcher refuses (NaN pixels from a float camera)
    skips the two consecutive pairs it is in, with a message naming it; the others are
    prepared, each frame once."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (64, 80), dtype=np.uint8) for _ in range(5)]
    images[2] = np.full((64, 80), np.nan, np.float32)
    frames = [SimpleNamespace(image=image, topic='/cam0/image_raw', index=index)
              for index, image in enumerate(images)]
    pairs = [SimpleNamespace(frame0=a, frame1=b) for a, b in zip(frames, frames[1:])]
    matcher = Matcher(MatcherConfig(backend='opencv', warmup=False))
    skipped = []
    kept = list(prepared_pairs(matcher, pairs, skipped.append))
    assert [(p.pair.frame0, p.pair.frame1) for p in kept] == [(frames[0], frames[1]),
                                                               (frames[3], frames[4])]
    assert len(skipped) == 2
    assert all(str(error).startswith('/cam0/image_raw message 2: bad_image: ') and
               'NaN' in str(error) and error.cause == 'bad_image' for error in skipped)
    assert [len(p.fresh) for p in kept] == [2, 2]  # frame 3 follows a skipped pair


def test_stereo_pairs_are_prepared_as_one_batch(eloftr_hf_dir, monkeypatch):
    """eval and record (prepared_pairs) run the per-image stage of a stereo pair's left and
    right images as one batch, with the features of one-by-one preparation; a refused image
    still names its frame."""
    import cv2

    rng = np.random.default_rng(1)
    texture = rng.random((40, 50)).astype(np.float32)
    frames = [SimpleNamespace(image=cv2.resize(texture, (320, 256))[:, shift:shift + 256],
                              topic=topic, index=index)
              for index, (topic, shift) in enumerate([('/left', 20), ('/right', 8)] * 2)]
    frames[3].image = np.full((256, 256), np.nan, np.float32)
    pairs = [SimpleNamespace(frame0=frames[0], frame1=frames[1]),
             SimpleNamespace(frame0=frames[2], frame1=frames[3])]
    matcher = Matcher(MatcherConfig(backend='eloftr', weights=str(eloftr_hf_dir), resize=0,
                                    warmup=False, device='cpu'))
    batches, run = [], matcher.backend.model.extract

    def counted(images):
        batches.append(len(images))
        return run(images)

    monkeypatch.setattr(matcher.backend.model, 'extract', counted)
    skipped = []
    kept = list(prepared_pairs(matcher, pairs, skipped.append))
    assert batches[0] == 2 and len(kept) == 1
    assert kept[0].fresh == (kept[0].prepared0, kept[0].prepared1)
    for frame, prepared in zip(frames, (kept[0].prepared0, kept[0].prepared1)):
        single = matcher.prepare(frame.image).features
        np.testing.assert_allclose(prepared.features.coarse.numpy(), single.coarse.numpy(),
                                   atol=1e-5)
    assert len(skipped) == 1 and str(skipped[0]).startswith('/right message 3: bad_image: ')
