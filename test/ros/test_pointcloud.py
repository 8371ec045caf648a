"""depth/points read back by ROS's own sensor_msgs_py.point_cloud2.read_points.

K is fitted to the depth image for binning, ROI and a camera_info of another resolution.
"""

from pathlib import Path
import pickle
import sys

import numpy as np

from gep_ros.outputs import encode_outputs
from gep_ros.wire.image import decode_camera_info, encode_camera_info, RegionOfInterest
from gep_ros.wire.std import Header

HERE = Path(__file__).resolve().parent
H, W = 26, 34  # the published depth image
K = np.array([[400.0, 0.0, 330.0], [0.0, 410.0, 250.0], [0.0, 0.0, 1.0]])
CASES = {  # name: (camera_info height, width, binning x, y, roi)
    'same size': (H, W, 0, 0, None),
    'binning 2x2': (2 * H, 2 * W, 2, 2, None),
    'roi': (480, 640, 0, 0, RegionOfInterest(100, 50, H, W, False)),
    'roi and binning': (480, 640, 2, 2, RegionOfInterest(100, 50, 2 * H, 2 * W, False)),
    'another resolution': (4 * H, 4 * W, 0, 0, None),
}


def expected_points(depth, height, width, bx, by, roi):
    """Back-project through the camera_info's own K, written from REP 104 independently.

    A depth pixel's centre maps to the camera's image by the resize, then to the sensor by
    binning and ROI (image_geometry's convention), then through K.
    """
    bx, by = max(bx, 1), max(by, 1)
    x0, y0, w, h = (roi.x_offset, roi.y_offset, roi.width, roi.height) if roi else \
        (0, 0, width, height)
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    u_image = (u + 0.5) * (w / bx) / W - 0.5
    v_image = (v + 0.5) * (h / by) / H - 0.5
    u_sensor, v_sensor = u_image * bx + x0, v_image * by + y0
    z = depth.astype(np.float64)
    x = (u_sensor - K[0, 2]) / K[0, 0] * z
    y = (v_sensor - K[1, 2]) / K[1, 1] * z
    ok = np.isfinite(z)
    return np.stack([x[ok], y[ok], z[ok]], axis=1)


def test_points_read_back_by_sensor_msgs_py(procs, tmp_path):
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 30.0, (H, W)).astype(np.float32)
    depth[rng.random((H, W)) < 0.1] = np.nan
    header = Header(1_700_000_000_000_000_000, 'cam')
    clouds, expected = [], []
    for height, width, bx, by, roi in CASES.values():
        info = decode_camera_info(encode_camera_info(header, height, width, K, binning_x=bx,
                                                     binning_y=by, roi=roi))
        (_, data), = encode_outputs({'points'}, {'points': '/points'}, header, depth=depth,
                                    camera_info=info, stride=1)
        clouds.append(data)
        expected.append(expected_points(depth, height, width, bx, by, roi))
    with open(tmp_path / 'clouds.pkl', 'wb') as f:
        pickle.dump(clouds, f)
    proc = procs([sys.executable, str(HERE / 'read_cloud.py'), str(tmp_path / 'clouds.pkl'),
                  str(tmp_path / 'points.npz')], 'read_cloud')
    assert proc.popen.wait(60) == 0, proc.text()
    got = np.load(tmp_path / 'points.npz')
    for i, name in enumerate(CASES):
        points = got[f'cloud{i}']
        assert points.shape == expected[i].shape, name
        np.testing.assert_allclose(points, expected[i], rtol=1e-5, atol=1e-4, err_msg=name)
    # The cases differ: a K left unscaled would have put every cloud in the same place.
    assert not np.allclose(got['cloud0'], got['cloud4'])
