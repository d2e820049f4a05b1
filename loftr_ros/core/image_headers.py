"""The size of a compressed image from its header, read before anything is decoded.

A 20000x20000 PNG is a few hundred kilobytes and decodes to gigabytes: the size the format
header declares is what a limit can check first. Only the two formats of image_transport's
`compressed` plugin are read, PNG (the IHDR chunk, which must come first and be the only one:
the chunk headers are walked) and JPEG (the SOFn frame header, which must be the only one: the
marker segments are walked to the end, counting the scans); any bytes, garbage or cut short,
give a header or an ImageError, never another exception. Structures that cost the decoder
far more than their size (thousands of chunks or scans) are refused here too.
"""
import re
import struct
from dataclasses import dataclass

import numpy as np

from loftr_ros.core.errors import ImageError

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
JPEG_SOI = b'\xff\xd8'
# Chunks in a PNG at most: MAX_PNG_CHUNKS, plus one per PNG_BYTES_PER_CHUNK bytes of data.
# Pillow reads the chunks one by one in Python (~8 us each): a 64x64 PNG with a million empty
# chunks (11 MiB) took 8 s to decode. libpng (OpenCV, hence compressed_image_transport) writes the
# image data in IDAT chunks of 8 KiB, so a PNG of any size passes with room for 10,000 metadata
# chunks (cameras write a handful); at the default 64 MiB payload limit the walk and Pillow's
# loop stop after 18,192 chunks (~0.15 s).
MAX_PNG_CHUNKS = 10_000
PNG_BYTES_PER_CHUNK = 8192
# Start-of-frame markers (baseline, extended, progressive, lossless; Huffman or arithmetic).
# 0xC4 (DHT), 0xC8 (JPG) and 0xCC (DAC) share the range but are not frame headers.
_JPEG_SOF = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD,
                       0xCE, 0xCF))
_JPEG_EOI, _JPEG_SOS = 0xD9, 0xDA
# Markers without a length field: TEM and the restart markers (SOI and EOI end the walk).
_JPEG_STANDALONE = frozenset((0x01, *range(0xD0, 0xD8)))
# The end of entropy-coded data: the first 0xFF that is neither a stuffed 0xFF 0x00 nor a
# restart marker (RST0-7 belong to the scan): a marker, or the fill bytes before one.
_JPEG_SCAN_END = re.compile(rb'\xff[^\x00\xd0-\xd7]')
# Scans in a JPEG at most: a progressive JPEG has about 10. Each scan makes the decoder pass
# over the whole image again, so thousands of tiny scans cost minutes of CPU in a few bytes.
MAX_JPEG_SCANS = 100
# Marker segments at most, scans included: a JPEG has about 10, plus a table or two per
# progressive scan. The walk takes a Python step per segment, as many as 16 million tiny
# comment segments in a 64 MiB payload otherwise.
MAX_JPEG_SEGMENTS = 1000


@dataclass(frozen=True)
class ImageHeader:
    format: str        # 'png' or 'jpeg'
    width: int
    height: int
    channels: int      # as stored (a palette PNG has 1; a CMYK JPEG 4)
    bit_depth: int     # bits per channel sample

    @property
    def pixels(self) -> int:
        return self.width * self.height


def compressed_image_format(data) -> str:
    """'png' or 'jpeg' from the leading bytes, '' for anything else."""
    head = bytes(memoryview(data)[:8])
    if head == PNG_SIGNATURE:
        return 'png'
    if head[:2] == JPEG_SOI:
        return 'jpeg'
    return ''


def read_image_header(data) -> ImageHeader:
    """The header of PNG or JPEG `data` (any buffer); ImageError naming what is wrong when the
    bytes are neither, or the header is cut short or malformed."""
    view = memoryview(data).cast('B') if memoryview(data).format != 'B' else memoryview(data)
    kind = compressed_image_format(view)
    if kind == 'png':
        return _png_header(view)
    if kind == 'jpeg':
        return _jpeg_header(view)
    raise ImageError(f'neither PNG nor JPEG (starts with {bytes(view[:8]).hex(" ")})')


def _png_header(view: memoryview) -> ImageHeader:
    # Signature, then the IHDR chunk: length 13, type, width, height, depth, colour type, ...
    if len(view) < 8 + 8 + 13:
        raise ImageError(f'PNG cut short in its header ({len(view)} bytes)')
    length, kind, width, height, depth, colour = struct.unpack('>I4sIIBB', view[8:26])
    if kind != b'IHDR' or length != 13:
        raise ImageError('PNG does not start with an IHDR chunk')
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour)
    if channels is None or depth not in (1, 2, 4, 8, 16):
        raise ImageError(f'PNG header has colour type {colour} and bit depth {depth}')
    if not 0 < width < 2**31 or not 0 < height < 2**31:
        raise ImageError(f'PNG header declares a {width}x{height} image')
    _walk_png_chunks(view)
    return ImageHeader('png', width, height, channels, depth)


