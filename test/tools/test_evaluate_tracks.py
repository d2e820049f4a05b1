"""`loftr-ros eval --mode tracks` on the real EuRoC stereo sample, and on rendered sequences
with their exact ground truth (the temporal reprojection error), with a config file's tracks
section."""
import csv
import json

import pytest
import yaml

from loftr_ros.cli import main
from loftr_ros.core import synthetic


def test_euroc_stereo_tracks_report(tmp_path, euroc_dir):
    output = tmp_path / 'report'
    rc = main(['eval', str(euroc_dir / 'bag'), '--mode', 'tracks', '--calibration',
               str(euroc_dir / 'calibration.yaml'), '--backend', 'opencv', '--device', 'cpu',
               '--first', '10', '--last', '17', '-o', str(output)])
    assert rc == 0
    summary = json.loads((output / 'summary.json').read_text())
    assert summary['mode'] == 'tracks' and summary['stereo'] and not summary['partial']
    run, = summary['runs']
    assert run['frames'] == 8 and run['frames_skipped'] == []
    # The calibrated stereo geometry is the truth: same-id left/right observations lie on it.
    assert run['stereo_within_1px'] >= 0.95
    assert run['stereo_epipolar_median_px'] < 0.5
    assert run['features_mean'] > 50
    lengths = run['track_length']
    assert lengths['median'] > 1 and lengths['p90'] >= lengths['median']
    assert sum(lengths['histogram'].values()) == lengths['tracks'] > 0
    assert run['rate_fps'] > 0
    with open(output / run['label'] / 'frames.csv', newline='') as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row['frame']) for row in rows] == list(range(8))
    assert int(rows[0]['new_features']) == int(rows[0]['features'])
    table = (output / 'compare.md').read_text()
    assert 'stereo same-id within 1 px' in table and 'track length median' in table


def test_mono_tracks_give_every_frame_once(tmp_path, euroc_dir):
    output = tmp_path / 'report'
    rc = main(['eval', str(euroc_dir / 'bag'), '--mode', 'tracks', '--topic', '/cam0/image_raw',
               '--backend', 'opencv', '--device', 'cpu', '--first', '10', '--last', '14',
               '-o', str(output)])
    assert rc == 0
    run, = json.loads((output / 'summary.json').read_text())['runs']
    # Frames 10..14: four consecutive pairs, five frames, no stereo error in mono.
    assert run['frames'] == 5 and 'stereo_within_1px' not in run
    assert run['track_length']['median'] > 1


@pytest.fixture(scope='module')
def stereo_sequence(tmp_path_factory, image_bag_writer):
    """A stereo bag (/cam0, /cam1, camera_info) of ten rendered frames (320x240) along the
    tracking path, the right camera 11 cm beside the left; and the left views."""
    camera = synthetic.default_camera(320, 240, focal=250.0)
    poses = synthetic.tracking_path(10)
    left = synthetic.render_views(poses, camera, fps=10.0)
    right = synthetic.render_views([synthetic.stereo_pair(pose)[1] for pose in poses], camera,
                                   fps=10.0)
    bag = image_bag_writer(tmp_path_factory.mktemp('stereo_sequence') / 'bag',
                           {'/cam0/image_raw': left, '/cam1/image_raw': right}, camera=camera)
    return bag, left


def reprojection(tmp_path, bag, name, *options):
    output = tmp_path / name
    rc = main(['eval', str(bag), '--mode', 'tracks', '--backend', 'opencv', '-o', str(output),
               *options])
    assert rc == 0
    run, = json.loads((output / 'summary.json').read_text())['runs']
    print(name, run['reprojection'])
    return run, (output / 'compare.md').read_text()


