"""sensor_msgs/msg/PointCloud2 from numpy points (xyz plus rgb or labels), and back.

The pipeline publishes reconstructed or segmented points for RViz and for replay checks.
Encoding writes one packed record a point: x, y, z as float32, then an optional `rgb` field
(PCL's convention: 0x00RRGGBB bits stored in a FLOAT32 field, which RViz's RGB8 colour
transformer reads) and an optional integer label field, with the point size rounded up to
4 bytes so that float fields stay aligned. Decoding turns any PointCloud2 into a structured
numpy array, a zero-copy view when the data is little-endian.
"""

from dataclasses import dataclass

import numpy as np

from .cdr import CdrReader, CdrWriter, subfield, WireError
from .std import Header, read_header, write_header

POINT_CLOUD2 = 'sensor_msgs/msg/PointCloud2'

# sensor_msgs/msg/PointField datatype constants.
INT8, UINT8, INT16, UINT16, INT32, UINT32, FLOAT32, FLOAT64 = range(1, 9)
DATATYPE_DTYPES = {INT8: 'i1', UINT8: 'u1', INT16: 'i2', UINT16: 'u2', INT32: 'i4',
                   UINT32: 'u4', FLOAT32: 'f4', FLOAT64: 'f8'}
_LABEL_DATATYPES = {np.dtype(np.uint8): UINT8, np.dtype(np.uint16): UINT16,
                    np.dtype(np.uint32): UINT32}


@dataclass(frozen=True)
class PointField:
    """sensor_msgs/msg/PointField: `count` values of `datatype` at `offset` in each point."""

    name: str
    offset: int
    datatype: int
    count: int = 1


@dataclass
class PointCloud2:
    """A decoded sensor_msgs/msg/PointCloud2.

    `points` is (height, width) with one named field per PointField (a (count,) subarray when
    count > 1), in native byte order. Little-endian data is a read-only strided view into
    the message bytes, which it keeps alive; big-endian data is a copy.
    """

    header: Header
    height: int
    width: int
    fields: list  # [PointField]
    is_bigendian: bool
    point_step: int
    row_step: int
    is_dense: bool
    points: np.ndarray  # (H, W) structured


def pack_rgb(rgb):
    """(..., 3) uint8 colours -> (...) float32 carrying 0x00RRGGBB bits, as PCL packs them."""
    rgb = np.asarray(rgb, dtype=np.uint8)
    bits = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) \
        | rgb[..., 2]
    return bits.view(np.float32)


def unpack_rgb(packed):
    """Invert pack_rgb: (...) float32 (or uint32) packed colours -> (..., 3) uint8."""
    bits = np.ascontiguousarray(packed).view(np.uint32)
    return np.stack([(bits >> shift) & 0xFF for shift in (16, 8, 0)], axis=-1).astype(np.uint8)


def _layout(shape, xyz_shape, name, what):
    if tuple(shape) != xyz_shape:
        raise WireError(POINT_CLOUD2, name, None,
                        f'{what} has shape {tuple(shape)}, the points {xyz_shape}')


