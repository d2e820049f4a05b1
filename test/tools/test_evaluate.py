"""`loftr-ros eval` end to end: real stereo bag, synthetic sequence with ground truth, bad input."""
import csv
import json
import time

import cv2
import numpy as np
import pytest
import yaml

from loftr_ros.cli import main
from loftr_ros.core.config import MatcherConfig


def read_rows(path):
    with open(path, newline='') as handle:
        return list(csv.DictReader(handle))


def independent_sampson(points0, points1, calibration_path):
    """Sampson distance in pixels, from the calibration YAML with no loftr_ros code."""
    document = yaml.safe_load(open(calibration_path))
    cams = []
    for name in ('cam0', 'cam1'):
        fu, fv, cu, cv = document[name]['intrinsics_fu_fv_cu_cv']
        K = np.array([[fu, 0, cu], [0, fv, cv], [0, 0, 1.0]])
        cams.append((K, np.array(document[name]['distortion_coefficients']),
                     np.array(document[name]['T_body_cam']).reshape(4, 4)))
    T = np.linalg.inv(cams[1][2]) @ cams[0][2]
    t = T[:3, 3]
    E = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]]) @ T[:3, :3]
    x0 = cv2.undistortPoints(points0.reshape(-1, 1, 2).astype(np.float64), cams[0][0],
                             cams[0][1]).reshape(-1, 2)
    x1 = cv2.undistortPoints(points1.reshape(-1, 1, 2).astype(np.float64), cams[1][0],
                             cams[1][1]).reshape(-1, 2)
    h0, h1 = np.c_[x0, np.ones(len(x0))], np.c_[x1, np.ones(len(x1))]
    Ex0, Etx1 = h0 @ E.T, h1 @ E
    residual = np.sum(h1 * Ex0, axis=1)
    sampson = np.abs(residual) / np.sqrt(Ex0[:, 0]**2 + Ex0[:, 1]**2 + Etx1[:, 0]**2 +
                                         Etx1[:, 1]**2)
    focal = np.mean([cams[0][0][0, 0], cams[0][0][1, 1], cams[1][0][0, 0], cams[1][0][1, 1]])
    return sampson * focal


@pytest.mark.slow
def test_euroc_stereo_report(tmp_path, euroc_dir, euroc_stereo_frames):
    output = tmp_path / 'report'
    calibration = euroc_dir / 'calibration.yaml'
    rc = main(['eval', str(euroc_dir / 'bag'), '--calibration', str(calibration),
               '--backend', 'opencv', '--backend', 'xfeat', '--device', 'cpu',
               '--first', '10', '--last', '11', '--overlays', '1', '-o', str(output)])
    assert rc == 0
    summary = json.loads((output / 'summary.json').read_text())
    assert summary['partial'] is False
    runs = {run['backend']: run for run in summary['runs']}
    assert set(runs) == {'opencv', 'xfeat'}
    for run in runs.values():
        assert run['pairs'] == 2 and run['matches_mean'] > 50
        assert run['epipolar_correct_ratio_mean'] > 0.7
        directory = output / run['label']
        for name in ('pairs.csv', 'matches.png', 'latency.png', 'error_cdf.png',
                     'overlay_00000.png'):
            assert (directory / name).stat().st_size > 0
    table = (output / 'compare.md').read_text()
    assert table.startswith(f"| metric | {runs['opencv']['label']} | {runs['xfeat']['label']} |")
    assert '| epipolar error median [px] |' in table and '| latency p95 [ms] |' in table

    # The report's per-pair epipolar error equals an independent computation on the matches of
    # the same (deterministic) SIFT configuration.
    from loftr_ros.core.matcher import Matcher
    matcher = Matcher(MatcherConfig.from_dict(runs['opencv']['config']))
    rows = read_rows(output / runs['opencv']['label'] / 'pairs.csv')
    frames = {stamp: (left, right) for stamp, left, right in euroc_stereo_frames}
    for row in rows:
        result = matcher.match(*frames[int(row['stamp0_ns'])])
        errors = independent_sampson(result.keypoints0, result.keypoints1, calibration)
        assert int(row['matches']) == len(result)
        assert float(row['epipolar_median_px']) == pytest.approx(np.median(errors), abs=1e-3)
        assert float(row['epipolar_correct_ratio']) == pytest.approx(np.mean(errors < 1.0),
                                                                      abs=1e-6)


