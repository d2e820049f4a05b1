"""What eval and record share: their pairing arguments, the pairs inferred from the bag when
the mode or topics are not given, and the warning for a skipped pair."""
import argparse
import dataclasses
import subprocess
import sys

import pytest

from loftr_ros.core.bag import BagReader
from loftr_ros.core.errors import ConfigError
from loftr_ros.core.replay import ReplayOptions
from loftr_ros.core.errors import ImageError, ImageTooLargeError
from loftr_ros.tools.bag_replay import (add_pairing_arguments, replay_options, skipped_summary,
                                        warn_skipped)


def options_of(bag, *arguments):
    parser = argparse.ArgumentParser()
    add_pairing_arguments(parser)
    with BagReader(bag) as reader:
        return replay_options(parser.parse_args([str(bag), *arguments]), reader)


@pytest.fixture(scope='module')
def stereo_bag(tmp_path_factory, sequence_views, image_bag_writer):
    """Two image topics whose frames share their stamps (a synchronised stereo camera)."""
    path = tmp_path_factory.mktemp('stereo') / 'bag'
    return image_bag_writer(path, {'/right/image': sequence_views[:3],
                                   '/left/image': sequence_views[:3]})


def test_arguments_give_the_replay_options(sequence_bag):
    options, _ = options_of(sequence_bag, '--mode', 'consecutive', '--slop-ms', '2.5', '--step',
                            '3', '--first', '1', '--last', '9', '--start', '0.5', '--end', '2',
                            '--max-pairs', '4')
    assert options == ReplayOptions(
        mode='consecutive', topic='/cam0/image_raw', slop_ns=2_500_000, step=3, first=1, last=9,
        start=0.5, end=2.0, max_pairs=4)


def test_one_image_topic_gives_consecutive_pairs(sequence_bag):
    options, text = options_of(sequence_bag)
    assert (options.mode, options.topic) == ('consecutive', '/cam0/image_raw')
    assert text == "consecutive pairs of /cam0/image_raw (the bag's only image topic)"


def test_two_image_topics_with_equal_stamps_give_stereo_pairs(stereo_bag, euroc_dir):
    options, text = options_of(stereo_bag)
    assert (options.mode, options.left, options.right) == ('stereo', '/left/image',
                                                           '/right/image')
    assert text == ("stereo pairs of /left/image (left) and /right/image (right) (the bag's two "
                    'image topics, with equal stamps)')
    options, _ = options_of(euroc_dir / 'bag')
    assert (options.mode, options.left, options.right) == ('stereo', '/cam0/image_raw',
                                                           '/cam1/image_raw')


def test_two_image_topics_with_other_stamps_need_a_choice(tmp_path, sequence_views,
                                                          image_bag_writer):
    later = [dataclasses.replace(view, stamp_ns=view.stamp_ns + 7_000_000)
             for view in sequence_views[:3]]
    bag = image_bag_writer(tmp_path / 'bag', {'/a/image': sequence_views[:3], '/b/image': later})
    with pytest.raises(ConfigError, match=r'two image topics whose stamps differ \(/a/image, '
                                          r'/b/image\): give --mode stereo --slop-ms MS'):
        options_of(bag)
    options, _ = options_of(bag, '--mode', 'stereo', '--slop-ms', '10')
    assert (options.left, options.right, options.slop_ns) == ('/a/image', '/b/image', 10**7)


def test_topic_alone_gives_consecutive_pairs_of_it(euroc_dir):
    options, text = options_of(euroc_dir / 'bag', '--topic', '/cam1/image_raw')
    assert (options.mode, options.topic) == ('consecutive', '/cam1/image_raw')
    assert text == 'consecutive pairs of /cam1/image_raw (as --topic asks)'
    options, text = options_of(euroc_dir / 'bag', '--mode', 'consecutive')
    assert options.topic == '/cam0/image_raw'
    assert text.endswith('(as --mode consecutive asks, the first of its 2 image topics)')


def test_left_or_right_alone_gives_stereo_pairs(euroc_dir):
    options, text = options_of(euroc_dir / 'bag', '--right', '/cam0/image_raw')
    assert (options.mode, options.left, options.right) == ('stereo', '/cam1/image_raw',
                                                           '/cam0/image_raw')
    assert text.endswith('(as --left/--right ask)')


def test_ground_truth_gives_consecutive_pairs(euroc_dir):
    parser = argparse.ArgumentParser()
    add_pairing_arguments(parser)
    parser.add_argument('--ground-truth')
    args = parser.parse_args([str(euroc_dir / 'bag'), '--ground-truth', 'gt.csv'])
    with BagReader(euroc_dir / 'bag') as reader:
        options, text = replay_options(args, reader)
    assert (options.mode, options.topic) == ('consecutive', '/cam0/image_raw')
    assert text.startswith('consecutive pairs of /cam0/image_raw (as --ground-truth scores')


@pytest.mark.parametrize('arguments, message', [
    (['--topic', '/left/image', '--mode', 'stereo'], '--topic is the image topic of consecutive'),
    (['--topic', '/left/image', '--left', '/left/image'], '--topic is the image topic of'),
    (['--left', '/left/image', '--mode', 'consecutive'], '--left/--right are the topics of'),
])
def test_contradicting_pairing_arguments_are_refused(stereo_bag, arguments, message):
    with pytest.raises(ConfigError, match=message):
        options_of(stereo_bag, *arguments)


def test_a_bag_without_the_image_topics_needed(sequence_bag):
    with pytest.raises(ConfigError, match=r'has 1 image topic\(s\), 2 needed; its topics: '
                                          r'/cam0/camera_info'):
        options_of(sequence_bag, '--mode', 'stereo')


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
