"""sensor_msgs Image, CompressedImage and CameraInfo bytes to numpy; Image, CameraInfo to bytes.

The frame-camera side of a recording (APS frames, RGB or depth cameras beside the event
sensor) arrives as these three types. Decoding returns the pixels as a numpy view into the
message bytes where the layout allows, so a 1280x720 frame costs a header parse, not a copy.
`image_to_rgb` and `image_to_gray` turn any supported encoding into the uint8 arrays that the
perception pipeline consumes.
"""

from dataclasses import dataclass
import zlib

import cv2
import numpy as np

from .cdr import CdrReader, CdrWriter, subfield, WireError
from .std import Header, read_header, write_header

IMAGE = 'sensor_msgs/msg/Image'
COMPRESSED_IMAGE = 'sensor_msgs/msg/CompressedImage'
CAMERA_INFO = 'sensor_msgs/msg/CameraInfo'

# encoding -> (dtype, channels, colour layout). Names follow sensor_msgs/image_encodings.hpp.
_NAMED = {
    'mono8': ('u1', 1, 'gray'), 'mono16': ('u2', 1, 'gray'),
    'rgb8': ('u1', 3, 'rgb'), 'bgr8': ('u1', 3, 'bgr'),
    'rgba8': ('u1', 4, 'rgba'), 'bgra8': ('u1', 4, 'bgra'),
    'rgb16': ('u2', 3, 'rgb'), 'bgr16': ('u2', 3, 'bgr'),
    'rgba16': ('u2', 4, 'rgba'), 'bgra16': ('u2', 4, 'bgra'),
    # UYVY and YUYV 4:2:2, two bytes a pixel (usb_cam and friends).
    'yuv422': ('u1', 2, 'uyvy'), 'yuv422_yuy2': ('u1', 2, 'yuyv'),
}
for _bits, _dtype in (('8', 'u1'), ('16', 'u2')):
    for _pattern in ('rggb', 'bggr', 'gbrg', 'grbg'):
        _NAMED[f'bayer_{_pattern}{_bits}'] = (_dtype, 1, f'bayer_{_pattern}')
# Generic OpenCV-style encodings. Three and four channels are taken as BGR(A): such
# messages nearly always come from a cv::Mat, whose colour order is BGR.
_DEPTHS = {'8U': 'u1', '8S': 'i1', '16U': 'u2', '16S': 'i2', '32S': 'i4', '32F': 'f4',
           '64F': 'f8'}
_GENERIC = {f'{depth}C{c}': (dtype, c, layout) for depth, dtype in _DEPTHS.items()
            for c, layout in ((1, 'gray'), (3, 'bgr'), (4, 'bgra'))}
ENCODINGS = {name: (np.dtype(d), c, layout)
             for name, (d, c, layout) in {**_NAMED, **_GENERIC}.items()}

# The mosaic's top-left 2x2 in ROS naming maps to OpenCV's name for the pattern one pixel
# down and right (what cv_bridge does; checked in the tests against a synthetic mosaic).
_BAYER_TO_RGB = {'bayer_rggb': cv2.COLOR_BayerBG2RGB, 'bayer_bggr': cv2.COLOR_BayerRG2RGB,
                 'bayer_gbrg': cv2.COLOR_BayerGR2RGB, 'bayer_grbg': cv2.COLOR_BayerGB2RGB}
_TO_RGB = {'gray': cv2.COLOR_GRAY2RGB, 'bgr': cv2.COLOR_BGR2RGB, 'rgba': cv2.COLOR_RGBA2RGB,
           'bgra': cv2.COLOR_BGRA2RGB}
_YUV_TO_RGB = {'uyvy': cv2.COLOR_YUV2RGB_UYVY, 'yuyv': cv2.COLOR_YUV2RGB_YUY2}


def bytes_per_pixel(encoding):
    """Bytes one pixel of `encoding` takes; WireError (offset unknown) if unsupported."""
    if encoding not in ENCODINGS:
        raise WireError(IMAGE, 'encoding', None, f'unsupported encoding {encoding!r}')
    dtype, channels, _ = ENCODINGS[encoding]
    return dtype.itemsize * channels