def test_tracks_reprojection_error_against_ground_truth(tmp_path, stereo_sequence,
                                                        truth_files):
    """Mono tracks of the rendered sequence against its exact camera poses (TUM, the cameras
    from camera_info): the tracks stay on their points; the same tracks against poses shuffled
    among the frames do not."""
    bag, views = stereo_sequence
    mono = ('--topic', '/cam0/image_raw', '--ground-truth')
    run, table = reprojection(tmp_path, bag, 'true', *mono,
                              str(truth_files.tum(tmp_path / 'gt.tum', views)))
    figures = run['reprojection']
    assert figures['tracks_measured'] >= 30 and figures['right_observations_measured'] == 0
    assert figures['within_1px'] >= 0.95 and figures['median_px'] < 0.3
    assert figures['p90_px'] >= figures['median_px']
    assert figures['frames_without_ground_truth'] == []
    # Every track is counted once: measured, or skipped with its cause.
    assert (figures['tracks_measured'] + sum(figures['tracks_skipped'].values()) ==
            run['track_length']['tracks'])
    assert '| reprojection error median [px] |' in table
    assert '| tracks not reprojected: parallax < 1° |' in table
    shuffled = truth_files.tum(tmp_path / 'shuffled.tum', views, [2, 4, 3, 6, 5, 0, 1, 7, 9, 8])
    wrong, _ = reprojection(tmp_path, bag, 'shuffled', *mono, str(shuffled))
    assert run['track_length'] == wrong['track_length']  # the same tracks
    assert wrong['reprojection']['within_1px'] < 0.5


def test_stereo_tracks_reprojection_with_body_ground_truth(tmp_path, stereo_sequence,
                                                           truth_files, capsys):
    """Stereo tracks against EuRoC body poses (the calibration's T_body_cam): the right
    observations join the triangulation through the calibrated extrinsics; frames outside
    the ground truth are named and left out."""
    bag, views = stereo_sequence
    calibration = truth_files.calibration(tmp_path / 'calibration.yaml', views[0].camera,
                                          truth_files.T_body_cam)
    ground_truth = truth_files.euroc(tmp_path / 'gt.csv', views[:8], truth_files.T_body_cam)
    run, _ = reprojection(tmp_path, bag, 'stereo', '--calibration', str(calibration),
                          '--ground-truth', str(ground_truth))
    figures = run['reprojection']
    assert figures['tracks_measured'] >= 30 and figures['right_observations_measured'] > 100
    assert figures['within_1px'] >= 0.95 and figures['median_px'] < 0.3
    assert figures['frames_without_ground_truth'] == [8, 9]
    assert ('2 frame(s) outside the ground-truth stamp range left out of the reprojection '
            'error (frame indices [8, 9])') in capsys.readouterr().err
    with capsys.disabled():
        print('stereo', figures)


def test_ground_truth_for_tracks_needs_the_camera(tmp_path, sequence_views, image_bag_writer,
                                                  truth_files, capsys):
    bag = image_bag_writer(tmp_path / 'bag', {'/cam0/image_raw': sequence_views})
    rc = main(['eval', str(bag), '--mode', 'tracks', '--backend', 'opencv', '--ground-truth',
               str(truth_files.tum(tmp_path / 'gt.tum', sequence_views)),
               '-o', str(tmp_path / 'report')])
    assert rc == 2
    assert '--ground-truth needs the camera' in capsys.readouterr().err


def write_yaml(path, document):
    path.write_text(yaml.safe_dump(document))
    return str(path)


def test_the_config_files_tracks_section_reaches_eval(tmp_path, sequence_bag, capsys):
    config = write_yaml(tmp_path / 'few.yaml', {'matcher': {'backend': 'opencv'},
                                                'tracks': {'max_features': 12,
                                                           'min_distance': 30.0}})
    output = tmp_path / 'report'
    assert main(['eval', str(sequence_bag), '--mode', 'tracks', '--config', config,
                 '-o', str(output)]) == 0
    run, = json.loads((output / 'summary.json').read_text())['runs']
    assert run['tracker']['max_features'] == 12 and run['tracker']['min_distance'] == 30.0
    with open(output / run['label'] / 'frames.csv', newline='') as handle:
        features = [int(row['features']) for row in csv.DictReader(handle)]
    assert len(features) == 8 and 0 < max(features) <= 12
    # An unknown key is refused before anything runs, naming the valid ones.
    capsys.readouterr()
    typo = write_yaml(tmp_path / 'typo.yaml', {'tracks': {'max_feature': 12}})
    assert main(['eval', str(sequence_bag), '--mode', 'tracks', '--backend', 'opencv',
                 '--config', typo, '-o', str(tmp_path / 'typo')]) == 2
    error = capsys.readouterr().err
    assert 'unknown option(s) max_feature for tracks in' in error and 'max_features' in error
