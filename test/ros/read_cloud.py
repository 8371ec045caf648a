"""Read PointCloud2 bytes with ROS's own sensor_msgs_py.point_cloud2.read_points.

    python read_cloud.py CLOUDS.pkl OUT.npz

CLOUDS.pkl: a pickled list of serialized sensor_msgs/PointCloud2 (written by the test).
OUT.npz: arrays cloud0, cloud1, ... of (N, 3) float32 x, y, z, NaN points skipped.
"""

import pickle
import sys

import numpy as np
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import PointCloud2
from sensor_msgs_py.point_cloud2 import read_points


def main(clouds_path, out_path):
    with open(clouds_path, 'rb') as f:
        clouds = pickle.load(f)
    out = {}
    for i, data in enumerate(clouds):
        points = read_points(deserialize_message(data, PointCloud2),
                             field_names=('x', 'y', 'z'), skip_nans=True)
        out[f'cloud{i}'] = np.stack([points['x'], points['y'], points['z']], axis=1)
    np.savez(out_path, **out)


if __name__ == '__main__':
    main(*sys.argv[1:])
