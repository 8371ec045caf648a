"""Perception outputs as ROS messages: depth, class labels, a colour overlay, a point cloud.

All outputs carry the header of the input they answer (stamp and frame_id) and the input's
resolution: the model runs at its own input size, and its outputs are resized back here
(bilinear for depth, nearest for labels). Depth follows REP 118: 32FC1 in metres, NaN where
there is no valid estimate.
"""

import cv2
import numpy as np

from .wire.image import encode_image
from .wire.pointcloud import encode_pointcloud2

OUTPUTS = {
    'depth': ('depth/image', 'sensor_msgs/msg/Image'),
    'segmentation': ('segmentation/labels', 'sensor_msgs/msg/Image'),
    'color': ('segmentation/color', 'sensor_msgs/msg/Image'),
    'points': ('depth/points', 'sensor_msgs/msg/PointCloud2'),
}


def resize_depth(depth, size):
    """Return depth (h, w) float32 resized to size (H, W), a new array; non-finite becomes NaN.

    Resized once (cv2.resize's output is the new array), and written again only where
    some value is not finite.
    """
    h, w = size
    if depth.shape != (h, w):
        out = cv2.resize(np.asarray(depth, np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    else:
        out = np.array(depth, np.float32)
    finite = np.isfinite(out)
    if not finite.all():
        out[~finite] = np.nan
    return out


def resize_labels(labels, size):
    """Return labels (h, w) uint8 resized to size (H, W) by nearest neighbour."""
    h, w = size
    if labels.shape == (h, w):
        return labels
    return cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST)


def colour_table(palette):
    """Return the palette as a (256, 1, 3) uint8 table for cv2.LUT (past it: its last colour)."""
    palette = np.asarray(palette, np.uint8).reshape(-1, 3)
    n = min(len(palette), 256)
    table = np.empty((256, 1, 3), np.uint8)
    table[:n, 0] = palette[:n]
    table[n:, 0] = palette[n - 1]
    return table


def label_colours(labels, palette):
    """Return (H, W, 3) uint8 palette colours of uint8 `labels` (past the palette: its last).

    One pass of table lookups (cv2.applyColorMap with the palette as its colour map, taken
    as it is, in the palette's channel order): 2.7x numpy's fancy indexing of the palette,
    and 1.4 to 1.6x three cv2.LUT passes, one a channel, then interleaved.
    """
    labels = np.ascontiguousarray(labels, np.uint8)
    if labels.size == 0:  # OpenCV returns nothing for an empty image, or dies dividing by 0
        return np.zeros(labels.shape + (3,), np.uint8)
    table = palette if palette.shape == (256, 1, 3) else colour_table(palette)
    return cv2.applyColorMap(labels, np.ascontiguousarray(table))


def overlay(labels, palette, frame_rgb=None, alpha=0.5):
    """Return (H, W, 3) uint8: the palette colours of `labels`, blended over the frame.

    `palette`: (K, 3) colours, or the (256, 1, 3) table of `colour_table` (made once).
    """
    painted = label_colours(labels, palette)
    if frame_rgb is None:
        return painted
    frame = frame_rgb if frame_rgb.shape[:2] == labels.shape else cv2.resize(
        frame_rgb, labels.shape[::-1], interpolation=cv2.INTER_AREA)
    return cv2.addWeighted(painted, alpha, frame, 1 - alpha, 0)


def backproject(depth, k, stride=4):
    """Return (N, 3) float32 points and their (N,) pixel indices from depth and intrinsics.

    k: 3x3 camera matrix. Pixels with NaN depth are left out; `stride` subsamples both
    image axes to bound the cloud's size.
    """
    h, w = depth.shape
    vs, us = np.mgrid[0:h:stride, 0:w:stride]
    z = depth[vs, us]
    ok = np.isfinite(z)
    us, vs, z = us[ok], vs[ok], z[ok]
    x = (us - k[0, 2]) * z / k[0, 0]
    y = (vs - k[1, 2]) * z / k[1, 1]
    return np.stack([x, y, z], axis=1).astype(np.float32), vs * w + us


def intrinsics(info, size):
    """Return the 3x3 camera matrix of a CameraInfo for an image of `size` (H, W).

    CameraInfo's K describes the full sensor (width x height); the image it comes with is
    that sensor after its ROI and binning (REP 104, read as image_geometry does: cx' = (cx -
    x_offset) / binning_x). Depth published at another size (the model's outputs follow the
    frame, or the event sensor in rate mode) is a resize of that image, pixel centres
    aligned, as cv2.resize does: u' = (u + 0.5) * s - 0.5.
    """
    bx, by = max(info.binning_x, 1), max(info.binning_y, 1)
    roi = info.roi
    x0, y0 = (roi.x_offset, roi.y_offset) if roi.width and roi.height else (0, 0)
    w = (roi.width if roi.width and roi.height else info.width) / bx
    h = (roi.height if roi.width and roi.height else info.height) / by
    k = np.array(info.k, np.float64).reshape(3, 3)
    sx, sy = size[1] / w, size[0] / h
    out = np.eye(3)
    out[0, 0], out[0, 1] = k[0, 0] / bx * sx, k[0, 1] / bx * sx
    out[1, 1] = k[1, 1] / by * sy
    out[0, 2] = ((k[0, 2] - x0) / bx + 0.5) * sx - 0.5
    out[1, 2] = ((k[1, 2] - y0) / by + 0.5) * sy - 0.5
    return out


def encode_outputs(enabled, topics, header, depth=None, labels=None, palette=None,
                   frame_rgb=None, camera_info=None, stride=4):
    """Encode the enabled outputs; return [(topic, bytes)] in a fixed order.

    enabled: set of output names (keys of OUTPUTS); topics: name -> topic; camera_info: the
    camera's latest CameraInfo, whose K is fitted to the depth image for the point cloud.
    """
    out = []
    if 'depth' in enabled and depth is not None:
        out.append((topics['depth'], encode_image(header, depth, '32FC1')))
    if 'segmentation' in enabled and labels is not None:
        out.append((topics['segmentation'], encode_image(header, labels, 'mono8')))
    if 'color' in enabled and labels is not None:
        out.append((topics['color'], encode_image(header, overlay(labels, palette, frame_rgb),
                                                  'rgb8')))
    if 'points' in enabled and depth is not None and camera_info is not None:
        xyz, idx = backproject(depth, intrinsics(camera_info, depth.shape), stride)
        rgb = point_labels = None
        if labels is not None:
            point_labels = labels.reshape(-1)[idx]
            rgb = label_colours(point_labels[None], palette)[0]
        out.append((topics['points'], encode_pointcloud2(header, xyz, rgb=rgb,
                                                         labels=point_labels)))
    return out
