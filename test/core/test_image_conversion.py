"""Image conversion against rosbags-image (an independent implementation) and against the
pixels the messages were made from, on a real photo."""
import io
import subprocess
import sys
import warnings
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from rosbags.image import message_to_cvimage
from skimage import data as skdata

from loftr_ros.core.config import MatcherConfig
from loftr_ros.core.errors import ImageError, ImageTooLargeError
from loftr_ros.core.image_conversion import (SUPPORTED_ENCODINGS, image_from_compressed_msg,
                                             image_from_msg, image_to_msg_fields)


@pytest.fixture(scope='module')
def photo_bgr():
    """A real photo, odd-sized on purpose for strides, even width for YUV 4:2:2."""
    return np.ascontiguousarray(skdata.astronaut()[40:137, 60:190, ::-1])


def bayer_mosaic(bgr, pattern):
    """Sample a BGR image through a colour filter array named like ROS's bayer_<pattern>8."""
    channel = {'r': 2, 'g': 1, 'b': 0}
    mosaic = np.empty(bgr.shape[:2], np.uint8)
    for index, letter in enumerate(pattern):
        row, col = divmod(index, 2)
        mosaic[row::2, col::2] = bgr[row::2, col::2, channel[letter]]
    return mosaic


def encode(bgr, encoding):
    """The message-layout array of `encoding` for a BGR photo."""
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    if encoding in ('mono8', '8UC1'):
        return gray
    if encoding in ('mono16', '16UC1'):
        return gray.astype(np.uint16) * 257
    if encoding == '32FC1':
        return gray.astype(np.float32) / 255
    if encoding in ('bgr8', '8UC3'):
        return bgr
    if encoding == 'rgb8':
        return np.ascontiguousarray(bgr[:, :, ::-1])
    if encoding == 'bgra8':
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    if encoding == 'rgba8':
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGBA)
    if encoding.startswith('bayer_'):
        return bayer_mosaic(bgr, encoding[6:10])
    if encoding in ('yuv422', 'uyvy'):
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_UYVY)
    if encoding in ('yuv422_yuy2', 'yuyv'):
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_YUYV)
    raise AssertionError(encoding)


def make_msg(array, layout, **changes):
    fields = image_to_msg_fields(array, layout)
    fields.update(changes)
    return SimpleNamespace(**fields)


def pad_rows(msg, extra):
    """The same image with `extra` junk bytes after each row."""
    rows = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.step)
    junk = np.full((msg.height, extra), 0xAB, np.uint8)
    padded = np.concatenate([rows, junk], axis=1)
    return SimpleNamespace(**{**vars(msg), 'step': msg.step + extra,
                              'data': padded.reshape(-1)})


COLOUR = {'bgr8', '8UC3', 'rgb8', 'bgra8', 'rgba8', 'yuv422', 'uyvy', 'yuv422_yuy2', 'yuyv',
          'bayer_rggb8', 'bayer_bggr8', 'bayer_gbrg8', 'bayer_grbg8'}


@pytest.mark.parametrize('encoding', SUPPORTED_ENCODINGS)
def test_same_pixels_as_rosbags_image(photo_bgr, encoding):
    msg = make_msg(encode(photo_bgr, encoding), encoding)
    ours = image_from_msg(msg)
    theirs = message_to_cvimage(msg, 'bgr8' if encoding in COLOUR else None)
    assert ours.shape == theirs.shape
    assert ours.dtype == theirs.dtype
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize('encoding', sorted(COLOUR))
def test_colour_encodings_give_back_the_photo(photo_bgr, encoding):
    """Independent of rosbags-image: the decoded BGR is the photo (demosaicing and chroma
    subsampling lose detail, a swapped channel or a wrong Bayer phase loses far more)."""
    image = image_from_msg(make_msg(encode(photo_bgr, encoding), encoding))
    assert image.shape == photo_bgr.shape and image.dtype == np.uint8
    error = np.abs(image.astype(int) - photo_bgr).mean()
    assert error < (12 if encoding.startswith('bayer') else 4), error


@pytest.mark.parametrize('encoding', ['mono8', '8UC1', 'bgr8', '8UC3', 'mono16', '16UC1',
                                      '32FC1'])
