"""Image, CompressedImage, CameraInfo and PointCloud2 wire codecs against rosbags, plus fuzzing.

rosbags' serialize_cdr / deserialize_cdr are the reference: decoding what rosbags wrote must
give back the pixels and fields, and encoding must give rosbags' bytes exactly. The property
tests feed random and mutated bytes to every decoder: WireError is the only failure allowed.
"""

import time
import tracemalloc

import cv2
from hypothesis import given, HealthCheck, settings, strategies as st
import numpy as np
import pytest

from gep_ros.msgtypes import typestore as make_typestore
from gep_ros.wire.cdr import WireError
from gep_ros.wire.image import (
    CompressedImage, compression_of, decode_camera_info, decode_compressed_image,
    decode_image, encode_camera_info, encode_image, ENCODINGS, Image, image_to_gray,
    image_to_rgb, RegionOfInterest)
from gep_ros.wire.pointcloud import (
    decode_pointcloud2, encode_pointcloud2, FLOAT32, FLOAT64, INT8, UINT16, unpack_rgb)
from gep_ros.wire.std import Header

IMAGE = 'sensor_msgs/msg/Image'
COMPRESSED = 'sensor_msgs/msg/CompressedImage'
INFO = 'sensor_msgs/msg/CameraInfo'
CLOUD = 'sensor_msgs/msg/PointCloud2'
NS = 1_000_000_000


def ros_header(store, stamp_ns, frame_id):
    sec, nanosec = divmod(stamp_ns, NS)
    t = store.types
    return t['std_msgs/msg/Header'](
        stamp=t['builtin_interfaces/msg/Time'](sec=sec, nanosec=nanosec), frame_id=frame_id)


def serialize(store, msg, typename, little_endian=True):
    return bytes(store.serialize_cdr(msg, typename, little_endian=little_endian))


def random_pixels(rng, encoding, height, width):
    dtype, channels, _ = ENCODINGS[encoding]
    shape = (height, width) if channels == 1 else (height, width, channels)
    if dtype.kind == 'f':
        pixels = rng.standard_normal(shape).astype(dtype)
        pixels.flat[::7] = np.nan
        return pixels
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


def image_message(store, rng, encoding, height, width, pad=0, bigendian=False, frame_id='cam'):
    """Serialize an Image with `pad` junk bytes ending each row; return (bytes, pixels)."""
    pixels = random_pixels(rng, encoding, height, width)
    dtype, channels, _ = ENCODINGS[encoding]
    wire = pixels.astype(pixels.dtype.newbyteorder('>' if bigendian else '<'))
    row_bytes = width * channels * dtype.itemsize
    rows = wire.view(np.uint8).reshape(height, row_bytes)
    junk = rng.integers(0, 256, (height, pad), dtype=np.uint8)
    data = np.concatenate([rows, junk], axis=1).reshape(-1)
    step = row_bytes + pad
    msg = store.types[IMAGE](header=ros_header(store, int(rng.integers(0, 2 * NS)), frame_id),
                             height=height, width=width, encoding=encoding,
                             is_bigendian=int(bigendian), step=step, data=data)
    return serialize(store, msg, IMAGE), pixels


def same_bits(a, b):
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


@pytest.mark.parametrize('encoding', sorted(ENCODINGS))
def test_image_decode_matches_rosbags(typestore, encoding):
    rng = np.random.default_rng(sorted(ENCODINGS).index(encoding))
    multibyte = ENCODINGS[encoding][0].itemsize > 1
    cases = [(3, 4, 0, False, 'cam'), (5, 6, int(rng.integers(1, 9)), False, 'camera_1'),
             (2, 8, 3, multibyte, 'x'), (0, 0, 0, False, ''), (4, 0, 2, False, 'ab'),
             (0, 6, 0, multibyte, 'abc')]
    for height, width, pad, bigendian, frame_id in cases:
        raw, pixels = image_message(typestore, rng, encoding, height, width, pad, bigendian,
                                    frame_id)
        ref = typestore.deserialize_cdr(raw, IMAGE)
        image = decode_image(raw)
        assert image.header == Header(ref.header.stamp.sec * NS + ref.header.stamp.nanosec,
                                      ref.header.frame_id)
        assert (image.height, image.width, image.encoding, image.is_bigendian, image.step) == \
            (ref.height, ref.width, ref.encoding, ref.is_bigendian, ref.step)
        assert same_bits(image.array, pixels)
        assert not image.array.flags.writeable
        if not (bigendian and multibyte) and image.array.size:
            assert np.shares_memory(image.array, np.frombuffer(raw, np.uint8))  # zero-copy


