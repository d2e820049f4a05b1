"""`loftr-ros match`: JSON and overlay outputs, and one-line errors with exit code 2."""
import json
import shutil
import subprocess

import cv2
import numpy as np
import pytest

from loftr_ros.cli import main


@pytest.fixture(scope='module')
def image_files(tmp_path_factory):
    """A photo as PNG, and a shifted crop of it as JPEG and as 16-bit PGM."""
    import skimage.data

    folder = tmp_path_factory.mktemp('images')
    photo = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(folder / 'a.png'), photo)
    cv2.imwrite(str(folder / 'b.jpg'), photo[12:, 20:])
    gray = cv2.cvtColor(photo[12:, 20:], cv2.COLOR_BGR2GRAY)
    cv2.imwrite(str(folder / 'c.pgm'), gray.astype(np.uint16) * 257)
    assert cv2.imread(str(folder / 'c.pgm'), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    return folder


@pytest.mark.parametrize('second', ['b.jpg', 'c.pgm'])
def test_match_writes_json_and_overlay(image_files, tmp_path, capsys, second):
    out_json, overlay = tmp_path / 'matches.json', tmp_path / 'overlay.png'
    code = main(['match', str(image_files / 'a.png'), str(image_files / second),
                 '--backend', 'opencv', '--geometry', 'homography', '--json', str(out_json),
                 '--overlay', str(overlay)])
    assert code == 0
    summary = capsys.readouterr().out
    assert 'matches' in summary and 'homography inliers' in summary and 'opencv:sift' in summary
    document = json.loads(out_json.read_text())
    assert {'keypoints0', 'keypoints1', 'scores', 'inliers'} <= set(document)
    assert document['image_size0'] == [512, 512] and document['image_size1'] == [492, 500]
    keypoints0 = np.array(document['keypoints0'])
    keypoints1 = np.array(document['keypoints1'])
    assert len(keypoints0) == len(keypoints1) == len(document['scores']) >= 100
    # The second image is the first shifted by (-20, -12): inliers agree to a fraction of a px.
    inliers = np.array(document['inliers'], bool)
    assert inliers.mean() > 0.9
    offsets = keypoints1[inliers] - keypoints0[inliers]
    np.testing.assert_allclose(np.median(offsets, axis=0), [-20, -12], atol=0.1)
    picture = cv2.imread(str(overlay))
    assert picture.shape == (512, 512 + 492, 3)


def test_missing_file_is_one_line_and_exit_code_2(image_files, capsys):
    code = main(['match', str(image_files / 'a.png'), str(image_files / 'none.png'),
                 '--backend', 'opencv'])
    assert code == 2
    error = capsys.readouterr().err
    assert error.count('\n') == 1
    assert error.startswith('loftr-ros match: error: image file ') and 'none.png' in error


def test_unreadable_file_and_bad_config(image_files, tmp_path, capsys):
    broken = tmp_path / 'broken.png'
    broken.write_bytes(b'not an image')
    assert main(['match', str(broken), str(image_files / 'a.png'), '--backend', 'opencv']) == 2
    assert 'cannot decode image' in capsys.readouterr().err
    config = tmp_path / 'bad.yaml'
    config.write_text('matcher:\n  backend: opencv\n  precision: fp64\n')
    assert main(['match', str(image_files / 'a.png'), str(image_files / 'a.png'),
                 '--config', str(config)]) == 2
    assert "invalid precision 'fp64'" in capsys.readouterr().err
    assert main(['match', str(image_files / 'a.png'), str(image_files / 'b.jpg'), '--backend',
                 'opencv', '--overlay', str(tmp_path / 'overlay.unknown')]) == 2
    assert 'cannot write overlay' in capsys.readouterr().err


def test_installed_command(image_files):
    """The `loftr-ros` executable of the built package: exit code 2 and one stderr line."""
    executable = shutil.which('loftr-ros')
    if executable is None:
        pytest.skip('loftr-ros is not on PATH (run the tests through scripts/ros_env.sh)')
    completed = subprocess.run([executable, 'match', str(image_files / 'missing.png'),
                                str(image_files / 'a.png')], capture_output=True, text=True)
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [
        f"loftr-ros match: error: image file {image_files / 'missing.png'} does not exist"]