@dataclass
class Image:
    """A decoded sensor_msgs/msg/Image.

    `array` is (H, W) for one channel, else (H, W, C), in the encoding's dtype and native
    byte order. Little-endian pixel data is a read-only view into the message bytes (row
    padding skipped by strides, so it need not be C-contiguous); the view holds a reference
    to those bytes, keeping them alive. Big-endian multi-byte data is a byte-swapped copy.
    """

    header: Header
    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    array: np.ndarray  # (H, W) or (H, W, C), dtype per ENCODINGS


def decode_image(data):
    """Decode serialized sensor_msgs/msg/Image bytes (with CDR header) into an Image."""
    reader = CdrReader(data, IMAGE)
    header = read_header(reader)
    height = reader.u32('height')
    reader.align(4)
    width_at = reader.pos
    width = reader.u32('width')
    reader.align(4)
    encoding_at = reader.pos
    encoding = reader.string('encoding')
    is_bigendian = reader.u8('is_bigendian')
    reader.align(4)
    step_at = reader.pos
    step = reader.u32('step')
    nbytes = reader.length('data', 1)
    start = reader.pos
    reader.pos += nbytes
    reader.done()

    if encoding not in ENCODINGS:
        raise WireError(IMAGE, 'encoding', encoding_at, f'unsupported encoding {encoding!r}')
    dtype, channels, layout = ENCODINGS[encoding]
    if layout in _YUV_TO_RGB and width % 2:
        raise WireError(IMAGE, 'width', width_at, f'{encoding} needs an even width, not {width}')
    pixel_bytes = channels * dtype.itemsize
    if step < width * pixel_bytes:
        raise WireError(IMAGE, 'step', step_at,
                        f'step {step} < width {width} * {pixel_bytes} bytes a pixel')
    if nbytes != height * step:
        raise WireError(IMAGE, 'data', start - 4,
                        f'{nbytes} bytes, expected height {height} * step {step}')
    shape = (height, width) if channels == 1 else (height, width, channels)
    strides = (step, pixel_bytes, dtype.itemsize)[:len(shape)]
    wire_dtype = dtype.newbyteorder('>' if is_bigendian else '<')
    array = np.ndarray(shape, wire_dtype, buffer=reader.buf, offset=start, strides=strides)
    if not wire_dtype.isnative:
        array = array.astype(dtype.newbyteorder('='))
    array.flags.writeable = False
    return Image(header, height, width, encoding, is_bigendian, step, array)


def encode_image(header, array, encoding):
    """Serialize an (H, W) or (H, W, C) array as a sensor_msgs/msg/Image in `encoding`.

    The array's dtype must be the encoding's (any byte order); it is written little-endian,
    unpadded (step = width * bytes per pixel, is_bigendian = 0).
    """
    array = np.asarray(array)
    if encoding not in ENCODINGS:
        raise WireError(IMAGE, 'encoding', None, f'unsupported encoding {encoding!r}')
    dtype, channels, layout = ENCODINGS[encoding]
    if array.ndim == 2 and channels == 1:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] != channels or array.dtype.base.kind != dtype.kind \
            or array.dtype.itemsize != dtype.itemsize:
        raise WireError(IMAGE, 'data', None,
                        f'{encoding} needs (H, W{"" if channels == 1 else f", {channels}"}) '
                        f'{dtype}, got {array.shape} {array.dtype}')
    height, width = array.shape[:2]
    if layout in _YUV_TO_RGB and width % 2:
        raise WireError(IMAGE, 'width', None, f'{encoding} needs an even width, not {width}')
    pixels = np.ascontiguousarray(array, dtype=dtype.newbyteorder('<'))
    writer = CdrWriter(IMAGE)
    write_header(writer, header)
    writer.u32(height, 'height')
    writer.u32(width, 'width')
    writer.string(encoding, 'encoding')
    writer.u8(0, 'is_bigendian')
    writer.u32(width * channels * dtype.itemsize, 'step')
    writer.u32(pixels.nbytes, 'data')
    return b''.join((writer.buf, pixels.reshape(-1).view(np.uint8)))


