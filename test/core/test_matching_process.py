"""The Matcher in its own process (core.matching_process): the same matches as in this process,
errors that keep their type, settings applied from the caller, a process that ends when asked
or when it dies, and a caller that never imports torch. MatchingSession, the matching
process's state, is tested in this process. The opencv backend: no weights, fast, and a
per-image stage (SIFT) like the models."""
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time

import cv2
import numpy as np
import pytest

from loftr_ros.core.config import MatcherConfig
from loftr_ros.core.errors import ImageError, MatchingProcessError, WeightsError
from loftr_ros.core.keyframe import KeyframePolicy
from loftr_ros.core.matcher import Matcher
from loftr_ros.core.matching_process import MatchingProcess, MatchingSession
from loftr_ros.core.synthetic import load_photo

CONFIG = MatcherConfig(backend='opencv', warmup=False)


def views(shifts, size=(320, 240)):
    """Grayscale views of a photo shifted sideways by `shifts` pixels."""
    photo = cv2.cvtColor(load_photo('astronaut'), cv2.COLOR_BGR2GRAY)
    return [cv2.resize(np.roll(photo, shift, axis=1), size) for shift in shifts]


def assert_same(result, expected):
    np.testing.assert_array_equal(result.keypoints0, expected.keypoints0)
    np.testing.assert_array_equal(result.keypoints1, expected.keypoints1)
    np.testing.assert_array_equal(result.scores, expected.scores)


@pytest.fixture(scope='module')
def process():
    matching = MatchingProcess(CONFIG)
    yield matching
    matching.close()


def test_pairs_and_streams_match_as_in_this_process(process):
    matcher = Matcher(CONFIG)
    assert process.model_name == matcher.model_name and process.device == 'cpu'
    small = views([0, 6])
    # Larger images after smaller ones: the shared buffer grows; colour and uint16 pass too.
    large = views([0, 9], size=(640, 480))
    colour = [cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) for image in large]
    deep = [image.astype(np.uint16) * 257 for image in small]
    for image0, image1 in (small, large, colour, deep, small):
        assert_same(process.match(image0, image1), matcher.match(image0, image1))
    # A stream: the first frame becomes the reference, later ones are matched to it.
    session = MatchingSession(Matcher(CONFIG))
    policy = KeyframePolicy(min_matches=0, min_overlap=0.0)
    stream = views([0, 3, 6, 9])
    for index, frame in enumerate(stream):
        result, replaced = process.match_next(frame, None, policy, every_frame=False)
        expected, expected_replaced = session.match_next(frame, None, policy, False)
        assert replaced == expected_replaced == (index == 0)
        assert (result is None) == (expected is None) == (index == 0)
        if result is not None:
            assert_same(result, expected)
    result, replaced = process.match_next(stream[0], None, policy, False, reset=True)
    assert result is None and replaced
    assert process.prepared_images() == 2 * 5 + len(stream) + 1


def test_runtime_settings_come_with_each_request(process):
    image0, image1 = views([0, 6])
    process.config = CONFIG.replace(max_matches=10)
    assert len(process.match(image0, image1)) == 10
    process.config = CONFIG
    assert len(process.match(image0, image1)) > 10


def test_errors_keep_their_type_and_the_process_goes_on(process):
    image0, image1 = views([0, 6])
    broken = image0.astype(np.float32) / 255
    broken[5, 5] = np.nan
    with pytest.raises(ImageError, match='NaN'):
        process.match(broken, image1)
    assert len(process.match(image0, image1)) > 10


def test_bad_weights_fail_at_start_and_the_process_ends(tmp_path):
    config = MatcherConfig(backend='eloftr', weights=str(tmp_path / 'missing'), warmup=False)
    started = time.monotonic()
    with pytest.raises(WeightsError, match='missing'):
        MatchingProcess(config)
    assert time.monotonic() - started < 120


def test_a_killed_process_is_an_error_and_close_reports_its_end():
    matching = MatchingProcess(CONFIG)
    os.kill(matching.process.pid, signal.SIGKILL)
    with pytest.raises(MatchingProcessError, match='ended with exit code -9'):
        matching.match(*views([0, 6]))
    assert matching.close() == -signal.SIGKILL
    with pytest.raises(MatchingProcessError):
        matching.match(*views([0, 6]))