def pose_auc(tmp_path, bag, ground_truth, name, *options):
    output = tmp_path / name
    rc = main(['eval', str(bag), '--mode', 'consecutive', '--ground-truth', str(ground_truth),
               '--backend', 'opencv', '--overlays', '0', '-o', str(output), *options])
    assert rc == 0
    return json.loads((output / 'summary.json').read_text())['runs'][0]


def test_euroc_ground_truth_is_turned_into_camera_motion(tmp_path, sequence_bag,
                                                          sequence_views, truth_files, capsys):
    """The exact camera motion given as TUM camera poses and as EuRoC body poses with the
    calibration's T_body_cam scores the same matches alike (the ground truth equal to ~1e-9);
    a wrong mounting is far off, and a EuRoC CSV without a calibration is refused."""
    tum = pose_auc(tmp_path, sequence_bag, truth_files.tum(tmp_path / 'gt.tum', sequence_views),
                   'tum')
    euroc = truth_files.euroc(tmp_path / 'gt.csv', sequence_views, truth_files.T_body_cam)
    calibration = truth_files.calibration(tmp_path / 'calibration.yaml',
                                          sequence_views[0].camera, truth_files.T_body_cam)
    body = pose_auc(tmp_path, sequence_bag, euroc, 'euroc', '--calibration', str(calibration))
    assert tum['pose_auc']['10deg'] > 0.6 and body['pairs_scored'] == tum['pairs_scored'] == 7
    tum_rows = read_rows(tmp_path / 'tum' / tum['label'] / 'pairs.csv')
    body_rows = read_rows(tmp_path / 'euroc' / body['label'] / 'pairs.csv')
    for expected, row in zip(tum_rows, body_rows):
        for key in ('rotation_deg', 'translation_deg'):
            assert float(row[key]) == pytest.approx(float(expected[key]), abs=1e-4)
    # The same CSV with a calibration that mounts the camera without rotation.
    wrong = truth_files.calibration(tmp_path / 'wrong.yaml', sequence_views[0].camera, np.eye(4))
    misread = pose_auc(tmp_path, sequence_bag, euroc, 'wrong', '--calibration', str(wrong))
    assert misread['pose_auc']['10deg'] < 0.1
    capsys.readouterr()
    rc = main(['eval', str(sequence_bag), '--mode', 'consecutive', '--ground-truth', str(euroc),
               '--backend', 'opencv', '-o', str(tmp_path / 'refused')])
    assert rc == 2
    assert 'is a EuRoC CSV, whose poses are the body (IMU)' in capsys.readouterr().err


def test_pose_auc_is_high_for_true_pairs_and_zero_for_shuffled(tmp_path, sequence_bag,
                                                               sequence_views, truth_files):
    truth = pose_auc(tmp_path, sequence_bag, truth_files.tum(tmp_path / 'gt.tum', sequence_views),
                     'true')
    assert truth['pairs_scored'] == 7 and truth['pairs_without_ground_truth'] == []
    assert truth['pose_auc']['10deg'] > 0.6
    rows = read_rows(tmp_path / 'true' / truth['label'] / 'pairs.csv')
    assert max(float(row['rotation_deg']) for row in rows) < 2.0
    # The same matches scored against ground truth whose poses are shuffled among the stamps
    # (an order in which every relative pose is more than 15 degrees off the true one).
    shuffled = truth_files.tum(tmp_path / 'shuffled.tum', sequence_views, [2, 4, 3, 6, 5, 0, 1, 7])
    wrong = pose_auc(tmp_path, sequence_bag, shuffled, 'shuffled')
    assert wrong['matches_mean'] == truth['matches_mean']
    assert wrong['pose_auc']['10deg'] < 0.1


def test_frames_outside_the_ground_truth_are_named(tmp_path, sequence_views, image_bag_writer,
                                                   truth_files, capsys):
    # A ROS 1 bag with compressed images and camera_info; ground truth only for frames 0-4.
    bag = image_bag_writer(tmp_path / 'sequence.bag', {'/cam0/image_raw': sequence_views},
                           'ros1', compressed=True, camera=sequence_views[0].camera)
    ground_truth = truth_files.tum(tmp_path / 'short.tum', sequence_views[:5])
    run = pose_auc(tmp_path, bag, ground_truth, 'short')
    assert run['pairs_scored'] == 4
    assert run['pairs_without_ground_truth'] == [[4, 5], [5, 6], [6, 7]]
    assert ('3 pair(s) outside the ground-truth stamp range were not scored (frame indices '
            '[[4, 5], [5, 6], [6, 7]])') in capsys.readouterr().err
    rows = read_rows(tmp_path / 'short' / run['label'] / 'pairs.csv')
    assert [row['scored'] for row in rows] == ['yes'] * 4 + ['no ground truth'] * 3


