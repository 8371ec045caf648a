from _standin_msgs import Message, Seq
from std_msgs.msg import Header


class Image(Message):
    _type = 'sensor_msgs/msg/Image'
    _fields = {'header': Header, 'height': int, 'width': int, 'encoding': str,
               'is_bigendian': int, 'step': int, 'data': Seq()}


class RegionOfInterest(Message):
    _type = 'sensor_msgs/msg/RegionOfInterest'
    _fields = {'x_offset': int, 'y_offset': int, 'height': int, 'width': int,
               'do_rectify': bool}


class CameraInfo(Message):
    _type = 'sensor_msgs/msg/CameraInfo'
    _fields = {'header': Header, 'height': int, 'width': int, 'distortion_model': str,
               'd': Seq(), 'k': Seq(), 'r': Seq(), 'p': Seq(), 'binning_x': int,
               'binning_y': int, 'roi': RegionOfInterest}


class PointField(Message):
    _type = 'sensor_msgs/msg/PointField'
    _fields = {'name': str, 'offset': int, 'datatype': int, 'count': int}


class PointCloud2(Message):
    _type = 'sensor_msgs/msg/PointCloud2'
    _fields = {'header': Header, 'height': int, 'width': int, 'fields': Seq(PointField),
               'is_bigendian': bool, 'point_step': int, 'row_step': int, 'data': Seq(),
               'is_dense': bool}