def test_image_in_big_endian_cdr(typestore):
    rng = np.random.default_rng(1)
    pixels = random_pixels(rng, '16UC1', 3, 5)
    msg = typestore.types[IMAGE](header=ros_header(typestore, 5 * NS + 7, 'cam'), height=3,
                                 width=5, encoding='16UC1', is_bigendian=0, step=10,
                                 data=pixels.view(np.uint8).reshape(-1))
    image = decode_image(serialize(typestore, msg, IMAGE, little_endian=False))
    assert image.header == Header(5 * NS + 7, 'cam')
    assert same_bits(image.array, pixels)


@pytest.mark.parametrize('encoding', ['mono8', 'mono16', 'rgb8', 'bgr8', 'rgba8', '16UC1',
                                      '32FC1', '64FC3', '16SC4', 'yuv422'])
def test_image_encode_is_byte_identical(typestore, encoding):
    rng = np.random.default_rng(len(encoding))
    for height, width, frame_id, stamp in ((4, 6, 'cam', 3 * NS + 9), (1, 2, 'abcdefg', 0),
                                           (0, 0, '', 1), (7, 4, 'ab', -NS // 2)):
        pixels = random_pixels(rng, encoding, height, width)
        dtype, channels, _ = ENCODINGS[encoding]
        ref = typestore.types[IMAGE](
            header=ros_header(typestore, stamp, frame_id), height=height, width=width,
            encoding=encoding, is_bigendian=0, step=width * channels * dtype.itemsize,
            data=pixels.astype(dtype.newbyteorder('<')).view(np.uint8).reshape(-1))
        raw = encode_image(Header(stamp, frame_id), pixels, encoding)
        assert raw == serialize(typestore, ref, IMAGE)
        swapped = pixels.astype(pixels.dtype.newbyteorder('>'))
        assert encode_image(Header(stamp, frame_id), swapped, encoding) == raw
        assert same_bits(decode_image(raw).array, pixels)


def test_image_encode_refuses_wrong_arrays():
    for array, encoding in ((np.zeros((2, 2), np.uint16), 'mono8'),
                            (np.zeros((2, 2, 3), np.uint8), 'mono8'),
                            (np.zeros((2, 2), np.float64), '32FC1'),
                            (np.zeros((2, 2), np.uint8), 'rgb8'),
                            (np.zeros((2, 3, 2), np.uint8), 'yuv422'),
                            (np.zeros((2, 2), np.uint8), 'jpeg')):
        with pytest.raises(WireError, match=IMAGE):
            encode_image(Header(), array, encoding)


def corrupt_image(typestore, **fields):
    """Serialize a 2x3 rgb8 image, frame_id 'cam', with some fields replaced (lies too)."""
    base = {'header': ros_header(typestore, 0, 'cam'), 'height': 2, 'width': 3,
            'encoding': 'rgb8', 'is_bigendian': 0, 'step': 9, 'data': np.zeros(18, np.uint8)}
    return serialize(typestore, typestore.types[IMAGE](**{**base, **fields}), IMAGE)


@pytest.mark.parametrize('fields, field, offset', [
    # Offsets with frame_id 'cam': encoding length at 28, step at 40, data length at 44.
    ({'encoding': 'yuv420'}, 'encoding', 28),
    ({'step': 8}, 'step', 40),
    ({'step': 10}, 'data', 44),
    ({'height': 3}, 'data', 44),
    ({'data': np.zeros(17, np.uint8)}, 'data', 44),
    ({'encoding': 'yuv422', 'width': 3, 'step': 6, 'data': np.zeros(12, np.uint8)},
     'width', 24),
])
def test_image_validation_names_type_field_offset(typestore, fields, field, offset):
    with pytest.raises(WireError) as info:
        decode_image(corrupt_image(typestore, **fields))
    assert (info.value.msgtype, info.value.field, info.value.offset) == (IMAGE, field, offset)
    assert IMAGE in str(info.value) and repr(field) in str(info.value)


def test_every_truncation_of_an_image_raises_wire_error(typestore):
    raw = corrupt_image(typestore)
    decode_image(raw)
    for end in range(len(raw)):
        with pytest.raises(WireError):
            decode_image(raw[:end])


def test_rgb_and_gray_helpers():
    rgb = np.random.default_rng(2).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    alpha = np.full((4, 6, 1), 9, np.uint8)
    as_image = lambda array, encoding: Image(Header(), 4, 6, encoding, 0, 0, array)  # noqa
    assert same_bits(image_to_rgb(as_image(rgb, 'rgb8')), rgb)
    assert same_bits(image_to_rgb(as_image(rgb[..., ::-1], 'bgr8')), rgb)
    assert same_bits(image_to_rgb(as_image(np.concatenate([rgb, alpha], 2), 'rgba8')), rgb)
    bgra = np.concatenate([rgb[..., ::-1], alpha], 2)
    assert same_bits(image_to_rgb(as_image(bgra, 'bgra8')), rgb)
    assert same_bits(image_to_gray(as_image(rgb, 'rgb8')), cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    gray = rgb[..., 0]
    assert same_bits(image_to_rgb(as_image(gray, 'mono8')), np.stack([gray] * 3, axis=2))
    # 16-bit integers use the full dtype range; floats their finite min..max, NaN -> 0.
    mono16 = (gray.astype(np.uint16) * 257)
    assert same_bits(image_to_gray(as_image(mono16, 'mono16')), gray)
    assert same_bits(image_to_rgb(as_image(mono16[..., None].repeat(3, 2), 'rgb16')),
                     np.stack([gray] * 3, axis=2))
    depth = np.linspace(0.5, 3.0, 24, dtype=np.float32).reshape(4, 6)
    depth[0, 0], depth[0, 1] = np.nan, np.inf
    out = image_to_gray(as_image(depth, '32FC1'))
    assert out[0, 0] == 0 and out[0, 2] == 0 and out[-1, -1] == 255
    ranged = image_to_gray(as_image(depth, '32FC1'), value_range=(0.0, 6.0))
    assert ranged[-1, -1] == 128 and ranged[0, 1] == 255
    assert image_to_gray(as_image(np.zeros((4, 0), np.float32), '32FC1')).shape == (4, 0)


@pytest.mark.parametrize('pattern', ['rggb', 'bggr', 'gbrg', 'grbg'])
def test_bayer_patterns_demosaic_to_the_right_colour(pattern):
    mosaic = np.zeros((8, 8), np.uint8)
    for i, colour in enumerate(pattern):
        if colour == 'r':  # a pure red scene lights only the red sites
            mosaic[i // 2::2, i % 2::2] = 255
    image = Image(Header(), 8, 8, f'bayer_{pattern}8', 0, 8, mosaic)
    assert image_to_rgb(image)[3, 3].tolist() == [255, 0, 0]


@pytest.mark.parametrize('encoding', sorted(ENCODINGS))
def test_helpers_cover_every_encoding(typestore, encoding):
    raw, _ = image_message(typestore, np.random.default_rng(3), encoding, 3, 4, pad=1)
    image = decode_image(raw)
    for out, shape in ((image_to_rgb(image), (3, 4, 3)), (image_to_gray(image), (3, 4))):
        assert out.shape == shape and out.dtype == np.uint8
        assert out.flags.writeable and out.flags.c_contiguous
        assert not np.shares_memory(out, image.array)


def compressed_message(store, fmt, payload, frame_id='cam'):
    msg = store.types[COMPRESSED](header=ros_header(store, 42, frame_id), format=fmt,
                                  data=np.frombuffer(payload, np.uint8))
    return serialize(store, msg, COMPRESSED)


def scene(channels, dtype=np.uint8):
    y, x = np.mgrid[0:24, 0:32]
    planes = [(x * 7 + y * c * 3) % 256 for c in range(channels)]
    out = np.stack(planes, axis=2).astype(dtype) * (257 if dtype == np.uint16 else 1)
    return out[..., 0] if channels == 1 else out


@pytest.mark.parametrize('fmt, ext, pixels, encoding', [
    ('jpeg', '.jpg', scene(3), 'rgb8'),
    ('rgb8; jpeg compressed bgr8', '.jpg', scene(3), 'rgb8'),
    ('mono8; jpeg compressed mono8', '.jpg', scene(1), 'mono8'),
    ('png', '.png', scene(3), 'rgb8'),
    ('bgr8; png compressed bgr8', '.png', scene(3), 'rgb8'),
    ('mono8; png compressed mono8', '.png', scene(1), 'mono8'),
    ('bgra8; png compressed bgra8', '.png', scene(4), 'rgba8'),
    ('mono16; png compressed mono16', '.png', scene(1, np.uint16), 'mono16'),
    ('bgr16; png compressed bgr16', '.png', scene(3, np.uint16), 'rgb16'),
])
def test_compressed_image_decodes_like_opencv(typestore, fmt, ext, pixels, encoding):
    ok, payload = cv2.imencode(ext, pixels)
    assert ok
    payload = payload.tobytes()
    image = decode_compressed_image(compressed_message(typestore, fmt, payload, 'abcde'))
    assert (image.header, image.format_string, image.encoding) == \
        (Header(42, 'abcde'), fmt, encoding)
    assert image.data.tobytes() == payload and not image.data.flags.writeable
    expected = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_UNCHANGED)
    if expected.ndim == 3:  # OpenCV's BGR(A) -> RGB(A)
        expected = expected[..., [2, 1, 0, 3][:expected.shape[2]]]
    assert same_bits(image.array, expected)
    if ext == '.png':  # lossless: the original, channels reordered
        assert same_bits(image.array, pixels if pixels.ndim == 2 else expected)
    assert image_to_rgb(image).shape == (24, 32, 3)
    assert decode_compressed_image(compressed_message(typestore, fmt, payload),
                                   decode_pixels=False).array is None


def test_compression_format_strings():
    for fmt, codec in (('jpeg', 'jpeg'), ('JPG', 'jpeg'), ('png', 'png'),
                       ('rgb8; jpeg compressed bgr8', 'jpeg'),
                       ('mono16; png compressed mono16', 'png'), ('h264', None),
                       ('16UC1; compressedDepth png', None), ('32FC1; compressedDepth', None),
                       ('', None), ('rgb8; theora', None), ('tiff', None)):
        assert compression_of(fmt) == codec, fmt


def test_compressed_image_failures_raise_wire_error(typestore):
    png = cv2.imencode('.png', scene(3))[1].tobytes()
    jpeg = cv2.imencode('.jpg', scene(3))[1].tobytes()
    for fmt, payload, field in (('h264', jpeg, 'format'), ('jpeg', png, 'data'),
                                ('png', png[:len(png) // 2], 'data'),
                                ('png', bytes(64), 'data'), ('jpeg', b'\xff\xd8\xff', 'data'),
                                ('jpeg', b'', 'data')):
        with pytest.raises(WireError) as info:
            decode_compressed_image(compressed_message(typestore, fmt, payload))
        assert (info.value.msgtype, info.value.field) == (COMPRESSED, field)
    for fmt, payload in (('jpeg', jpeg), ('png', png)):  # refused before OpenCV allocates
        with pytest.raises(WireError, match='max_pixels'):
            decode_compressed_image(compressed_message(typestore, fmt, payload), max_pixels=100)


@pytest.mark.parametrize('n_coeffs, model, little', [(5, 'plumb_bob', True),
                                                     (8, 'rational_polynomial', True),
                                                     (0, '', True), (14, 'x', False)])
def test_camera_info_matches_rosbags(typestore, n_coeffs, model, little):
    rng = np.random.default_rng(n_coeffs)
    t = typestore.types
    roi = t['sensor_msgs/msg/RegionOfInterest'](x_offset=1, y_offset=2, height=30, width=40,
                                                do_rectify=True)
    msg = t[INFO](header=ros_header(typestore, 77, 'cam_optical'), height=480, width=640,
                  distortion_model=model, d=rng.standard_normal(n_coeffs),
                  k=rng.standard_normal(9), r=rng.standard_normal(9), p=rng.standard_normal(12),
                  binning_x=2, binning_y=3, roi=roi)
    raw = serialize(typestore, msg, INFO, little)
    info = decode_camera_info(raw)
    ref = typestore.deserialize_cdr(serialize(typestore, msg, INFO), INFO)
    assert (info.header, info.height, info.width, info.distortion_model) == \
        (Header(77, 'cam_optical'), 480, 640, model)
    for ours, theirs, shape in ((info.d, ref.d, (n_coeffs,)), (info.k, ref.k, (3, 3)),
                                (info.r, ref.r, (3, 3)), (info.p, ref.p, (3, 4))):
        assert ours.shape == shape and ours.dtype == np.float64
        assert same_bits(ours.ravel(), np.asarray(theirs, np.float64))
    assert (info.binning_x, info.binning_y) == (2, 3)
    assert (info.roi.x_offset, info.roi.y_offset, info.roi.height, info.roi.width,
            info.roi.do_rectify) == (1, 2, 30, 40, True)


@pytest.mark.parametrize('n_coeffs, model, frame_id, stamp', [
    (5, 'plumb_bob', 'dvs', 3 * NS + 5), (8, 'rational_polynomial', 'cam_optical', 0),
    (0, '', '', 1), (1, 'x', 'abcdefg', -NS // 2)])
def test_camera_info_encode_is_byte_identical(typestore, n_coeffs, model, frame_id, stamp):
    rng = np.random.default_rng(n_coeffs + 10)
    t = typestore.types
    d, k, r, p = (rng.standard_normal(n) for n in (n_coeffs, 9, 9, 12))
    roi = RegionOfInterest(3, 4, 50, 60, n_coeffs % 2 == 1)
    msg = t[INFO](header=ros_header(typestore, stamp, frame_id), height=260, width=346,
                  distortion_model=model, d=d, k=k, r=r, p=p, binning_x=1, binning_y=2,
                  roi=t['sensor_msgs/msg/RegionOfInterest'](
                      x_offset=3, y_offset=4, height=50, width=60, do_rectify=roi.do_rectify))
    raw = encode_camera_info(Header(stamp, frame_id), 260, 346, k.reshape(3, 3),
                             p.reshape(3, 4), d, model, r.reshape(3, 3), 1, 2, roi)
    assert raw == serialize(typestore, msg, INFO)
    info = decode_camera_info(raw)
    assert same_bits(info.k.ravel(), k) and same_bits(info.p.ravel(), p)
    assert info.roi == roi and info.header == Header(stamp, frame_id)


def test_camera_info_encode_defaults_and_refusals(typestore):
    k = np.array([[250.0, 0, 172.5], [0, 250.0, 129.5], [0, 0, 1]])
    info = decode_camera_info(encode_camera_info(Header(7, 'dvs'), 260, 346, k))
    assert info.distortion_model == 'plumb_bob' and same_bits(info.d, np.zeros(5))
    assert same_bits(info.r, np.eye(3)) and same_bits(info.p, np.hstack([k, np.zeros((3, 1))]))
    assert (info.binning_x, info.binning_y, info.roi.width) == (0, 0, 0)
    assert not info.roi.do_rectify
    ref = typestore.deserialize_cdr(encode_camera_info(Header(7, 'dvs'), 260, 346, k), INFO)
    assert list(ref.k) == list(k.ravel())
    for kwargs, field in (({'k': np.eye(2)}, 'k'), ({'k': k, 'p': k}, 'p'),
                          ({'k': k, 'height': -1}, 'height')):
        args = {'header': Header(), 'height': 2, 'width': 2, **kwargs}
        with pytest.raises(WireError) as err:
            encode_camera_info(**args)
        assert (err.value.msgtype, err.value.field) == (INFO, field)


def reference_cloud(store, header, xyz, rgb, labels, label_name):
    """Build the rosbags message for encode_pointcloud2's layout, column by column."""
    t = store.types
    field = lambda name, offset, datatype: t['sensor_msgs/msg/PointField'](  # noqa
        name=name, offset=offset, datatype=datatype, count=1)
    layout = xyz.shape[:-1] if xyz.ndim == 3 else (1, len(xyz))
    n = layout[0] * layout[1]
    columns = [np.ascontiguousarray(xyz.reshape(n, 3), '<f4').view(np.uint8)]
    fields = [field(axis, 4 * i, FLOAT32) for i, axis in enumerate('xyz')]
    if rgb is not None:
        flat = rgb.reshape(n, 3).astype('<u4')
        packed = (flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2]
        columns.append(packed.astype('<u4').view(np.uint8).reshape(n, 4))
        fields.append(field('rgb', 12, FLOAT32))
    if labels is not None:
        datatype = {1: 2, 2: UINT16, 4: 6}[labels.dtype.itemsize]
        fields.append(field(label_name, 12 + 4 * (rgb is not None), datatype))
        columns.append(labels.reshape(n, 1).astype(labels.dtype.newbyteorder('<'))
                       .view(np.uint8).reshape(n, labels.dtype.itemsize))
    used = sum(c.shape[1] for c in columns)
    columns.append(np.zeros((n, -used % 4), np.uint8))
    data = np.concatenate(columns, axis=1)
    point_step = data.shape[1]
    return t[CLOUD](header=ros_header(store, header.stamp_ns, header.frame_id),
                    height=layout[0], width=layout[1], fields=fields, is_bigendian=False,
                    point_step=point_step, row_step=point_step * layout[1],
                    data=data.reshape(-1), is_dense=bool(np.isfinite(xyz).all()))


@pytest.mark.parametrize('shape, colour, label_dtype', [
    ((50,), True, None), ((6, 7), False, np.uint8), ((6, 7), True, np.uint16),
    ((13,), False, np.uint32), ((0,), True, np.uint8), ((3,), False, None)])
def test_pointcloud2_encode_matches_rosbags(typestore, shape, colour, label_dtype):
    rng = np.random.default_rng(len(shape) * 10 + int(colour))
    xyz = rng.standard_normal(shape + (3,)).astype(np.float32)
    if xyz.size > 6:
        xyz.reshape(-1)[5] = np.nan
    rgb = rng.integers(0, 256, shape + (3,), dtype=np.uint8) if colour else None
    labels = None if label_dtype is None else \
        rng.integers(0, np.iinfo(label_dtype).max, shape, dtype=label_dtype, endpoint=True)
    header = Header(123 * NS + 4, 'map')
    raw = encode_pointcloud2(header, xyz, rgb=rgb, labels=labels, label_name='class_id')
    ref = reference_cloud(typestore, header, xyz, rgb, labels, 'class_id')
    assert raw == serialize(typestore, ref, CLOUD)
    assert ref.is_dense == (xyz.size <= 6)
    cloud = decode_pointcloud2(raw)
    layout = shape if len(shape) == 2 else (1,) + shape
    assert cloud.points.shape == layout and cloud.is_dense == ref.is_dense
    decoded = np.stack([cloud.points[axis] for axis in 'xyz'], axis=-1)
    assert same_bits(decoded, xyz.reshape(layout + (3,)))
    if colour:
        assert same_bits(unpack_rgb(cloud.points['rgb']), rgb.reshape(layout + (3,)))
    if labels is not None:
        assert same_bits(cloud.points['class_id'], labels.reshape(layout))


@pytest.mark.parametrize('bigendian', [False, True])
def test_pointcloud2_decode_general_layouts(typestore, bigendian):
    """Multi-count fields, float64, int8, row padding and big-endian data, written by rosbags."""
    order = '>' if bigendian else '<'
    record = np.dtype({'names': ['pos', 'intensity', 'ring'],
                       'formats': [(order + 'f8', (3,)), order + 'u2', 'i1'],
                       'offsets': [0, 24, 27], 'itemsize': 32})
    rng = np.random.default_rng(5)
    points = np.zeros((3, 4), record)
    points['pos'] = rng.standard_normal((3, 4, 3))
    points['intensity'] = rng.integers(0, 65535, (3, 4))
    points['ring'] = rng.integers(-128, 127, (3, 4))
    rows = np.concatenate([points.view(np.uint8).reshape(3, -1), np.full((3, 5), 0xEE, np.uint8)],
                          axis=1)
    t = typestore.types
    fields = [t['sensor_msgs/msg/PointField'](name=n, offset=o, datatype=d, count=c)
              for n, o, d, c in (('pos', 0, FLOAT64, 3), ('intensity', 24, UINT16, 1),
                                 ('ring', 27, INT8, 1))]
    msg = t[CLOUD](header=ros_header(typestore, 1, 'lidar'), height=3, width=4, fields=fields,
                   is_bigendian=bigendian, point_step=32, row_step=133, data=rows.reshape(-1),
                   is_dense=True)
    cloud = decode_pointcloud2(serialize(typestore, msg, CLOUD))
    assert (cloud.row_step, cloud.point_step, cloud.is_bigendian) == (133, 32, bigendian)
    for name in record.names:
        assert cloud.points[name].dtype.isnative
        assert np.array_equal(cloud.points[name], points[name])


def _build_seeds():
    """Build valid messages for every decoder, small enough to mutate quickly."""
    store = make_typestore()
    rng = np.random.default_rng(9)
    seeds = [('image', image_message(store, rng, enc, 3, 4, pad, big, 'f')[0])
             for enc, pad, big in (('rgb8', 0, False), ('mono16', 3, True), ('32FC1', 1, True),
                                   ('bayer_rggb8', 0, False), ('yuv422', 2, False))]
    for fmt, ext in (('jpeg', '.jpg'), ('mono8; png compressed mono8', '.png')):
        payload = cv2.imencode(ext, scene(3 if ext == '.jpg' else 1))[1].tobytes()
        seeds.append(('compressed', compressed_message(store, fmt, payload)))
    t = store.types
    info = t[INFO](header=ros_header(store, 1, 'c'), height=4, width=5,
                   distortion_model='plumb_bob', d=np.ones(5), k=np.ones(9), r=np.ones(9),
                   p=np.ones(12), binning_x=0, binning_y=0,
                   roi=t['sensor_msgs/msg/RegionOfInterest'](x_offset=0, y_offset=0, height=0,
                                                             width=0, do_rectify=False))
    seeds.append(('camera_info', serialize(store, info, INFO)))
    xyz = rng.standard_normal((2, 3, 3)).astype(np.float32)
    seeds.append(('cloud', encode_pointcloud2(Header(1, 'm'), xyz, rgb=np.zeros((2, 3, 3),
                                              np.uint8), labels=np.zeros((2, 3), np.uint16))))
    return seeds


SEEDS = _build_seeds()
DECODERS = {'image': decode_image, 'camera_info': decode_camera_info,
            'cloud': decode_pointcloud2,
            'compressed': lambda raw: decode_compressed_image(raw, max_pixels=1 << 16)}
MEMORY_LIMIT = 16 << 20  # inputs are a few KB; anything near this is a length taken on trust


def decode_or_wire_error(name, raw):
    """Run a decoder (and the pixel helpers on success): WireError is the only failure."""
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    try:
        out = DECODERS[name](raw)
    except WireError:
        out = None
    if isinstance(out, (Image, CompressedImage)):
        image_to_rgb(out)
        image_to_gray(out)
    assert tracemalloc.get_traced_memory()[1] - before < MEMORY_LIMIT


@pytest.fixture(scope='module', autouse=True)
def traced_memory():
    tracemalloc.start()
    yield
    tracemalloc.stop()


@st.composite
def mutated_messages(draw):
    name, raw = draw(st.sampled_from(SEEDS))
    buf = bytearray(raw)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(['truncate', 'flip', 'u32', 'u32', 'insert']))
        at = draw(st.integers(0, max(len(buf) - 1, 0)))
        if op == 'truncate':
            del buf[at:]
        elif op == 'flip' and buf:
            buf[at] ^= draw(st.integers(1, 255))
        elif op == 'insert':
            buf[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif len(buf) >= 8:  # a lying length, count, step or height at an aligned position
            at = 4 + 4 * (at // 4) if at // 4 * 4 + 8 <= len(buf) else 4
            value = draw(st.one_of(
                st.sampled_from([0, 1, 2, 3, len(buf), len(buf) + 1, 2 ** 16, 2 ** 31 - 1,
                                 2 ** 31, 2 ** 32 - 1]), st.integers(0, 2 ** 32 - 1)))
            buf[at:at + 4] = value.to_bytes(4, 'little')
    return name, bytes(buf)


FUZZ = settings(max_examples=600, deadline=5000, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(mutated_messages())
def test_mutated_messages_decode_or_raise_wire_error(case):
    decode_or_wire_error(*case)


@FUZZ
@given(st.sampled_from(sorted(DECODERS)), st.booleans(), st.binary(max_size=200))
def test_random_bytes_decode_or_raise_wire_error(name, cdr_header, raw):
    decode_or_wire_error(name, (b'\x00\x01\x00\x00' if cdr_header else b'') + raw)


def test_pointcloud2_refuses_bad_input_and_lying_layouts(typestore):
    xyz = np.zeros((4, 3), np.float32)
    for kwargs in ({'xyz': np.zeros((4, 2))}, {'rgb': np.zeros((4, 3), np.float32)},
                   {'rgb': np.zeros((3, 3), np.uint8)}, {'labels': np.zeros(4, np.int16)},
                   {'labels': np.zeros(4, np.uint8), 'label_name': 'rgb'}):
        with pytest.raises(WireError, match=CLOUD):
            encode_pointcloud2(Header(), **{'xyz': xyz, **kwargs})
    msg = typestore.deserialize_cdr(encode_pointcloud2(Header(), xyz), CLOUD)
    field = typestore.types['sensor_msgs/msg/PointField']
    for lie, name in (({'point_step': 8}, 'point_step'), ({'row_step': 40}, 'row_step'),
                      ({'height': 2}, 'data'), ({'fields': [field('x', 0, 9, 1)]}, 'fields[0]'),
                      ({'fields': [field('x', 0, 7, 1)] * 2}, 'fields')):
        for key, value in lie.items():
            setattr(msg, key, value)
        with pytest.raises(WireError) as info:
            decode_pointcloud2(serialize(typestore, msg, CLOUD))
        assert info.value.field.startswith(name) and isinstance(info.value.offset, int)
        msg = typestore.deserialize_cdr(encode_pointcloud2(Header(), xyz), CLOUD)


def test_damaged_png_is_refused_before_opencv_spends_seconds_on_it(typestore):
    # A mutated PNG on which OpenCV's libpng took 1.5 to 8 s to give up: the chunk CRC
    # walk refuses it in microseconds, so a node never stalls on a damaged frame.
    png = cv2.imencode('.png', np.arange(32 * 24, dtype=np.uint8).reshape(24, 32))[1].tobytes()
    chunk = png.index(b'IDAT') - 4
    damaged = bytearray(png)
    damaged[chunk + 20] ^= 0x5A  # inside the IDAT data, so only its CRC can tell
    fmt = 'mono8; png compressed mono8'
    good = compressed_message(typestore, fmt, png)
    bad = compressed_message(typestore, fmt, bytes(damaged))
    assert decode_compressed_image(good).array.shape == (24, 32)
    start = time.perf_counter()
    with pytest.raises(WireError, match='png: broken chunk structure'):
        decode_compressed_image(bad)
    assert time.perf_counter() - start < 0.05