def encode_pointcloud2(header, xyz, rgb=None, labels=None, label_name='label'):
    """Serialize points as a sensor_msgs/msg/PointCloud2.

    `xyz` is (N, 3) for an unorganised cloud (height 1, width N) or (H, W, 3) for an
    organised one; it is cast to float32. `rgb` is the matching (..., 3) uint8 colours and
    `labels` the matching (...) uint8, uint16 or uint32 labels, each optional. is_dense is
    True when every coordinate is finite (PCL marks invalid points with NaN).
    """
    xyz = np.asarray(xyz)
    if xyz.ndim not in (2, 3) or xyz.shape[-1] != 3:
        raise WireError(POINT_CLOUD2, 'data', None,
                        f'xyz must be (N, 3) or (H, W, 3), got {xyz.shape}')
    layout = xyz.shape[:-1] if xyz.ndim == 3 else (1, xyz.shape[0])
    fields = [PointField(axis, 4 * i, FLOAT32) for i, axis in enumerate('xyz')]
    formats = ['<f4'] * 3
    offset = 12
    if rgb is not None:
        rgb = np.asarray(rgb)
        _layout(rgb.shape, xyz.shape, 'rgb', 'rgb')
        if rgb.dtype != np.uint8:
            raise WireError(POINT_CLOUD2, 'rgb', None, f'rgb must be uint8, got {rgb.dtype}')
        fields.append(PointField('rgb', offset, FLOAT32))
        formats.append('<u4')  # the packed bits, declared FLOAT32 on the wire
        offset += 4
    if labels is not None:
        labels = np.asarray(labels)
        _layout(labels.shape, xyz.shape[:-1], label_name, 'labels')
        if labels.dtype not in _LABEL_DATATYPES:
            raise WireError(POINT_CLOUD2, label_name, None,
                            f'labels must be uint8, uint16 or uint32, got {labels.dtype}')
        if not label_name or label_name in ('x', 'y', 'z', 'rgb'):
            raise WireError(POINT_CLOUD2, label_name, None,
                            'label field name empty or already used')
        fields.append(PointField(label_name, offset, _LABEL_DATATYPES[labels.dtype]))
        formats.append(labels.dtype.newbyteorder('<'))
        offset += labels.dtype.itemsize
    point_step = -(-offset // 4) * 4
    record = np.dtype({'names': [f.name for f in fields], 'formats': formats,
                       'offsets': [f.offset for f in fields], 'itemsize': point_step})
    points = np.zeros(layout, record)  # zeroed: padding bytes go out as 0
    flat = xyz.reshape(layout + (3,))
    for i, axis in enumerate('xyz'):
        points[axis] = flat[..., i]
    if rgb is not None:
        points['rgb'] = pack_rgb(rgb.reshape(layout + (3,))).view(np.uint32)
    if labels is not None:
        points[label_name] = labels.reshape(layout)
    is_dense = bool(np.isfinite(points['x']).all() and np.isfinite(points['y']).all()
                    and np.isfinite(points['z']).all())

    writer = CdrWriter(POINT_CLOUD2)
    write_header(writer, header)
    writer.u32(layout[0], 'height')
    writer.u32(layout[1], 'width')
    writer.u32(len(fields), 'fields')
    for field in fields:
        writer.string(field.name, 'fields.name')
        writer.u32(field.offset, 'fields.offset')
        writer.u8(field.datatype, 'fields.datatype')
        writer.u32(field.count, 'fields.count')
    writer.boolean(False, 'is_bigendian')
    writer.u32(point_step, 'point_step')
    writer.u32(point_step * layout[1], 'row_step')
    writer.u32(points.nbytes, 'data')
    tail = bytes([is_dense])
    return b''.join((writer.buf, points.reshape(-1).view(np.uint8), tail))


def _read_fields(reader):
    count = reader.length('fields', 13)  # a PointField takes at least 13 bytes
    fields = []
    for i in range(count):
        where = f'fields[{i}]'
        name = reader.string(subfield(where, 'name'))
        offset = reader.u32(subfield(where, 'offset'))
        reader.align(1)
        datatype_at = reader.pos
        datatype = reader.u8(subfield(where, 'datatype'))
        field_count = reader.u32(subfield(where, 'count'))
        if datatype not in DATATYPE_DTYPES:
            raise WireError(POINT_CLOUD2, subfield(where, 'datatype'), datatype_at,
                            f'unknown PointField datatype {datatype}')
        fields.append(PointField(name, offset, datatype, field_count))
    return fields


def decode_pointcloud2(data):
    """Decode serialized sensor_msgs/msg/PointCloud2 bytes (with CDR header)."""
    reader = CdrReader(data, POINT_CLOUD2)
    header = read_header(reader)
    height = reader.u32('height')
    width = reader.u32('width')
    fields_at = reader.pos
    fields = _read_fields(reader)
    is_bigendian = reader.boolean('is_bigendian')
    reader.align(4)
    step_at = reader.pos
    point_step = reader.u32('point_step')
    row_step = reader.u32('row_step')
    nbytes = reader.length('data', 1)
    start = reader.pos
    reader.pos += nbytes
    is_dense = reader.boolean('is_dense')
    reader.done()

    order = '>' if is_bigendian else '<'
    formats = []
    for field in fields:
        dtype = np.dtype(DATATYPE_DTYPES[field.datatype]).newbyteorder(order)
        if field.offset + dtype.itemsize * field.count > point_step:
            raise WireError(POINT_CLOUD2, 'point_step', step_at,
                            f'field {field.name!r} ends past point_step {point_step}')
        formats.append(dtype if field.count == 1 else (dtype, (field.count,)))
    if height and width and point_step == 0:
        raise WireError(POINT_CLOUD2, 'point_step', step_at, 'point_step 0 with points')
    if row_step < width * point_step:
        raise WireError(POINT_CLOUD2, 'row_step', step_at + 4,
                        f'row_step {row_step} < width {width} * point_step {point_step}')
    if nbytes != height * row_step:
        raise WireError(POINT_CLOUD2, 'data', start - 4,
                        f'{nbytes} bytes, expected height {height} * row_step {row_step}')
    try:
        record = np.dtype({'names': [f.name for f in fields], 'formats': formats,
                           'offsets': [f.offset for f in fields], 'itemsize': point_step})
    except (ValueError, TypeError) as exc:
        raise WireError(POINT_CLOUD2, 'fields', fields_at, f'unusable fields ({exc})') from None
    points = np.ndarray((height, width), record, buffer=reader.buf, offset=start,
                        strides=(row_step, point_step))
    if is_bigendian:
        points = points.astype(record.newbyteorder('='))
    points.flags.writeable = False
    return PointCloud2(header, height, width, fields, is_bigendian, point_step, row_step,
                       is_dense, points)
