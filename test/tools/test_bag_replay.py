"""What eval and record share: their pairing arguments and the warning for a skipped pair."""
import argparse
import subprocess
import sys

from loftr_ros.core.replay import ReplayOptions
from loftr_ros.tools.bag_replay import add_pairing_arguments, replay_options, warn_skipped


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
    warn_skipped(skipped)('/cam0/image_raw message 2: image has NaN pixels')
    assert skipped == ['/cam0/image_raw message 2: image has NaN pixels']
    assert 'warning: pair skipped: /cam0/image_raw message 2' in capsys.readouterr().err


def test_record_does_not_import_evaluate():
    code = ('import sys, loftr_ros.tools.record; '
            "assert 'loftr_ros.tools.evaluate' not in sys.modules")
    subprocess.run([sys.executable, '-c', code], check=True)