def test_the_caller_never_imports_torch():
    """What the matcher node relies on: its process takes images in while the model runs
    elsewhere, never sharing the model's interpreter (GIL)."""
    script = textwrap.dedent('''
        import sys
        import numpy as np
        from loftr_ros.core.config import MatcherConfig
        from loftr_ros.core.matching_process import MatchingProcess
        matching = MatchingProcess(MatcherConfig(backend='opencv', warmup=False))
        image = (np.arange(240 * 320) % 251).astype(np.uint8).reshape(240, 320)
        matching.match(image, np.roll(image, 3, axis=1))
        child = matching.process.pid
        maps = open(f'/proc/{child}/maps').read()
        assert matching.close() == 0
        print('torch' in sys.modules, 'libtorch' in maps)
    ''')
    output = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                            timeout=300, check=True).stdout
    assert output.split() == ['False', 'True'], output


@pytest.mark.parametrize('given, expected', [(None, 'PASSIVE'), ('ACTIVE', 'ACTIVE')])
def test_openmp_threads_wait_passively_unless_told_otherwise(monkeypatch, given, expected):
    """Spinning OpenMP threads beside another busy process cut tracks from ~20 to 1.7 frames/s
    (benchmarks/results/bench_tracks_cpu.md); a user's own setting wins."""
    if given is None:
        monkeypatch.delenv('OMP_WAIT_POLICY', raising=False)
    else:
        monkeypatch.setenv('OMP_WAIT_POLICY', given)
    matching = MatchingProcess(CONFIG)
    try:
        with open(f'/proc/{matching.process.pid}/environ', 'rb') as environ:
            variables = dict(entry.partition(b'=')[::2] for entry in
                             environ.read().split(b'\0') if entry)
    finally:
        matching.close()
    assert variables[b'OMP_WAIT_POLICY'] == expected.encode()


class CountingBackend:
    """A backend's extract counted and slowed down (the per-image stage is cheap here)."""

    def __init__(self, backend, delay_s):
        self.extract, self.delay_s, self.extracted = backend.extract, delay_s, 0
        backend.extract = self

    def __call__(self, image):
        time.sleep(self.delay_s)
        self.extracted += 1
        return self.extract(image)


def test_a_stream_extracts_each_frame_once_and_times_it_in_its_pair():
    """Consecutive mode's logic, in this process: the reference's features are reused, the
    current frame's extraction counts in the pair's matcher time, the policy and `every_frame`
    decide the reference, and reset starts afresh."""
    session = MatchingSession(Matcher(CONFIG))
    counting = CountingBackend(session.matcher.backend, delay_s=0.2)
    keep = KeyframePolicy(min_matches=0, min_overlap=0.0)
    frames = views([0, 4, 8, 12])
    results = []
    for frame in frames:
        results.append(session.match_next(frame, None, keep, every_frame=False))
    assert counting.extracted == len(frames)
    assert results[0] == (None, True)
    assert all(not replaced for _, replaced in results[1:])
    for result, _ in results[1:]:
        assert result.timings['model'] >= 0.2 and result.timings['total'] >= 0.2
    # The reference is still frame 0: the pair matches what matching it afresh gives.
    assert_same(results[3][0], Matcher(CONFIG).match(frames[0], frames[3]))

    replace = KeyframePolicy(min_matches=10**6, min_overlap=0.0)
    assert session.match_next(frames[1], None, replace, False)[1]
    assert session.match_next(frames[2], None, keep, every_frame=True)[1]
    assert session.match_next(frames[3], None, keep, False, reset=True) == (None, True)
    assert counting.extracted == session.prepared_images == len(frames) + 3


def test_a_result_survives_pickling():
    """How results cross from the matching process: every field, timings still read-only."""
    image0, image1 = views([0, 6])
    result = Matcher(CONFIG.replace(geometry='fundamental')).match(image0, image1)
    copy = pickle.loads(pickle.dumps(result))
    for name in ('keypoints0', 'keypoints1', 'scores', 'inliers'):
        np.testing.assert_array_equal(getattr(copy, name), getattr(result, name))
    assert (copy.image_size0, copy.image_size1, copy.geometry_model) == (
        result.image_size0, result.image_size1, 'fundamental')
    assert dict(copy.timings) == dict(result.timings)
    with pytest.raises(TypeError):
        copy.timings['total'] = 0.0
