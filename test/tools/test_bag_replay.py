"""What eval and record share: their pairing arguments and the warning for a skipped pair."""
import argparse
import subprocess
import sys

from loftr_ros.core.replay import ReplayOptions
from loftr_ros.core.errors import ImageError, ImageTooLargeError
from loftr_ros.tools.bag_replay import (add_pairing_arguments, replay_options, skipped_summary,
                                        warn_skipped)


def test_arguments_give_the_replay_options():
    parser = argparse.ArgumentParser()
    add_pairing_arguments(parser)
    assert replay_options(parser.parse_args(['bag'])) == ReplayOptions()
    args = parser.parse_args(['bag', '--mode', 'consecutive', '--slop-ms', '2.5', '--step', '3',
                              '--first', '1', '--last', '9', '--start', '0.5', '--end', '2',
                              '--max-pairs', '4', '--backend', 'opencv', '--backend', 'xfeat'])
    assert replay_options(args) == ReplayOptions(
        mode='consecutive', slop_ns=2_500_000, step=3, first=1, last=9, start=0.5, end=2.0,
        max_pairs=4)
    assert args.backend == ['opencv', 'xfeat']


def test_a_skipped_pair_is_warned_about_and_kept(capsys):
    skipped = []
    too_large = ImageTooLargeError('/cam0/image_raw message 3: image_too_large: 8000x8000')
    warn_skipped(skipped)(ImageError('/cam0/image_raw message 2: bad_image: NaN pixels'))
    warn_skipped(skipped)(too_large)
    assert [str(error) for error in skipped] == [
        '/cam0/image_raw message 2: bad_image: NaN pixels', str(too_large)]
    assert 'warning: pair skipped: /cam0/image_raw message 2' in capsys.readouterr().err
    assert skipped_summary(skipped).startswith(
        '2 pair(s) skipped (bad_image 1, image_too_large 1)')


def test_record_does_not_import_evaluate():
    code = ('import sys, loftr_ros.tools.record; '
            "assert 'loftr_ros.tools.evaluate' not in sys.modules")
    subprocess.run([sys.executable, '-c', code], check=True)