def test_layouts_without_conversion_are_zero_copy_views(photo_bgr, encoding):
    msg = make_msg(encode(photo_bgr, encoding), encoding)
    image = image_from_msg(msg)
    assert np.shares_memory(image, msg.data)
    padded = pad_rows(msg, 6)
    image = image_from_msg(padded)
    assert np.shares_memory(image, padded.data)
    np.testing.assert_array_equal(image, encode(photo_bgr, encoding))


@pytest.mark.parametrize('encoding', ['rgb8', 'bgra8', 'yuv422', 'bayer_grbg8', 'mono16'])
def test_step_padding_is_skipped(photo_bgr, encoding):
    msg = make_msg(encode(photo_bgr, encoding), encoding)
    np.testing.assert_array_equal(image_from_msg(pad_rows(msg, 5)), image_from_msg(msg))


@pytest.mark.parametrize('encoding', ['mono16', '16UC1', '32FC1'])
def test_big_endian_data_is_read_in_native_order(photo_bgr, encoding):
    array = encode(photo_bgr, encoding)
    swapped = array.astype(array.dtype.newbyteorder('>'))
    msg = make_msg(array, encoding, is_bigendian=1, data=swapped.reshape(-1).view(np.uint8))
    image = image_from_msg(msg)
    assert image.dtype == array.dtype
    np.testing.assert_array_equal(image, array)
    np.testing.assert_array_equal(image, message_to_cvimage(msg))


def test_rclpy_style_array_buffer_is_read(photo_bgr):
    """rclpy messages hold uint8[] as array.array('B')."""
    import array
    fields = image_to_msg_fields(encode(photo_bgr, 'mono8'), 'mono8')
    msg = SimpleNamespace(**{**fields, 'data': array.array('B', fields['data'].tobytes())})
    np.testing.assert_array_equal(image_from_msg(msg), encode(photo_bgr, 'mono8'))


def test_unsupported_encoding_names_itself(photo_bgr):
    msg = make_msg(encode(photo_bgr, 'mono8'), 'mono8', encoding='nv21')
    with pytest.raises(ImageError, match="unsupported encoding 'nv21'; supported: mono8"):
        image_from_msg(msg)


def test_truncated_data_is_reported(photo_bgr):
    msg = make_msg(encode(photo_bgr, 'bgr8'), 'bgr8')
    msg.data = msg.data[:-100]
    with pytest.raises(ImageError, match=r'truncated data: \d+ bytes, but height 97 x step 390'):
        image_from_msg(msg)


def test_height_that_disagrees_with_the_data_is_reported(photo_bgr):
    msg = make_msg(encode(photo_bgr, 'mono8'), 'mono8', height=50)
    with pytest.raises(ImageError, match='data larger than the image'):
        image_from_msg(msg)


def test_step_smaller_than_a_row_is_reported(photo_bgr):
    msg = make_msg(encode(photo_bgr, 'rgb8'), 'rgb8', step=100)
    with pytest.raises(ImageError, match=r'step 100 is smaller than a row of 130 rgb8 pixels'):
        image_from_msg(msg)


def test_empty_image_is_reported():
    msg = SimpleNamespace(encoding='mono8', height=0, width=0, step=0, is_bigendian=0,
                          data=b'')
    with pytest.raises(ImageError, match='empty image'):
        image_from_msg(msg)


def test_odd_width_yuv422_is_reported(photo_bgr):
    msg = make_msg(encode(photo_bgr, 'yuv422'), 'yuv422')
    msg.width -= 1
    with pytest.raises(ImageError, match='yuv422 needs an even width, got 129'):
        image_from_msg(msg)


def compressed(array, ext, fmt):
    ok, buffer = cv2.imencode(ext, array)
    assert ok
    return SimpleNamespace(format=fmt, data=buffer.reshape(-1))


def test_png_decodes_exactly_like_rosbags_image(photo_bgr):
    for array in (photo_bgr, encode(photo_bgr, 'mono8')):
        msg = compressed(array, '.png', 'png')
        image = image_from_compressed_msg(msg)
        np.testing.assert_array_equal(image, array)
        np.testing.assert_array_equal(image, message_to_cvimage(msg))