def test_missing_topic_exits_with_the_bag_topics(tmp_path, sequence_bag, capsys):
    rc = main(['eval', str(sequence_bag), '--left', '/cam0/image_raw', '--right', '/cam9/image',
               '--backend', 'opencv', '-o', str(tmp_path / 'out')])
    assert rc == 2
    out, err = capsys.readouterr()
    assert "topic '/cam9/image' not in bag" in err
    assert '/cam0/camera_info (sensor_msgs/msg/CameraInfo)' in err
    # Errors first: the note on the stereo pair without extrinsics is not printed before it.
    assert 'note:' not in err and out == ''


# Files of a report: the README's list ("Output").
REPORT_FILES = {'summary.json', 'compare.md'}
RUN_FILES = {'pairs.csv', 'matches.png', 'latency.png'}


@pytest.fixture
def default_weights_cached(eloftr_hf_dir, tmp_path, monkeypatch):
    """The default backend's weights (eloftr, zju-community/efficientloftr) in a Hugging Face
    cache, as `hf download` leaves them: the suite's random EfficientLoFTR, since the real
    ones are not reachable here. The hub itself is off."""
    import shutil

    from huggingface_hub import constants

    cache = tmp_path / 'hub'
    repo = cache / 'models--zju-community--efficientloftr'
    shutil.copytree(eloftr_hf_dir, repo / 'snapshots' / ('e' * 40))
    (repo / 'refs').mkdir()
    (repo / 'refs' / 'main').write_text('e' * 40)
    monkeypatch.setattr(constants, 'HF_HUB_CACHE', str(cache))
    monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', True)


