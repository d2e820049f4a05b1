"""`loftr-ros eval --mode tracks` on the real EuRoC stereo sample."""
import csv
import json

from loftr_ros.cli import main


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