def _walk_png_chunks(view: memoryview):
    """Read the chunk headers after IHDR (skipping their data by length) up to IEND or the end
    of the data; ImageError for a second IHDR (Pillow takes the size of the last IHDR before
    the image data, so a small first IHDR would hide the size that is decoded) and for more
    chunks than :data:`MAX_PNG_CHUNKS` allows. A chunk cut short ends the walk quietly: the
    decoder names the truncation."""
    position, chunks = 8 + 12 + 13, 1
    most = MAX_PNG_CHUNKS + len(view) // PNG_BYTES_PER_CHUNK
    while position + 8 <= len(view):
        length, kind = struct.unpack_from('>I4s', view, position)
        if kind == b'IHDR':
            raise ImageError(f'PNG with a second IHDR chunk at byte {position}')
        if kind == b'IEND':
            return
        chunks += 1
        if chunks > most:
            raise ImageError(f'PNG with more than {most} chunks, the limit for {len(view)} '
                             f'bytes ({MAX_PNG_CHUNKS} + one per {PNG_BYTES_PER_CHUNK} bytes)')
        position += 12 + length


def _jpeg_header(view: memoryview) -> ImageHeader:
    """The frame header of a JPEG, from a walk over all its marker segments (skipped by their
    length; after a scan header, the entropy-coded data up to the next marker): the scans are
    counted where they are, not in the bytes of an EXIF or ICC payload."""
    header, scans, segments = None, 0, 0
    position, size = 2, len(view)
    array = np.frombuffer(view, np.uint8)
    while position < size:
        if view[position] != 0xFF:
            raise ImageError(f'JPEG header is corrupt: no marker at byte {position}')
        position = _marker_start(array, position)
        if position + 1 >= size:
            break
        marker = view[position + 1]
        if marker in _JPEG_STANDALONE:
            position += 2
            continue
        if marker == _JPEG_EOI and header is not None:
            break
        if marker in (0x00, 0xD8, _JPEG_EOI):  # no marker code, a second SOI, EOI too early
            where = f'at byte {position}' if header is not None else 'before any frame'
            raise ImageError(f'JPEG header is corrupt: marker 0x{marker:02X} {where}')
        if position + 4 > size:
            break
        length = (view[position + 2] << 8) | view[position + 3]
        if length < 2:
            raise ImageError(f'JPEG header is corrupt: segment length {length} at byte '
                             f'{position}')
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            raise ImageError(f'JPEG with more than {MAX_JPEG_SEGMENTS} marker segments')
        if marker in _JPEG_SOF:
            if header is not None:
                raise ImageError(f'JPEG with a second frame header at byte {position}')
            if position + 10 > size or length < 8:
                break
            depth, height, width, channels = struct.unpack(
                '>BHHB', view[position + 4:position + 10])
            if height == 0 or width == 0:
                # Height 0 defers it to a DNL marker after the scan, which no decoder here
                # supports: the size is unknown until then.
                raise ImageError(f'JPEG frame header declares a {width}x{height} image')
            header = ImageHeader('jpeg', width, height, channels, depth)
        elif marker == _JPEG_SOS:
            if header is None:
                raise ImageError('JPEG has no frame header before its scan data')
            scans += 1
            if scans > MAX_JPEG_SCANS:
                raise ImageError(f'JPEG with more than {MAX_JPEG_SCANS} scans')
            scan_end = _JPEG_SCAN_END.search(view, position + 2 + length)
            if scan_end is None:
                break  # cut short in the scan: the decoder names it
            position = scan_end.start()
            continue
        position += 2 + length
    if header is None:
        raise ImageError(f'JPEG cut short before its frame header ({size} bytes)')
    return header


def _marker_start(array, position: int) -> int:
    """Where the marker whose fill bytes start at `position` starts: the last 0xFF of the run
    of 0xFF there (a marker may follow any number of fill bytes), or the end of the data. Read
    in windows that double: a hostile run of megabytes costs NumPy time, not a Python or regex
    step per byte."""
    start, window = position, 16
    while start < len(array):
        others = np.flatnonzero(array[start:start + window] != 0xFF)
        if others.size:
            return start + int(others[0]) - 1
        start += window
        window *= 2
    return len(array) - 1
