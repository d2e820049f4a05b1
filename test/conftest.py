"""Suite-wide settings and fixtures.

DDS stays on this machine for every test and every process a test starts: the environment is
set here once, before anything imports rclpy.
"""
import os
import random
import struct
import tempfile
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
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
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


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


@pytest.fixture
def ros_context():
    """An rclpy Context of the test's own (skips without rclpy)."""
    rclpy = pytest.importorskip('rclpy')
    from rclpy.context import Context
    context = Context()
    rclpy.init(context=context)
    yield context
    context.try_shutdown()


@pytest.fixture
def harness(ros_context):
    """A MatcherClient (loftr_ros.testing.client) on the test's context, closed after it."""
    from loftr_ros.testing.client import MatcherClient
    with MatcherClient(ros_context, name='test_harness') as client:
        yield client


@pytest.fixture(scope='session')
def eloftr_hf_dir(tmp_path_factory):
    """Random EfficientLoFTR weights of a reduced architecture (fewer blocks and channels, for
    speed) in the Hugging Face format, batch norms calibrated on a real photo: what the eloftr
    backend loads in tests. No trained weights are reachable here, so the matches mean nothing;
    their computation, transport and bookkeeping do."""
    import cv2
    import numpy as np
    import torch

    from loftr_ros.core.models.efficientloftr import EfficientLoFTR
    from loftr_ros.core.models.efficientloftr_weights import save_hf, synthetic_weights
    from loftr_ros.core.synthetic import load_photo

    gray = cv2.cvtColor(load_photo('astronaut'), cv2.COLOR_BGR2GRAY)
    calibration = cv2.resize(gray, (448, 448), interpolation=cv2.INTER_AREA)[8:296, 8:392]
    model = EfficientLoFTR(dict(stage_blocks=(1, 1, 2, 2), stage_channels=(16, 16, 32, 64),
                                hidden_size=64, num_layers=2))
    synthetic_weights(model, [torch.from_numpy(calibration.astype(np.float32) / 255)[None, None]],
                      seed=2)
    directory = tmp_path_factory.mktemp('eloftr_hf')
    save_hf(model, directory)
    return directory


def jpeg_segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack('>H', len(payload) + 2) + payload


# One Huffman code of length 1, for symbol 0: DC difference 0, or end of block.
_ONE_CODE = b'\x01' + b'\x00' * 15 + b'\x00'
# A quantization table of ones; a DC and an AC Huffman table of _ONE_CODE.
_QUANTIZATION = jpeg_segment(0xDB, b'\x00' + b'\x01' * 64)
_HUFFMAN = jpeg_segment(0xC4, b'\x00' + _ONE_CODE + b'\x10' + _ONE_CODE)