def test_a_bag_path_alone_on_a_single_topic_bag(tmp_path, sequence_bag, default_weights_cached,
                                                 monkeypatch, capsys):
    """`loftr-ros eval BAG`: consecutive pairs of the bag's only image topic with the default
    matcher, said on the first line; the report holds exactly the README's files, and says why
    there is no error CDF (no ground truth) and what the inlier ratio counts."""
    monkeypatch.chdir(tmp_path)
    assert main(['eval', str(sequence_bag)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == ("loftr-ros eval: consecutive pairs of /cam0/image_raw (the "
                                   "bag's only image topic): 7 pair(s)")
    assert 'note: no epipolar error and no error_cdf.png without the true geometry: give ' \
           '--ground-truth' in err
    output = tmp_path / 'eval_output'
    summary = json.loads((output / 'summary.json').read_text())
    run = summary['runs'][0]
    assert summary['mode'] == 'consecutive' and run['backend'] == 'eloftr' and run['pairs'] == 7
    assert {path.name for path in output.iterdir()} == REPORT_FILES | {run['label']}
    assert {path.name for path in (output / run['label']).iterdir()} == RUN_FILES | {
        'overlay_00000.png', 'overlay_00002.png', 'overlay_00004.png'}
    assert run['error_cdf'].startswith('not written: no true geometry')
    # camera_info gives the cameras: eval verifies with the essential matrix.
    assert run['inlier_verification'] == {'by': 'eval', 'model': 'essential',
                                          'threshold_px': 1.0}
    assert '| inliers verified by | eval: essential, 1 px |' in (output / 'compare.md').read_text()


def test_euroc_sample_pairs_are_inferred(tmp_path, euroc_dir, default_weights_cached, capsys):
    """The EuRoC sample's two synchronised cameras are a stereo pair (`loftr-ros eval BAG` on
    all 95 pairs is the same run, minutes long here)."""
    assert main(['eval', str(euroc_dir / 'bag'), '--max-pairs', '2', '--overlays', '0',
                 '-o', str(tmp_path / 'out')]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == (
        'loftr-ros eval: stereo pairs of /cam0/image_raw (left) and /cam1/image_raw (right) '
        "(the bag's two image topics, with equal stamps): 2 pair(s)")
    assert 'give --calibration (the stereo extrinsics)' in err
    run = json.loads((tmp_path / 'out' / 'summary.json').read_text())['runs'][0]
    # camera_info gives the cameras, without extrinsics.
    assert run['inlier_verification']['model'] == 'essential'


def test_error_cdf_holds_every_match(tmp_path, sequence_bag, sequence_views, truth_files):
    """With ground truth, every match's epipolar error against the true camera motion: the CDF
    and the per-pair columns; the matcher's own verification is named when it ran one."""
    ground_truth = truth_files.tum(tmp_path / 'gt.tum', sequence_views)
    output = tmp_path / 'cdf'
    assert main(['eval', str(sequence_bag), '--ground-truth', str(ground_truth), '--backend',
                 'opencv', '--overlays', '0', '-o', str(output)]) == 0
    run = json.loads((output / 'summary.json').read_text())['runs'][0]
    rows = read_rows(output / run['label'] / 'pairs.csv')
    total = sum(int(row['matches']) for row in rows)
    assert run['error_cdf'] == (f'error_cdf.png: the error of every match ({total}) against the '
                                f'ground-truth camera motion')
    assert {path.name for path in (output / run['label']).iterdir()} == RUN_FILES | {
        'error_cdf.png'}
    assert all(float(row['epipolar_correct_ratio']) > 0.5 for row in rows)
    assert run['epipolar_correct_ratio_mean'] > 0.8
    config = tmp_path / 'verified.yaml'
    config.write_text('matcher: {backend: opencv, geometry: fundamental, ransac_threshold: 2.0}\n')
    assert main(['eval', str(sequence_bag), '--config', str(config), '--overlays', '0',
                 '-o', str(tmp_path / 'verified')]) == 0
    run = json.loads((tmp_path / 'verified' / 'summary.json').read_text())['runs'][0]
    assert run['inlier_verification'] == {'by': 'matcher', 'model': 'fundamental',
                                          'threshold_px': 2.0}


def test_ctrl_c_leaves_a_partial_report(tmp_path, sequence_bag, monkeypatch):
    from loftr_ros.core import matcher as matcher_module
    real_match = matcher_module.Matcher.match
    calls = []

    def interrupted_match(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 4:  # warm-up + two pairs, then the user presses Ctrl-C
            raise KeyboardInterrupt
        return real_match(self, *args, **kwargs)

    monkeypatch.setattr(matcher_module.Matcher, 'match', interrupted_match)
    output = tmp_path / 'partial'
    rc = main(['eval', str(sequence_bag), '--mode', 'consecutive', '--backend', 'opencv',
               '-o', str(output)])
    assert rc == 130
    summary = json.loads((output / 'summary.json').read_text())
    assert summary['partial'] is True and summary['pairs_expected'] == 7
    assert summary['runs'][0]['pairs'] == 2
    assert len(read_rows(output / summary['runs'][0]['label'] / 'pairs.csv')) == 2


def test_compare_configs_side_by_side(tmp_path, sequence_bag):
    sift, orb = tmp_path / 'sift.yaml', tmp_path / 'orb.yaml'
    sift.write_text('matcher: {backend: opencv, options: {detector: sift}}\n')
    # The node's parameter-file form is accepted as well.
    orb.write_text('matcher_node:\n  ros__parameters:\n    matcher:\n      backend: opencv\n'
                   '      options: {detector: orb}\n')
    output = tmp_path / 'compare'
    rc = main(['eval', str(sequence_bag), '--mode', 'consecutive', '--compare', str(sift),
               str(orb), '--max-pairs', '3', '--overlays', '0', '-o', str(output)])
    assert rc == 0
    runs = json.loads((output / 'summary.json').read_text())['runs']
    assert [run['model'] for run in runs] == ['opencv:sift', 'opencv:orb']
    assert all(run['pairs'] == 3 for run in runs)
    assert runs[0]['label'].startswith('sift-') and runs[1]['label'].startswith('orb-')
    lines = (output / 'compare.md').read_text().splitlines()
    assert lines[0] == f"| metric | {runs[0]['label']} | {runs[1]['label']} |"
    assert lines[2] == '| model | opencv:sift | opencv:orb |'


def test_undecodable_image_skips_its_pairs_and_is_reported(tmp_path, sequence_views,
                                                           image_bag_writer, capsys):
    """Frame 5 of 8 is no image: the two consecutive pairs that use it are skipped and named,
    the other five are matched."""
    bag = image_bag_writer(tmp_path / 'bag', {'/cam0/image_raw': sequence_views},
                           compressed=True, corrupt_frames=(5,))
    rc = main(['eval', str(bag), '--mode', 'consecutive', '--topic', '/cam0/image_raw',
               '--backend', 'opencv', '--overlays', '0', '-o', str(tmp_path / 'out')])
    assert rc == 0
    run = json.loads((tmp_path / 'out' / 'summary.json').read_text())['runs'][0]
    assert run['pairs'] == 5
    assert len(run['pairs_skipped']) == 2
    assert all(message.startswith('/cam0/image_raw message 5: bad_image: neither PNG nor JPEG')
               for message in run['pairs_skipped'])
    assert '2 pair(s) skipped (bad_image 2)' in capsys.readouterr().err


def test_oversized_and_corrupt_frames_are_skipped_with_their_cause(
        tmp_path, sequence_views, image_bag_writer, hostile_images, capfd):
    """A 20000x20000 PNG (0.4 MB, 400 MB decoded) is refused from its header, a JPEG with
    corrupt scan data by the decoder: both skip their pairs, each counted under its cause."""
    jpeg = cv2.imencode('.jpg', sequence_views[5].image)[1].tobytes()
    bag = image_bag_writer(tmp_path / 'bag', {'/cam0/image_raw': sequence_views},
                           compressed=True, frame_data={
                               2: hostile_images.uniform_gray_png(20000, 20000),
                               5: hostile_images.corrupt_jpeg_scan(jpeg)})
    rc = main(['eval', str(bag), '--mode', 'consecutive', '--topic', '/cam0/image_raw',
               '--backend', 'opencv', '--overlays', '0', '-o', str(tmp_path / 'out')])
    assert rc == 0
    run = json.loads((tmp_path / 'out' / 'summary.json').read_text())['runs'][0]
    assert run['pairs'] == 3
    assert run['pairs_skipped_by_cause'] == {'image_too_large': 2, 'bad_image': 2}
    assert run['pairs_skipped'][0].startswith(
        '/cam0/image_raw message 2: image_too_large: 20000x20000 PNG has 400.0 MP')
    assert run['pairs_skipped'][2].startswith(
        '/cam0/image_raw message 5: bad_image: corrupt JPEG: Corrupt JPEG data')
    err = capfd.readouterr().err  # the file descriptor: libjpeg writes there, not to sys.stderr
    assert '4 pair(s) skipped (bad_image 2, image_too_large 2)' in err
    assert 'Corrupt JPEG data' not in err.replace('corrupt JPEG: Corrupt JPEG data', '')


EXTRACT_S = 0.2


def test_consecutive_pairs_prepare_each_frame_once(tmp_path, sequence_bag, sequence_views,
                                                   eloftr_hf_dir, monkeypatch):
    """eval (and record, through the same prepared_pairs) in consecutive mode: frame t ends
    pair t-1 and starts pair t, and its per-image stage runs once, as in the node, with the
    matches of each pair matched from scratch; latencies still count the frame prepared for
    each pair."""
    from loftr_ros.core.backends.eloftr import EfficientLoFTRBackend
    from loftr_ros.core.config import MatcherConfig
    from loftr_ros.core.matcher import Matcher
    scratch = Matcher(MatcherConfig(backend='eloftr', weights=str(eloftr_hf_dir), resize=0,
                                    warmup=False, device='cpu'))
    expected = [scratch.match(a.image, b.image) for a, b in zip(sequence_views,
                                                                 sequence_views[1:])]
    extracted = []
    real_extract = EfficientLoFTRBackend.extract_batch

    def counted_extract(self, images):
        # Slow on purpose: a latency below this missed the current frame's preparation.
        time.sleep(EXTRACT_S)
        extracted.extend([tuple(images.shape[1:])] * len(images))
        return real_extract(self, images)

    # Every per-image run of eloftr, single (extract) or batched (the first pair's two frames).
    monkeypatch.setattr(EfficientLoFTRBackend, 'extract_batch', counted_extract)
    config = tmp_path / 'eloftr.yaml'
    config.write_text(f"matcher: {{backend: eloftr, weights: '{eloftr_hf_dir}', resize: 0, "
                      'warmup: false, device: cpu}\n')
    output = tmp_path / 'out'
    rc = main(['eval', str(sequence_bag), '--mode', 'consecutive', '--config', str(config),
               '--overlays', '0', '-o', str(output)])
    assert rc == 0
    run = json.loads((output / 'summary.json').read_text())['runs'][0]
    assert run['pairs'] == 7
    assert len(extracted) == 8
    rows = read_rows(output / run['label'] / 'pairs.csv')
    assert all(float(row['latency_ms']) >= EXTRACT_S * 1e3 for row in rows)
    assert [(int(row['index0']), int(row['index1'])) for row in rows] == [
        (t, t + 1) for t in range(7)]
    assert [int(row['matches']) for row in rows] == [len(result) for result in expected]
