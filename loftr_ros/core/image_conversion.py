"""sensor_msgs/Image and CompressedImage <-> NumPy, without cv_bridge or message packages.

The functions read and write plain attributes (``encoding height width step is_bigendian
data`` and ``format data``), so they serve rclpy messages, rosbags-deserialized messages and
anything shaped like them. Images come out as the matcher takes them: HxW mono or HxWx3 BGR
(OpenCV order), dtype uint8, uint16 or float32.

Layouts that need no conversion (mono8, 8UC1, bgr8, 8UC3, native-endian mono16/16UC1/32FC1)
are returned as zero-copy views of the message buffer, with ``step`` padding skipped through
strides; everything else (colour order, alpha, Bayer, YUV 4:2:2, byte swapping) is converted.

Sizes are checked against an optional pixel limit before anything is converted or decoded
(ImageTooLargeError); a compressed image is held to the size its header declares, by the
decoder's own reading of it before decoding and by the decoded shape after. Compressed images
are JPEG or PNG only, decoded by decoders that report every error instead of printing it: JPEG
by libjpeg-turbo through simplejpeg in strict mode (corrupt scan data that libjpeg would decode
with a warning is refused), PNG by Pillow (CRC, zlib and truncation errors). OpenCV's decoders
print libjpeg's and libpng's messages on stderr for every bad frame, outside any throttling, and
decode corrupt JPEG data silently. Where simplejpeg is not installed (it has no rosdep key),
JPEG is decoded by Pillow, as quietly and to the same pixels, but corrupt scan data with it:
a StrictJpegUnavailableWarning says so once.
"""
import io
import sys
import threading
import warnings
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np
from PIL import JpegImagePlugin, PngImagePlugin

from loftr_ros.core.errors import ImageError, ImageTooLargeError
from loftr_ros.core.image_headers import ImageHeader, read_image_header
from loftr_ros.core.preprocessing import check_image_pixels


def _cv2_code(*names):
    """The first of several OpenCV constant names that exists (OpenCV 5 added unambiguous Bayer
    names; OpenCV 4 only has the two-letter ones, which name the pattern one pixel in)."""
    for name in names:
        if hasattr(cv2, name):
            return getattr(cv2, name)
    raise AttributeError(f'OpenCV has none of {names}')


@dataclass(frozen=True)
class _Layout:
    dtype: str        # NumPy dtype of one channel (little-endian form)
    channels: int     # channels in the message buffer
    conversion: Optional[int] = None  # cv2.cvtColor code to mono/BGR; None: used as is


_LAYOUTS = {
    'mono8': _Layout('u1', 1),
    '8UC1': _Layout('u1', 1),
    'mono16': _Layout('<u2', 1),
    '16UC1': _Layout('<u2', 1),
    '32FC1': _Layout('<f4', 1),
    'bgr8': _Layout('u1', 3),
    '8UC3': _Layout('u1', 3),
    'rgb8': _Layout('u1', 3, cv2.COLOR_RGB2BGR),
    'bgra8': _Layout('u1', 4, cv2.COLOR_BGRA2BGR),
    'rgba8': _Layout('u1', 4, cv2.COLOR_RGBA2BGR),
    'bayer_rggb8': _Layout('u1', 1, _cv2_code('COLOR_BAYER_RGGB2BGR', 'COLOR_BayerBG2BGR')),
    'bayer_bggr8': _Layout('u1', 1, _cv2_code('COLOR_BAYER_BGGR2BGR', 'COLOR_BayerRG2BGR')),
    'bayer_gbrg8': _Layout('u1', 1, _cv2_code('COLOR_BAYER_GBRG2BGR', 'COLOR_BayerGR2BGR')),
    'bayer_grbg8': _Layout('u1', 1, _cv2_code('COLOR_BAYER_GRBG2BGR', 'COLOR_BayerGB2BGR')),
    # yuv422 is UYVY in ROS (sensor_msgs/image_encodings.hpp); yuv422_yuy2 is YUYV.
    'yuv422': _Layout('u1', 2, cv2.COLOR_YUV2BGR_UYVY),
    'uyvy': _Layout('u1', 2, cv2.COLOR_YUV2BGR_UYVY),
    'yuv422_yuy2': _Layout('u1', 2, cv2.COLOR_YUV2BGR_YUYV),
    'yuyv': _Layout('u1', 2, cv2.COLOR_YUV2BGR_YUYV),
}