def _zero_bits_per_block(width: int, height: int, bits: int) -> bytes:
    """Entropy-coded data of `bits` zero bits per 8x8 block (see the tables above)."""
    blocks = -(-width // 8) * -(-height // 8)
    return bytes(-(-blocks * bits // 8))


def uniform_gray_jpeg(width: int, height: int) -> bytes:
    """A genuine baseline greyscale JPEG of uniform mid-grey at any size in few bytes: with
    one-code Huffman tables every 8x8 block is two zero bits (DC difference 0, end of block),
    so 20000x20000 takes 1.5 MB and decodes to 400 MB."""
    frame = jpeg_segment(0xC0, struct.pack('>BHHB', 8, height, width, 1) + b'\x01\x11\x00')
    scan = jpeg_segment(0xDA, b'\x01\x01\x00\x00\x3f\x00')
    return (b'\xff\xd8' + _QUANTIZATION + frame + _HUFFMAN + scan
            + _zero_bits_per_block(width, height, 2) + b'\xff\xd9')


def progressive_gray_jpeg(width: int, height: int, refine: bool) -> bytes:
    """A genuine progressive greyscale JPEG of uniform mid-grey with a scan per coefficient:
    DC, then each of the 63 AC coefficients in a scan of its own (64 scans); `refine`: each AC
    coefficient first at half precision, then refined in a scan more (127 scans). Every 8x8
    block is one zero bit in every scan (DC difference 0, or end of band)."""
    def scan(first, last, high_bit, low_bit):
        return (jpeg_segment(0xDA, bytes((1, 1, 0x00, first, last, high_bit << 4 | low_bit)))
                + _zero_bits_per_block(width, height, 1))
    frame = jpeg_segment(0xC2, struct.pack('>BHHB', 8, height, width, 1) + b'\x01\x11\x00')
    scans = [scan(0, 0, 0, 0)] + [scan(k, k, 0, int(refine)) for k in range(1, 64)]
    if refine:
        scans += [scan(k, k, 1, 0) for k in range(1, 64)]
    return b'\xff\xd8' + _QUANTIZATION + frame + _HUFFMAN + b''.join(scans) + b'\xff\xd9'


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (struct.pack('>I', len(payload)) + kind + payload
            + struct.pack('>I', zlib.crc32(kind + payload)))


def png_header(width: int, height: int, colour: int = 0) -> bytes:
    """The IHDR chunk of an 8-bit PNG (colour type 0: grey, 2: RGB)."""
    return png_chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, colour, 0, 0, 0))


def black_png_data(width: int, height: int, channels: int = 1) -> bytes:
    """The IDAT chunk of an all-black 8-bit image, compressed a block of rows at a time."""
    compressor = zlib.compressobj(9)
    row = width * channels + 1  # each row: filter byte 0, then pixels
    rows = bytes(row * min(height, 256))
    idat = [compressor.compress(rows[:row * min(256, height - start)])
            for start in range(0, height, 256)]
    idat.append(compressor.flush())
    return png_chunk(b'IDAT', b''.join(idat))


def uniform_gray_png(width: int, height: int) -> bytes:
    """A genuine 8-bit greyscale PNG of black at any size (20000x20000: 0.4 MB)."""
    return (PNG_SIGNATURE + png_header(width, height) + black_png_data(width, height)
            + png_chunk(b'IEND', b''))


def png_with_hidden_size(width: int, height: int) -> bytes:
    """An RGB PNG whose first IHDR says 64x64 and a second IHDR `width` x `height`, with the
    image data of the second: Pillow decodes the size of the last IHDR (13000x13000: 0.5 MB
    of PNG, 483 MiB decoded)."""
    return (PNG_SIGNATURE + png_header(64, 64, colour=2) + png_header(width, height, colour=2)
            + black_png_data(width, height, channels=3) + png_chunk(b'IEND', b''))


def corrupt_jpeg_scan(jpeg: bytes, seed: int = 0) -> bytes:
    """`jpeg` with 64 bytes in its scan data replaced by random bytes around a stray restart
    marker (what a bit error in transit or a bad sensor buffer leaves), the end-of-image marker
    intact: libjpeg still decodes it, with a warning, into a partly grey image."""
    data = bytearray(jpeg)
    start = data.index(b'\xff\xda') + 400
    data[start:start + 64] = np.random.default_rng(seed).integers(0, 256, 64, np.uint8).tobytes()
    data[start + 32:start + 34] = b'\xff\xd3'
    return bytes(data)


@pytest.fixture(scope='session')
def hostile_images():
    """The hostile image builders above, for tests in any folder."""
    return SimpleNamespace(uniform_gray_jpeg=uniform_gray_jpeg,
                           progressive_gray_jpeg=progressive_gray_jpeg,
                           uniform_gray_png=uniform_gray_png,
                           png_chunk=png_chunk, png_with_hidden_size=png_with_hidden_size,
                           corrupt_jpeg_scan=corrupt_jpeg_scan)


def _assert_same_matches(actual, expected, atol=1e-3, score_atol=1e-3):
    """The same matches in two results (MatchResult or alike), whatever their order among
    near-equal scores: the two images of a stereo pair prepared as one batch or one by one
    differ by float rounding, which may swap two matches of almost the same score."""
    import numpy as np

    assert len(actual.scores) == len(expected.scores), (len(actual.scores),
                                                        len(expected.scores))
    for result in (actual, expected):
        assert np.all(np.diff(result.scores) <= 0)  # best first
    orders = [np.lexsort(np.hstack([result.keypoints0, result.keypoints1]).T)
              for result in (actual, expected)]
    for name, tolerance in (('keypoints0', atol), ('keypoints1', atol), ('scores', score_atol)):
        np.testing.assert_allclose(getattr(actual, name)[orders[0]],
                                   getattr(expected, name)[orders[1]], atol=tolerance,
                                   err_msg=name)


@pytest.fixture(scope='session')
def assert_same_matches():
    return _assert_same_matches


@pytest.fixture(scope='session')
def colour_stereo_pair():
    """scikit-image's stereo_motorcycle pair, a real colour stereo pair (left, right) as BGR
    uint8, area-resized to 480x320: sides that are multiples of 32, which every library takes
    without resizing or padding it again."""
    import cv2
    import skimage.data

    return tuple(cv2.resize(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), (480, 320),
                            interpolation=cv2.INTER_AREA)
                 for image in skimage.data.stereo_motorcycle()[:2])