def _to_uint8(array, value_range):
    """Map pixel values linearly onto 0..255 (see image_to_rgb for the default range)."""
    if value_range is None:
        if array.dtype == np.uint8:
            return array
        if array.dtype.kind in 'iu':
            info = np.iinfo(array.dtype)
            value_range = (info.min, info.max)
        else:
            finite = array[np.isfinite(array)]
            value_range = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    lo, hi = float(value_range[0]), float(value_range[1])
    work = np.float64 if array.dtype == np.float64 else np.float32
    with np.errstate(all='ignore'):
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        out = (array.astype(work) - work(lo)) * work(scale) + work(0.5)
        np.clip(out, 0, 255, out=out)
        if out.dtype.kind == 'f':
            out[np.isnan(out)] = 0
    return out.astype(np.uint8)


def image_to_rgb(image, value_range=None):
    """Convert a decoded Image (or CompressedImage) to a new (H, W, 3) uint8 RGB array.

    `value_range` (lo, hi) maps lo -> 0 and hi -> 255 linearly, clipping outside. Without
    it uint8 data is kept as is, other integers use their dtype's full range (mono16 65535
    -> 255, so that frames are scaled alike and do not flicker) and floats the finite
    min..max of this image (depth in metres, whatever its span). NaN becomes 0. Alpha is
    dropped, Bayer mosaics are demosaiced by OpenCV (bilinear, before scaling) and YUV 4:2:2
    is converted by OpenCV (8-bit already: `value_range` does not apply).
    """
    array = image.array
    _, _, layout = ENCODINGS[image.encoding]
    if array.size == 0:  # OpenCV refuses empty images
        return np.zeros(array.shape[:2] + (3,), np.uint8)
    if layout in _YUV_TO_RGB:
        return cv2.cvtColor(np.ascontiguousarray(array), _YUV_TO_RGB[layout])
    if layout in _BAYER_TO_RGB:
        array = cv2.cvtColor(np.ascontiguousarray(array), _BAYER_TO_RGB[layout])
        layout = 'rgb'
    pixels = _to_uint8(array, value_range)
    if layout == 'rgb':
        return np.array(pixels, order='C')  # a copy even when pixels is the message's view
    return cv2.cvtColor(np.ascontiguousarray(pixels), _TO_RGB[layout])


def image_to_gray(image, value_range=None):
    """Convert a decoded Image (or CompressedImage) to a new (H, W) uint8 grey array.

    Scaling as in image_to_rgb; colour becomes grey by OpenCV's BT.601 luma weights.
    """
    if ENCODINGS[image.encoding][2] == 'gray' or image.array.size == 0:
        return np.array(_to_uint8(image.array[..., 0] if image.array.ndim == 3
                                  else image.array, value_range), order='C')
    return cv2.cvtColor(image_to_rgb(image, value_range), cv2.COLOR_RGB2GRAY)


@dataclass
class CompressedImage:
    """A decoded sensor_msgs/msg/CompressedImage.

    `data` is a read-only view of the compressed payload in the message bytes. `array` holds
    the pixels decoded by OpenCV in RGB(A) order (grey stays (H, W); 16-bit PNG stays
    uint16), and `encoding` names that array's layout (mono8, mono16, rgb8, rgb16, rgba8,
    rgba16), so image_to_rgb and image_to_gray accept a CompressedImage too. Both are None
    when decoding the pixels was not asked for.
    """

    header: Header
    format_string: str  # the message's `format`: 'jpeg', 'rgb8; jpeg compressed bgr8', ...
    data: np.ndarray  # (N,) uint8
    encoding: str = None
    array: np.ndarray = None  # (H, W) or (H, W, 3 | 4) uint8 | uint16


# Default cap: enough for 8K frames. OpenCV allocates what the file header claims before it
# finds out that the data is short, so a corrupt header must be checked first.
MAX_COMPRESSED_PIXELS = 1 << 26
_SIGNATURES = {'jpeg': b'\xff\xd8\xff', 'png': b'\x89PNG\r\n\x1a\n'}