def test_16_bit_png_keeps_its_depth(photo_bgr):
    """compressed_image_transport writes mono16 as 16-bit PNG (rosbags-image reads it as
    8-bit, so it is no reference here)."""
    array = encode(photo_bgr, 'mono16')
    image = image_from_compressed_msg(compressed(array, '.png', 'mono16; png compressed'))
    assert image.dtype == np.uint16
    np.testing.assert_array_equal(image, array)


def test_jpeg_decodes_to_the_photo(photo_bgr):
    msg = compressed(photo_bgr, '.jpg', 'bgr8; jpeg compressed bgr8')
    image = image_from_compressed_msg(msg)
    assert image.shape == photo_bgr.shape
    assert np.abs(image.astype(int) - photo_bgr).mean() < 6
    np.testing.assert_array_equal(image, message_to_cvimage(msg))


def test_truncated_jpeg_is_reported(photo_bgr):
    msg = compressed(photo_bgr, '.jpg', 'jpeg')
    msg.data = msg.data[: len(msg.data) // 2]
    with pytest.raises(ImageError, match='truncated JPEG: no end-of-image marker'):
        image_from_compressed_msg(msg)


@pytest.mark.parametrize('cut, reason', [
    ('truncated', "corrupt PNG: OSError: image file is truncated \\(\\d+ bytes, format 'png'\\)"),
    ('flipped', 'corrupt PNG: OSError: broken data stream'),
    ('garbage', "neither PNG nor JPEG .* \\(format 'png'\\)")])
def test_corrupt_png_is_reported_without_decoder_noise(photo_bgr, cut, reason, capfd):
    msg = compressed(photo_bgr, '.png', 'png')
    if cut == 'truncated':
        msg.data = msg.data[: len(msg.data) // 2]
    elif cut == 'flipped':
        msg.data = msg.data.copy()
        msg.data[len(msg.data) // 2] ^= 0x10
    else:
        msg.data = np.frombuffer(b'\x89PNG not really' * 20, np.uint8)
    with pytest.raises(ImageError, match=reason):
        image_from_compressed_msg(msg)
    # libpng (through OpenCV) prints 'libpng error: ...' on stderr for each such frame.
    assert capfd.readouterr().err == ''


def test_corrupt_jpeg_scan_data_is_reported_though_libjpeg_decodes_it(photo_bgr, hostile_images,
                                                                       capfd):
    """Random bytes in the scan data, markers intact: OpenCV decodes a partly wrong image and
    only libjpeg's stderr line tells; here the decoder's error state refuses it, silently."""
    jpeg = hostile_images.corrupt_jpeg_scan(cv2.imencode('.jpg', photo_bgr)[1].tobytes())
    assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_UNCHANGED) is not None
    assert 'Corrupt JPEG data' in capfd.readouterr().err
    msg = SimpleNamespace(format='jpeg', data=np.frombuffer(jpeg, np.uint8))
    with pytest.raises(ImageError, match="corrupt JPEG: Corrupt JPEG data: .* bytes, format "
                                         "'jpeg'"):
        image_from_compressed_msg(msg)
    assert capfd.readouterr().err == ''


def test_png_of_every_colour_type_decodes_like_opencv(photo_bgr):
    from PIL import Image
    rgb = Image.fromarray(np.ascontiguousarray(photo_bgr[:, :, ::-1]))
    images = {'palette': rgb.quantize(64), 'bilevel': rgb.convert('1'),
              'rgba': rgb.convert('RGBA'), 'grey': rgb.convert('L'),
              'grey16': Image.fromarray(encode(photo_bgr, 'mono16'))}
    for name, image in images.items():
        buffer = io.BytesIO()
        image.save(buffer, format='PNG')
        data = np.frombuffer(buffer.getvalue(), np.uint8)
        expected = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        if expected.ndim == 3 and expected.shape[2] == 4:
            expected = expected[:, :, :3]
        decoded = image_from_compressed_msg(SimpleNamespace(format='png', data=data))
        assert decoded.dtype == expected.dtype, name
        np.testing.assert_array_equal(decoded, expected, err_msg=name)


def test_images_above_the_limits_are_refused_before_decoding(hostile_images, monkeypatch):
    import simplejpeg
    from PIL import PngImagePlugin

    def no_decoding(*args, **kwargs):
        raise AssertionError('decoded an image above the limit')

    for fmt, data in (('jpeg', hostile_images.uniform_gray_jpeg(20000, 20000)),
                      ('png', hostile_images.uniform_gray_png(20000, 20000))):
        msg = SimpleNamespace(format=fmt, data=np.frombuffer(data, np.uint8))
        with monkeypatch.context() as patch:
            patch.setattr(simplejpeg, 'decode_jpeg', no_decoding)
            patch.setattr(simplejpeg, 'decode_jpeg_header', no_decoding)
            patch.setattr(PngImagePlugin, 'PngImageFile', no_decoding)
            with pytest.raises(ImageTooLargeError, match=(
                    f'20000x20000 {fmt.upper()} has 400.0 MP, above the limit max_image_pixels '
                    f'= 16777216 \\(16.8 MP\\)')) as error:
                image_from_compressed_msg(msg, max_pixels=MatcherConfig().max_image_pixels)
            assert error.value.cause == 'image_too_large'
            with pytest.raises(ImageTooLargeError, match=f'{len(data)} bytes of compressed image, '
                                                         'above the limit max_compressed_bytes'):
                image_from_compressed_msg(msg, max_bytes=len(data) - 1)


def test_png_with_a_second_ihdr_is_refused_before_decoding(hostile_images, monkeypatch):
    """The first IHDR says 64x64, a second one 5000x5000 RGB (72 MiB decoded): Pillow decodes
    the last one's size, so the PNG is refused as bad data before Pillow sees it."""
    from PIL import PngImagePlugin

    def no_decoding(*args, **kwargs):
        raise AssertionError('the decoder was called')

    monkeypatch.setattr(PngImagePlugin, 'PngImageFile', no_decoding)
    for width in (5000, 80):
        data = hostile_images.png_with_hidden_size(width, width)
        msg = SimpleNamespace(format='png', data=np.frombuffer(data, np.uint8))
        with pytest.raises(ImageError, match="PNG with a second IHDR chunk at byte 33 "
                                             "\\(format 'png'\\)") as error:
            image_from_compressed_msg(msg, max_pixels=MatcherConfig().max_image_pixels)
        assert error.value.cause == 'bad_image'


def split_png_data(png: bytes, piece: int, png_chunk) -> bytes:
    """`png` (IHDR, IDAT..., IEND, as OpenCV writes it) with its image data re-chunked into
    IDAT chunks of `piece` bytes, which PNG allows."""
    chunks, position = [], 8
    while position < len(png):
        length = int.from_bytes(png[position:position + 4], 'big')
        chunks.append((png[position + 4:position + 8], png[position + 8:position + 8 + length]))
        position += 12 + length
    data = b''.join(payload for kind, payload in chunks if kind == b'IDAT')
    pieces = [png_chunk(b'IDAT', data[start:start + piece])
              for start in range(0, len(data), piece)]
    return (png[:8] + png_chunk(*chunks[0]) + b''.join(pieces) + png_chunk(b'IEND', b''))


def test_png_chunk_flood_is_refused_before_pillow_reads_it(photo_bgr, hostile_images,
                                                          monkeypatch):
    """Pillow reads chunks one by one in Python: 20,000 empty chunks of 12 bytes are refused
    before it is called; the image data split into thousands of chunks is legitimate."""
    from PIL import PngImagePlugin

    png_chunk = hostile_images.png_chunk
    png = cv2.imencode('.png', photo_bgr)[1].tobytes()
    split = split_png_data(png, 4, png_chunk)
    assert split.count(b'IDAT') > 5000
    np.testing.assert_array_equal(
        image_from_compressed_msg(SimpleNamespace(format='png', data=split)), photo_bgr)

    def no_decoding(*args, **kwargs):
        raise AssertionError('Pillow was called')

    monkeypatch.setattr(PngImagePlugin, 'PngImageFile', no_decoding)
    flood = png[:33] + png_chunk(b'abCd', b'') * 20_000 + png[33:]
    most = 10_000 + len(flood) // 8192
    with pytest.raises(ImageError, match=f'PNG with more than {most} chunks, the limit for '
                                         f'{len(flood)} bytes \\(10000 \\+ one per 8192 bytes\\)'):
        image_from_compressed_msg(SimpleNamespace(format='png', data=flood))


@pytest.mark.parametrize('fmt', ['png', 'jpeg'])
def test_decoders_are_held_to_the_header_size_before_decoding(hostile_images, monkeypatch, fmt):
    """Should the header walk ever miss what the decoder reads (here: it is made to report
    64x64 for a 3000x2000 image), the size the decoder reads before decoding is checked."""
    import PIL.ImageFile
    import simplejpeg

    from loftr_ros.core import image_conversion
    from loftr_ros.core.image_headers import ImageHeader

    def no_decoding(*args, **kwargs):
        raise AssertionError('the image was decoded')

    monkeypatch.setattr(image_conversion, 'read_image_header',
                        lambda data: ImageHeader(fmt, 64, 64, 1, 8))
    monkeypatch.setattr(simplejpeg, 'decode_jpeg', no_decoding)
    monkeypatch.setattr(PIL.ImageFile.ImageFile, 'load', no_decoding)
    data = (hostile_images.uniform_gray_png if fmt == 'png' else
            hostile_images.uniform_gray_jpeg)(3000, 2000)
    decoder = 'Pillow' if fmt == 'png' else 'libjpeg'
    with pytest.raises(ImageError, match=f'{fmt.upper()} header declares 64x64, but {decoder} '
                                         'reads 3000x2000'):
        image_from_compressed_msg(SimpleNamespace(format=fmt, data=data),
                                  max_pixels=MatcherConfig().max_image_pixels)


def test_a_decoded_size_other_than_the_header_is_refused(photo_bgr, monkeypatch):
    import simplejpeg

    decode = simplejpeg.decode_jpeg
    monkeypatch.setattr(simplejpeg, 'decode_jpeg', lambda *args, **kwargs: decode(
        *args, **kwargs)[1:])
    msg = compressed(photo_bgr, '.jpg', 'jpeg')
    with pytest.raises(ImageError, match='JPEG decoded to 130x96, but its header declares '
                                         '130x97'):
        image_from_compressed_msg(msg)


def test_png_above_pillows_own_limit_decodes_without_a_warning(hostile_images, capfd):
    """Pillow warns above 89.5 MP (DecompressionBombWarning) and fails above twice that,
    whatever max_image_pixels allows: only max_image_pixels counts, silently."""
    data = hostile_images.uniform_gray_png(9500, 9500)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        image = image_from_compressed_msg(SimpleNamespace(format='png', data=data),
                                          max_pixels=10**8)
    assert image.shape == (9500, 9500) and not image.any()
    assert capfd.readouterr().err == ''


def test_the_pixel_limit_is_width_times_height(hostile_images):
    msg = SimpleNamespace(format='jpeg', data=hostile_images.uniform_gray_jpeg(3000, 2000))
    with pytest.raises(ImageTooLargeError, match='3000x2000 JPEG has 6.0 MP'):
        image_from_compressed_msg(msg, max_pixels=5_999_999)
    image = image_from_compressed_msg(msg, max_pixels=6_000_000)
    assert image.shape == (2000, 3000) and image.min() == image.max() == 128
    raw = make_msg(np.zeros((10, 8000), np.uint8), 'mono8')
    raw.height = 8000  # 640 kB of data for 64 MB of pixels: the size alone refuses it
    with pytest.raises(ImageTooLargeError, match='8000x8000 mono8 image has 64.0 MP'):
        image_from_msg(raw, max_pixels=MatcherConfig().max_image_pixels)


def test_jpeg_scans_are_counted_in_the_marker_walk(photo_bgr, hostile_images):
    """A real progressive JPEG of 127 scans (libjpeg decodes it, strict) is refused, one of 64
    is decoded; 0xFF 0xDA bytes inside a comment (as in EXIF or ICC payloads) are no scans."""
    import simplejpeg

    many = hostile_images.progressive_gray_jpeg(100, 60, refine=True)
    assert simplejpeg.decode_jpeg(many, colorspace='GRAY', strict=True).shape == (60, 100, 1)
    with pytest.raises(ImageError, match="JPEG with more than 100 scans \\(format 'jpeg'\\)"):
        image_from_compressed_msg(SimpleNamespace(format='jpeg', data=many))
    fewer = hostile_images.progressive_gray_jpeg(100, 60, refine=False)
    image = image_from_compressed_msg(SimpleNamespace(format='jpeg', data=fewer))
    assert image.shape == (60, 100) and image.min() == image.max() == 128

    jpeg = cv2.imencode('.jpg', photo_bgr)[1].tobytes()
    comment = b'\xff\xfe' + (2 + 400).to_bytes(2, 'big') + b'\xff\xda' * 200
    with_comment = image_from_compressed_msg(
        SimpleNamespace(format='jpeg', data=jpeg[:2] + comment + jpeg[2:]))
    np.testing.assert_array_equal(
        with_comment, image_from_compressed_msg(SimpleNamespace(format='jpeg', data=jpeg)))


# Run where simplejpeg cannot be imported (a colcon workspace: it has no rosdep key).
WITHOUT_SIMPLEJPEG = """
import sys, warnings
import numpy as np
sys.modules['simplejpeg'] = None  # import simplejpeg raises ImportError
warnings.simplefilter('always')  # every warning shown: 'once' is the module's doing
import loftr_ros.ros.node
from loftr_ros.core.image_conversion import image_from_compressed_msg, image_from_msg
from types import SimpleNamespace
raw = np.arange(12, dtype=np.uint8)
image = image_from_msg(SimpleNamespace(encoding='mono8', height=3, width=4, step=4,
                                       is_bigendian=0, data=raw))
assert image.shape == (3, 4), image.shape
print('raw decoded', file=sys.stderr)
for path in sys.argv[1:]:
    data = np.fromfile(path, np.uint8)
    np.save(path + '.npy', image_from_compressed_msg(SimpleNamespace(format='jpeg', data=data)))
"""


def test_jpeg_without_simplejpeg_is_decoded_by_pillow_with_one_warning(photo_bgr, hostile_images,
                                                                       tmp_path):
    """Without simplejpeg the node and the core import, raw images convert, and JPEG decodes
    to the same pixels through Pillow; corrupt scan data is decoded too (nothing detects it),
    which one warning says, with how to turn the detection on."""
    jpeg = cv2.imencode('.jpg', photo_bgr)[1].tobytes()
    paths = [tmp_path / 'photo.jpg', tmp_path / 'corrupt.jpg', tmp_path / 'again.jpg']
    for path, data in zip(paths, (jpeg, hostile_images.corrupt_jpeg_scan(jpeg), jpeg)):
        path.write_bytes(data)
    run = subprocess.run([sys.executable, '-c', WITHOUT_SIMPLEJPEG, *map(str, paths)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stderr.count('StrictJpegUnavailableWarning') == 1, run.stderr
    assert 'raw decoded' in run.stderr
    assert 'corrupt JPEGs are matched instead of refused' in run.stderr
    assert 'pip install simplejpeg' in run.stderr
    strict = image_from_compressed_msg(SimpleNamespace(format='jpeg', data=jpeg))
    np.testing.assert_array_equal(np.load(str(paths[0]) + '.npy'), strict)
    assert np.load(str(paths[1]) + '.npy').shape == photo_bgr.shape


def test_empty_and_depth_compressed_images_are_reported():
    with pytest.raises(ImageError, match="empty compressed image"):
        image_from_compressed_msg(SimpleNamespace(format='jpeg', data=b''))
    with pytest.raises(ImageError, match='compressedDepth'):
        image_from_compressed_msg(SimpleNamespace(format='16UC1; compressedDepth png',
                                                  data=b'\x00' * 20))


def test_write_fields_check_the_layout(photo_bgr):
    with pytest.raises(ImageError, match=r'bgr8 needs an array of 3 channel\(s\) of uint8'):
        image_to_msg_fields(encode(photo_bgr, 'mono8'), 'bgr8')
    with pytest.raises(ImageError, match="cannot write encoding 'jpeg'"):
        image_to_msg_fields(photo_bgr, 'jpeg')
    fields = image_to_msg_fields(photo_bgr[::2, ::2], 'bgr8')
    assert (fields['height'], fields['width'], fields['step']) == (49, 65, 195)
    assert fields['data'].size == 49 * 195
