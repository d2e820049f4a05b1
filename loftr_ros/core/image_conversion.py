"""sensor_msgs/Image and CompressedImage <-> NumPy, without cv_bridge or message packages.

The functions read and write plain attributes (``encoding height width step is_bigendian
data`` and ``format data``), so they serve rclpy messages, rosbags-deserialized messages and
anything shaped like them. Images come out as the matcher takes them: HxW mono or HxWx3 BGR
(OpenCV order), dtype uint8, uint16 or float32.

Layouts that need no conversion (mono8, 8UC1, bgr8, 8UC3, native-endian mono16/16UC1/32FC1)
are returned as zero-copy views of the message buffer, with ``step`` padding skipped through
strides; everything else (colour order, alpha, Bayer, YUV 4:2:2, byte swapping) is converted.
"""
import sys
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from loftr_ros.core.errors import ImageError


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


def image_from_msg(msg) -> np.ndarray:
    """Pixels of a sensor_msgs/Image as HxW mono or HxWx3 BGR (uint8, uint16 or float32).

    A zero-copy view of ``msg.data`` where the layout allows (keep the message alive while the
    view is used); ImageError naming the cause for unsupported encodings and for data whose
    size disagrees with width/height/step.
    """
    layout = _layout(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        msg_text = f'empty image ({width}x{height}, encoding {msg.encoding})'
        raise ImageError(msg_text)
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


def image_from_compressed_msg(msg) -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage (JPEG or PNG, as image_transport's `compressed`
    plugin writes them) to HxW mono (uint8/uint16) or HxWx3 BGR uint8."""
    fmt = str(msg.format)
    if 'compressedDepth' in fmt:
        msg_text = (f"unsupported compressed format '{fmt}' (compressedDepth); "
                    f"use the raw depth topic")
        raise ImageError(msg_text)
    data = np.frombuffer(msg.data, np.uint8)
    if data.size == 0:
        msg_text = f"empty compressed image (format '{fmt}')"
        raise ImageError(msg_text)
    # libjpeg decodes a cut-off JPEG into a partly grey image with only a warning on stderr;
    # the missing end-of-image marker is what tells.
    if data[:2].tobytes() == b'\xff\xd8' and b'\xff\xd9' not in data[-16:].tobytes():
        msg_text = f"truncated JPEG: no end-of-image marker in {data.size} bytes (format '{fmt}')"
        raise ImageError(msg_text)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        msg_text = (f"corrupt or unsupported compressed image: OpenCV cannot decode "
                    f"{data.size} bytes (format '{fmt}')")
        raise ImageError(msg_text)
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    elif image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
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