def compression_of(format_string):
    """Name the codec ('jpeg' or 'png') of an image_transport `format` string, else None.

    Recognises the bare forms ('jpeg', 'jpg', 'png') and compressed_image_transport's
    '<encoding>; <codec> compressed <target>'.
    """
    text = format_string.strip().lower()
    if ';' in text:
        text = text.split(';', 1)[1].strip()
    codec = text.split(' ', 1)[0]
    codec = {'jpg': 'jpeg'}.get(codec, codec)
    return codec if codec in _SIGNATURES else None


def _jpeg_size(payload):
    """Return (height, width) from the first SOF segment, or None where the walk fails."""
    pos, end = 2, len(payload)
    while pos + 4 <= end:
        if payload[pos] != 0xFF:
            return None
        marker = payload[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # segments without a length
            pos += 2
        elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 9 > end:
                return None
            return (int.from_bytes(payload[pos + 5:pos + 7], 'big'),
                    int.from_bytes(payload[pos + 7:pos + 9], 'big'))
        else:
            pos += 2 + int.from_bytes(payload[pos + 2:pos + 4], 'big')
    return None


def _png_size(payload):
    """Return (height, width) from IHDR after checking every chunk's length and CRC.

    libpng inside OpenCV can spend seconds on a damaged stream before giving up, so a PNG
    reaches it only when its chunk structure is intact: IHDR first, IEND last, every CRC right.
    Returns None where the structure is broken.
    """
    pos, end, size = 8, len(payload), None
    while pos + 12 <= end:
        length = int.from_bytes(payload[pos:pos + 4], 'big')
        kind = payload[pos + 4:pos + 8]
        stop = pos + 8 + length
        if stop + 4 > end:
            return None
        if zlib.crc32(payload[pos + 4:stop]) != int.from_bytes(payload[stop:stop + 4], 'big'):
            return None
        if size is None:
            if kind != b'IHDR' or length < 8:
                return None
            size = (int.from_bytes(payload[pos + 12:pos + 16], 'big'),
                    int.from_bytes(payload[pos + 8:pos + 12], 'big'))
        if kind == b'IEND':
            return size
        pos = stop + 4
    return None


def _decode_pixels(payload, format_string, format_at, offset, max_pixels):
    codec = compression_of(format_string)
    if codec is None:
        raise WireError(COMPRESSED_IMAGE, 'format', format_at,
                        f'unsupported format {format_string!r} (jpeg and png are)')

    def corrupt(problem):
        return WireError(COMPRESSED_IMAGE, 'data', offset, f'{codec}: {problem}')

    raw = payload.tobytes()
    if not raw.startswith(_SIGNATURES[codec]):
        raise corrupt('payload lacks the file signature')
    size = _png_size(raw) if codec == 'png' else _jpeg_size(raw)
    if size is None:
        raise corrupt('no intact image header found' if codec == 'jpeg'
                      else 'broken chunk structure (length, CRC, IHDR or IEND)')
    if size[0] * size[1] > max_pixels:
        raise corrupt(f'header claims {size[1]}x{size[0]} pixels, over max_pixels {max_pixels}')
    try:
        pixels = cv2.imdecode(payload, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise corrupt(f'OpenCV cannot decode it ({exc.err})') from None
    if pixels is None or pixels.size == 0:
        raise corrupt('OpenCV cannot decode it')
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    if channels in (3, 4):
        pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB if channels == 3 else cv2.COLOR_BGRA2RGBA)
    elif channels != 1:
        raise corrupt(f'{channels} channels decoded')
    name = {1: 'mono', 3: 'rgb', 4: 'rgba'}[channels]
    bits = {np.dtype(np.uint8): '8', np.dtype(np.uint16): '16'}.get(pixels.dtype)
    if bits is None:
        raise corrupt(f'decoded to {pixels.dtype}, not 8 or 16 bits')
    return name + bits, pixels


def decode_compressed_image(data, decode_pixels=True, max_pixels=MAX_COMPRESSED_PIXELS):
    """Decode serialized sensor_msgs/msg/CompressedImage bytes, pixels included by default.

    A payload whose header claims more than `max_pixels` pixels is refused (WireError)
    before OpenCV allocates for it.
    """
    reader = CdrReader(data, COMPRESSED_IMAGE)
    header = read_header(reader)
    reader.align(4)
    format_at = reader.pos
    format_string = reader.string('format')
    reader.align(4)
    data_at = reader.pos
    payload = reader.sequence('data', np.uint8)
    reader.done()
    payload.flags.writeable = False
    image = CompressedImage(header, format_string, payload)
    if decode_pixels:
        image.encoding, image.array = _decode_pixels(payload, format_string, format_at,
                                                     data_at, max_pixels)
    return image


@dataclass
class RegionOfInterest:
    """sensor_msgs/msg/RegionOfInterest."""

    x_offset: int
    y_offset: int
    height: int
    width: int
    do_rectify: bool


@dataclass
class CameraInfo:
    """A decoded sensor_msgs/msg/CameraInfo; matrices are new native float64 arrays."""

    header: Header
    height: int
    width: int
    distortion_model: str
    d: np.ndarray  # (N,) float64, N = 5 for plumb_bob, 8 for rational_polynomial
    k: np.ndarray  # (3, 3) float64 intrinsics
    r: np.ndarray  # (3, 3) float64 rectification rotation
    p: np.ndarray  # (3, 4) float64 projection
    binning_x: int
    binning_y: int
    roi: RegionOfInterest


def decode_camera_info(data):
    """Decode serialized sensor_msgs/msg/CameraInfo bytes (with CDR header)."""
    reader = CdrReader(data, CAMERA_INFO)
    header = read_header(reader)
    height = reader.u32('height')
    width = reader.u32('width')
    distortion_model = reader.string('distortion_model')
    d = reader.sequence('d', np.float64).astype(np.float64)
    k = reader.array('k', np.float64, 9).astype(np.float64).reshape(3, 3)
    r = reader.array('r', np.float64, 9).astype(np.float64).reshape(3, 3)
    p = reader.array('p', np.float64, 12).astype(np.float64).reshape(3, 4)
    binning_x = reader.u32('binning_x')
    binning_y = reader.u32('binning_y')
    roi = RegionOfInterest(*(reader.u32(subfield('roi', name))
                             for name in ('x_offset', 'y_offset', 'height', 'width')),
                           reader.boolean(subfield('roi', 'do_rectify')))
    reader.done()
    return CameraInfo(header, height, width, distortion_model, d, k, r, p,
                      binning_x, binning_y, roi)


def _matrix(value, shape, name):
    array = np.asarray(value, np.float64)
    if array.size != shape[0] * shape[1]:
        raise WireError(CAMERA_INFO, name, None, f'needs {shape[0]}x{shape[1]} values, '
                        f'got shape {array.shape}')
    return np.ascontiguousarray(array.reshape(-1), '<f8')


def encode_camera_info(header, height, width, k, p=None, d=None, distortion_model='plumb_bob',
                       r=None, binning_x=0, binning_y=0, roi=None):
    """Serialize a sensor_msgs/msg/CameraInfo.

    k: (3, 3) intrinsics; p: (3, 4) projection, default [k | 0]; d: (N,) distortion
    coefficients, default five zeros (an undistorted plumb_bob camera); r: (3, 3)
    rectification, default identity; roi: a RegionOfInterest, default all zero. Matrices
    are written as float64, row-major.
    """
    k = _matrix(k, (3, 3), 'k')
    p = _matrix(np.hstack([k.reshape(3, 3), np.zeros((3, 1))]) if p is None else p, (3, 4),
                'p')
    r = _matrix(np.eye(3) if r is None else r, (3, 3), 'r')
    d = np.zeros(5) if d is None else np.asarray(d, np.float64).reshape(-1)
    roi = roi or RegionOfInterest(0, 0, 0, 0, False)
    writer = CdrWriter(CAMERA_INFO)
    write_header(writer, header)
    writer.u32(height, 'height')
    writer.u32(width, 'width')
    writer.string(distortion_model, 'distortion_model')
    writer.sequence(d, np.float64, 'd')
    for array in (k, r, p):
        writer.raw(array, 8)
    writer.u32(binning_x, 'binning_x')
    writer.u32(binning_y, 'binning_y')
    for name in ('x_offset', 'y_offset', 'height', 'width'):
        writer.u32(getattr(roi, name), subfield('roi', name))
    writer.boolean(roi.do_rectify, subfield('roi', 'do_rectify'))
    return writer.getvalue()
