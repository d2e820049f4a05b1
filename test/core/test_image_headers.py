"""PNG and JPEG headers give the image size before decoding, and any bytes give a header or an
ImageError."""
import struct

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from loftr_ros.core.errors import ImageError
from loftr_ros.core.image_headers import ImageHeader, compressed_image_format, read_image_header


@pytest.fixture(scope='module')
def photo():
    return np.ascontiguousarray(skdata.astronaut()[40:137, 60:190, ::-1])


def encode(image, ext, *params):
    return cv2.imencode(ext, image, list(params))[1].tobytes()


# A baseline frame header of a 64x64 greyscale image.
SOF_64 = b'\xff\xc0\x00\x0b\x08\x00\x40\x00\x40\x01\x01\x11\x00'


def with_exif_segment(jpeg: bytes) -> bytes:
    """An APP1 segment of 30 kB (EXIF-sized, holding 0xFF bytes and a fake SOF inside) after
    SOI: the walk must skip it by its length."""
    payload = b'Exif\x00\x00' + (b'\xff\xc0\x00\x11\x08\x00\x10\x00\x10' * 3333)
    return jpeg[:2] + b'\xff\xe1' + struct.pack('>H', len(payload) + 2) + payload + jpeg[2:]


def test_sizes_and_channels_of_real_images(photo, hostile_images):
    mono = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
    cases = [
        (encode(photo, '.png'), ImageHeader('png', 130, 97, 3, 8)),
        (encode(mono.astype(np.uint16) * 257, '.png'), ImageHeader('png', 130, 97, 1, 16)),
        (encode(photo, '.jpg'), ImageHeader('jpeg', 130, 97, 3, 8)),
        (encode(mono, '.jpg', cv2.IMWRITE_JPEG_PROGRESSIVE, 1), ImageHeader('jpeg', 130, 97, 1, 8)),
        (with_exif_segment(encode(photo, '.jpg')), ImageHeader('jpeg', 130, 97, 3, 8)),
        (hostile_images.uniform_gray_jpeg(20000, 20000), ImageHeader('jpeg', 20000, 20000, 1, 8)),
        (hostile_images.uniform_gray_png(20000, 300), ImageHeader('png', 20000, 300, 1, 8)),
    ]
    for data, expected in cases:
        assert read_image_header(data) == expected
        assert read_image_header(np.frombuffer(data, np.uint8)) == expected
    assert read_image_header(cases[5][0]).pixels == 400_000_000


def test_other_formats_are_named(photo):
    assert compressed_image_format(encode(photo, '.bmp')) == ''
    with pytest.raises(ImageError, match='neither PNG nor JPEG \\(starts with 42 4d'):
        read_image_header(encode(photo, '.bmp'))
    with pytest.raises(ImageError, match='neither PNG nor JPEG'):
        read_image_header(b'')


@pytest.mark.parametrize('data, reason', [
    (b'\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR', 'PNG cut short in its header'),
    (b'\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIDAT' + bytes(17), 'does not start with an IHDR'),
    (b'\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR' + bytes(8) + b'\x08\x00' + bytes(7),
     'declares a 0x0 image'),
    (b'\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR' + bytes(8) + b'\x07\x09' + bytes(7),
     'colour type 9 and bit depth 7'),
    (b'\xff\xd8\xff\xe0\x00', 'JPEG cut short before its frame header'),
    (b'\xff\xd8\x00\x00\x00\x00', 'no marker at byte 2'),
    (b'\xff\xd8\xff\xe0\x00\x01', 'segment length 1'),
    (b'\xff\xd8\xff\xda\x00\x08' + bytes(10), 'no frame header before its scan'),
    (b'\xff\xd8\xff\xc0\x00\x0b\x08\x00\x00\x01\x00\x01\x01\x11\x00', 'declares a 256x0'),
    (b'\xff\xd8\xff\xd9', 'marker 0xD9 before any frame'),
    (b'\xff\xd8\xff\x00\x00\x04', 'marker 0x00 before any frame'),
    (b'\xff\xd8' + SOF_64 + SOF_64, 'JPEG with a second frame header at byte 15'),
    (b'\xff\xd8' + b'\xff\xfe\x00\x02' * 1001 + SOF_64, 'more than 1000 marker segments'),
])
def test_malformed_headers_are_named(data, reason):
    with pytest.raises(ImageError, match=reason):
        read_image_header(data)


def test_garbage_gives_a_header_or_an_image_error(photo):
    """Random cuts, byte flips and garbage in the header region of real files: never another
    exception, never a wrong size from an intact frame header."""
    rng = np.random.default_rng(3)
    originals = [encode(photo, '.jpg'), with_exif_segment(encode(photo, '.jpg')),
                 encode(photo, '.png')]
    for _ in range(3000):
        data = bytearray(originals[rng.integers(0, len(originals))])
        for _ in range(rng.integers(1, 4)):
            position = rng.integers(0, min(len(data), 700))
            data[position] = rng.integers(0, 256)
        if rng.random() < 0.3:
            data = data[:rng.integers(0, 700)]
        try:
            header = read_image_header(bytes(data))
        except ImageError:
            continue
        assert header.width >= 1 and header.height >= 1
