"""Suite-wide settings and fixtures.

DDS stays on this machine for every test and every process a test starts: the environment is
set here once, before anything imports rclpy.
"""
import os
import random
import tempfile
from pathlib import Path

import pytest

os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
# Shared memory only, with a segment large enough for camera images: nothing touches a network
# interface, and images do not fall back to UDP.
os.environ.setdefault('FASTDDS_DEFAULT_PROFILES_FILE',
                      str(Path(__file__).resolve().parents[1] / 'config' / 'fastdds_local_shm.xml'))
os.environ.setdefault('ROS_DOMAIN_ID', str(random.Random(os.getpid()).randint(100, 199)))
os.environ.setdefault('ROS_LOG_DIR', tempfile.mkdtemp(prefix='loftr_ros_test_log_'))
# Two CPU threads is what CI has; more only slows small models down through contention.
os.environ.setdefault('OMP_NUM_THREADS', '2')

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / 'shared' / 'data'
EUROC_DIR = SHARED_DATA / 'euroc_v101_stereo'


@pytest.fixture(scope='session')
def euroc_dir():
    """The shared EuRoC stereo sample (bag/ and calibration.yaml); skips when absent."""
    if not (EUROC_DIR / 'bag' / 'metadata.yaml').exists():
        pytest.skip(f'shared EuRoC stereo data not found at {EUROC_DIR}')
    return EUROC_DIR


@pytest.fixture(scope='session')
def euroc_calibration(euroc_dir):
    from loftr_ros.core.camera import load_euroc_calibration
    return load_euroc_calibration(euroc_dir / 'calibration.yaml')


@pytest.fixture(scope='session')
def euroc_stereo_frames(euroc_dir):
    """All stereo pairs of the sample as a list of (stamp_ns, left mono8, right mono8), read
    with the project's own bag reader (exact stamps: the cameras are hardware-synchronised)."""
    from loftr_ros.core.bag import BagReader, stereo_pairs

    with BagReader(euroc_dir / 'bag') as reader:
        return [(pair.frame0.stamp_ns, pair.frame0.image, pair.frame1.image)
                for pair in stereo_pairs(reader, '/cam0/image_raw', '/cam1/image_raw')]