SUPPORTED_ENCODINGS = tuple(_LAYOUTS)
_NATIVE_BIG_ENDIAN = sys.byteorder == 'big'


def _layout(encoding: str) -> _Layout:
    try:
        return _LAYOUTS[encoding]
    except KeyError:
        msg = (f"unsupported encoding '{encoding}'; supported: "
               f"{', '.join(SUPPORTED_ENCODINGS)}")
        raise ImageError(msg) from None


def image_from_msg(msg, max_pixels: Optional[int] = None) -> np.ndarray:
    """Pixels of a sensor_msgs/Image as HxW mono or HxWx3 BGR (uint8, uint16 or float32).

    A zero-copy view of ``msg.data`` where the layout allows (keep the message alive while the
    view is used); ImageError naming the cause for unsupported encodings and for data whose
    size disagrees with width/height/step; ImageTooLargeError above `max_pixels`, before any
    conversion.
    """
    layout = _layout(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        msg_text = f'empty image ({width}x{height}, encoding {msg.encoding})'
        raise ImageError(msg_text)
    check_image_pixels(width, height, max_pixels, f'{msg.encoding} image')
    dtype = np.dtype(layout.dtype)
    if msg.is_bigendian and dtype.itemsize > 1:
        dtype = dtype.newbyteorder('>')
    pixel_bytes = dtype.itemsize * layout.channels
    row_bytes = width * pixel_bytes
    if layout.conversion in (cv2.COLOR_YUV2BGR_UYVY, cv2.COLOR_YUV2BGR_YUYV) and width % 2:
        msg_text = f'{msg.encoding} needs an even width, got {width}'
        raise ImageError(msg_text)
    if step < row_bytes:
        msg_text = (f'step {step} is smaller than a row of {width} {msg.encoding} pixels '
                    f'({row_bytes} bytes)')
        raise ImageError(msg_text)
    size = len(memoryview(msg.data).cast('B'))
    if size != step * height:
        cause = 'truncated data' if size < step * height else 'data larger than the image'
        msg_text = (f'{cause}: {size} bytes, but height {height} x step {step} = '
                    f'{step * height} ({width}x{height} {msg.encoding})')
        raise ImageError(msg_text)

    shape = (height, width) if layout.channels == 1 else (height, width, layout.channels)
    strides = (step, pixel_bytes) if layout.channels == 1 else (step, pixel_bytes,
                                                                dtype.itemsize)
    image = np.ndarray(shape, dtype=dtype, buffer=msg.data, strides=strides)
    if dtype.byteorder not in ('=', '|') and (dtype.byteorder == '>') != _NATIVE_BIG_ENDIAN:
        image = image.astype(dtype.newbyteorder('='))
    if layout.conversion is not None:
        # cvtColor needs contiguous rows; a padded view is copied once here.
        image = cv2.cvtColor(np.ascontiguousarray(image), layout.conversion)
    return image


def image_from_compressed_msg(msg, max_pixels: Optional[int] = None,
                              max_bytes: Optional[int] = None) -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage (JPEG or PNG, as image_transport's `compressed`
    plugin writes them) to HxW mono (uint8/uint16) or HxWx3 BGR uint8.

    ImageTooLargeError for more than `max_bytes` of data, or a header that declares more than
    `max_pixels`, before anything is decoded; ImageError naming the cause for anything that is
    not a JPEG or PNG, and for data the decoder finds corrupt (even where it could decode it).
    """
    fmt = str(msg.format)
    if 'compressedDepth' in fmt:
        msg_text = (f"unsupported compressed format '{fmt}' (compressedDepth); "
                    f"use the raw depth topic")
        raise ImageError(msg_text)
    data = np.frombuffer(msg.data, np.uint8)
    if data.size == 0:
        msg_text = f"empty compressed image (format '{fmt}')"
        raise ImageError(msg_text)
    if max_bytes is not None and data.size > max_bytes:
        msg_text = (f'{data.size} bytes of compressed image, above the limit '
                    f'max_compressed_bytes = {max_bytes}')
        raise ImageTooLargeError(msg_text)
    try:
        header = read_image_header(data)
    except ImageError as error:
        raise ImageError(f"{error} (format '{fmt}')") from None
    check_image_pixels(header.width, header.height, max_pixels, header.format.upper())
    decode = _decode_jpeg if header.format == 'jpeg' else _decode_png
    image = decode(data, header, fmt)
    # The decoders were held to the header's size before they decoded; this holds them to it
    # after, whatever their parsers read differently from the header walk.
    if image.shape[:2] != (header.height, header.width):
        msg_text = (f'{header.format.upper()} decoded to {image.shape[1]}x{image.shape[0]}, '
                    f'but its header declares {header.width}x{header.height} (format '
                    f"'{fmt}')")
        raise ImageError(msg_text)
    return image


def _check_decoder_size(header: ImageHeader, size, decoder: str, fmt: str):
    """ImageError unless the (width, height) `decoder` read from the data before decoding is
    the header's, which passed the pixel limit: a second frame header or IHDR the walk did not
    see would otherwise decode to any size."""
    if tuple(size) != (header.width, header.height):
        msg_text = (f'{header.format.upper()} header declares {header.width}x{header.height}, '
                    f"but {decoder} reads {size[0]}x{size[1]} (format '{fmt}')")
        raise ImageError(msg_text)


class StrictJpegUnavailableWarning(UserWarning):
    """simplejpeg is not installed: JPEG images are decoded without detecting corrupt data."""


STRICT_JPEG_UNAVAILABLE = (
    'simplejpeg is not installed: JPEG images are decoded by Pillow, which decodes corrupt scan '
    'data around the damage, so corrupt JPEGs are matched instead of refused and counted as '
    'bad_image. To detect them: pip install simplejpeg (where pip refuses the system Python, '
    'PEP 668: pip install --user --break-system-packages simplejpeg, or a virtual environment '
    'created with --system-site-packages)')
_strict_jpeg_lock = threading.Lock()
# simplejpeg, or False where it is missing; None until the first JPEG.
_strict_jpeg_module = None


def _strict_jpeg_decoder():
    """simplejpeg, imported on the first JPEG (raw images and PNG never need it; it has no
    rosdep key, so a colcon workspace may lack it), or None where it is missing: warned once
    per process (StrictJpegUnavailableWarning)."""
    global _strict_jpeg_module
    with _strict_jpeg_lock:
        if _strict_jpeg_module is None:
            try:
                import simplejpeg
                _strict_jpeg_module = simplejpeg
            except ImportError:
                warnings.warn(STRICT_JPEG_UNAVAILABLE, StrictJpegUnavailableWarning,
                              stacklevel=4)
                _strict_jpeg_module = False
    return _strict_jpeg_module or None


def _decode_jpeg(data: np.ndarray, header: ImageHeader, fmt: str) -> np.ndarray:
    # libjpeg decodes a cut-off JPEG into a partly grey image with only a warning; the missing
    # end-of-image marker names the cause best.
    if b'\xff\xd9' not in data[-16:].tobytes():
        msg_text = f"truncated JPEG: no end-of-image marker in {data.size} bytes (format '{fmt}')"
        raise ImageError(msg_text)
    if header.channels not in (1, 3):
        msg_text = (f'JPEG with {header.channels} colour components (CMYK?): not a camera '
                    f"image format; send mono or colour JPEG (format '{fmt}')")
        raise ImageError(msg_text)
    simplejpeg = _strict_jpeg_decoder()
    if simplejpeg is None:
        return _decode_with_pillow(JpegImagePlugin.JpegImageFile, data, header, fmt)
    try:
        # strict: libjpeg's warnings (corrupt data it would decode around) raise too.
        height, width, _, _ = simplejpeg.decode_jpeg_header(data, strict=True)
        _check_decoder_size(header, (width, height), 'libjpeg', fmt)
        image = simplejpeg.decode_jpeg(data, colorspace='GRAY' if header.channels == 1 else 'BGR',
                                       strict=True)
    except ValueError as error:
        msg_text = f"corrupt JPEG: {error} ({data.size} bytes, format '{fmt}')"
        raise ImageError(msg_text) from None
    return image[:, :, 0] if header.channels == 1 else image


def _decode_png(data: np.ndarray, header: ImageHeader, fmt: str) -> np.ndarray:
    return _decode_with_pillow(PngImagePlugin.PngImageFile, data, header, fmt)


def _decode_with_pillow(plugin, data: np.ndarray, header: ImageHeader, fmt: str) -> np.ndarray:
    """Decode with Pillow's PNG or JPEG plugin: its size checked before load(), the image
    returned as HxW mono or HxWx3 BGR."""
    kind = header.format.upper()
    try:
        # The plugin itself rather than Image.open: Pillow's own bomb check there warns
        # (DecompressionBombWarning on stderr) or fails above its fixed MAX_IMAGE_PIXELS,
        # whatever max_image_pixels says; the size is checked here instead, before load().
        with plugin(io.BytesIO(data)) as decoded:
            _check_decoder_size(header, decoded.size, 'Pillow', fmt)
            decoded.load()
            if decoded.mode in ('1', 'P', 'LA', 'PA'):  # bilevel, palette, grey or palette + alpha
                decoded = decoded.convert('L' if decoded.mode in ('1', 'LA') else 'RGB')
            image = np.asarray(decoded)
    except ImageError:
        raise
    # The decoder reads hostile bytes: whatever it raises (OSError, SyntaxError, zlib.error,
    # ValueError, ...) means this image cannot be decoded.
    except Exception as error:  # noqa: BLE001
        msg_text = (f"corrupt {kind}: {type(error).__name__}: {error} ({data.size} bytes, "
                    f"format '{fmt}')")
        raise ImageError(msg_text) from None
    if image.ndim == 3:
        # RGB(A) -> BGR, dropping alpha as OpenCV does.
        image = np.ascontiguousarray(image[:, :, 2::-1])
    elif image.dtype != np.uint8:
        # 16-bit grey comes as I;16 (little-endian), I;16B or I (int32).
        image = image.astype(np.uint16)
    return image


def image_to_msg_fields(image: np.ndarray, encoding: str) -> dict:
    """Fields of a sensor_msgs/Image holding `image`, which must already be in the layout of
    `encoding` (e.g. HxWx3 uint8 for bgr8, HxWx2 for yuv422): no colour conversion here.

    Returns dict(encoding, height, width, step, is_bigendian, data) with `data` a contiguous
    1-D uint8 array (rosbags takes it as is; rclpy wants ``array.array('B', data.tobytes())``).
    """
    try:
        layout = _LAYOUTS[encoding]
    except KeyError:
        msg = (f"cannot write encoding '{encoding}'; writable: "
               f"{', '.join(SUPPORTED_ENCODINGS)}")
        raise ImageError(msg) from None
    # Written in this machine's byte order (is_bigendian says which).
    kind, channels = np.dtype(layout.dtype).newbyteorder('='), layout.channels
    image = np.asarray(image)
    expected_ndim = 2 if channels == 1 else 3
    if (image.ndim != expected_ndim or (channels > 1 and image.shape[2] != channels)
            or image.dtype != np.dtype(kind)):
        msg = (f'{encoding} needs an array of {channels} channel(s) of {np.dtype(kind)}, got '
               f'shape {image.shape} {image.dtype}')
        raise ImageError(msg)
    image = np.ascontiguousarray(image)
    height, width = image.shape[:2]
    return {
        'encoding': encoding,
        'height': height,
        'width': width,
        'step': width * channels * image.dtype.itemsize,
        'is_bigendian': int(_NATIVE_BIG_ENDIAN),
        'data': image.reshape(-1).view(np.uint8),
    }
