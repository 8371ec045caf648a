"""Write a synthetic scene as a ROS 2 bag: events two ways, frames, depth, labels, intrinsics.

Topics (frame_id `dvs` throughout):

- /dvs/events: dvs_msgs/EventArray, one message per `window_ms` window that has events,
  stamped with its first event's time;
- /event_camera/events: event_camera_msgs/EventPacket, the same events in EVT3 on a sensor
  clock that starts at zero (ROS time `start_ns`). Each packet is stamped with the ROS time
  of the sensor time in effect at its start (the previous packet's last event), as a driver
  without transport latency would stamp it, so decoding on the ROS clock gives the
  EventArray times exactly;
- /dvs/image_raw (mono8, or rgb8), /dvs/depth (32FC1, metres), /dvs/labels (mono8, DSEC_11
  class ids) and /dvs/camera_info: one each per frame, all with the frame's stamp.

Receive times follow the stamps by a fixed transport latency. Messages are generated while
the simulation runs and written in receive-time order, so memory does not grow with the
recording's length. The same seed and settings give byte-identical message payloads.
"""

import heapq

import numpy as np

from gep_ros.bag import BagWriter
from gep_ros.msgtypes import EVENT_ARRAY, EVENT_PACKET
from gep_ros.wire.dvs import encode_event_array
from gep_ros.wire.event_packet import encode_event_packet
from gep_ros.wire.events import concat_events
from gep_ros.wire.evt3_encoder import Evt3Encoder
from gep_ros.wire.image import CAMERA_INFO, encode_camera_info, encode_image, IMAGE
from gep_ros.wire.std import Header

from .scene import SyntheticScene

FRAME_ID = 'dvs'
START_NS = 1_700_000_000_000_000_000
EVENT_LATENCY_NS = 200_000  # window end to receive time
FRAME_LATENCY_NS = 2_000_000  # frame stamp to receive time (readout and transfer)
EVENTS, PACKETS = '/dvs/events', '/event_camera/events'
IMAGE_RAW, DEPTH, LABELS, INFO = '/dvs/image_raw', '/dvs/depth', '/dvs/labels', \
    '/dvs/camera_info'
TOPICS = {EVENTS: EVENT_ARRAY, PACKETS: EVENT_PACKET, IMAGE_RAW: IMAGE, DEPTH: IMAGE,
          LABELS: IMAGE, INFO: CAMERA_INFO}


class _Windows:
    """Cut the event stream into fixed windows and encode each as both message types."""

    def __init__(self, camera, window_ns, start_ns):
        self.width, self.height = camera.width, camera.height
        self.window_ns, self.start_ns = window_ns, start_ns
        self.end_ns = window_ns  # end of the window being filled
        self._pending = []
        self._encoder = Evt3Encoder()
        self._sensor_now = None  # sensor time of the last event packed so far
        self._seq = 0

    def add(self, events, now_ns, final=False):
        """Take a step's events; return (receive_ns, topic, data) of each window now complete.

        Windows are [k w, (k + 1) w); the last one, closed by `final`, also takes the events
        at exactly `now_ns`, the end of the recording.
        """
        self._pending.append(events)
        out = []
        while self.end_ns < now_ns or (self.end_ns == now_ns and not final):
            buffered = concat_events(self._pending)
            cut = int(np.searchsorted(buffered['t'], self.end_ns))
            self._pending = [buffered[cut:]]
            out += self._encode(buffered[:cut], self.start_ns + self.end_ns + EVENT_LATENCY_NS)
            self.end_ns += self.window_ns
        if final:
            out += self._encode(concat_events(self._pending),
                                self.start_ns + now_ns + EVENT_LATENCY_NS)
            self._pending = []
        return out

    def _encode(self, sensor, receive_ns):
        if not len(sensor):
            return []  # a driver publishes nothing for a window without events
        ros = sensor.copy()
        ros['t'] += self.start_ns
        first = int(sensor['t'][0]) if self._sensor_now is None else self._sensor_now
        self._sensor_now = int(sensor['t'][-1])
        array = encode_event_array(Header(int(ros['t'][0]), FRAME_ID), self.height,
                                   self.width, ros)
        packet = encode_event_packet(Header(first + self.start_ns, FRAME_ID), self.height,
                                     self.width, self._seq, 0, 'evt3',
                                     self._encoder.encode(sensor))
        self._seq += 1
        return [(receive_ns, EVENTS, array), (receive_ns, PACKETS, packet)]


def _frame_messages(frame, camera, start_ns):
    header = Header(start_ns + frame.t_ns, FRAME_ID)
    receive_ns = header.stamp_ns + FRAME_LATENCY_NS
    encoding = 'rgb8' if frame.image.ndim == 3 else 'mono8'
    yield receive_ns, IMAGE_RAW, encode_image(header, frame.image, encoding)
    yield receive_ns, DEPTH, encode_image(header, frame.depth, '32FC1')
    yield receive_ns, LABELS, encode_image(header, frame.labels, 'mono8')
    yield receive_ns, INFO, encode_camera_info(header, camera.height, camera.width,
                                               k=camera.k, p=camera.p)


def write_synth_bag(path, seconds=2.0, seed=0, storage='mcap', config=None, sensor=None,
                    frame_rate=20.0, rgb=False, window_ms=10, start_ns=START_NS):
    """Simulate `seconds` of SyntheticScene(config, seed) into a new ROS 2 bag at `path`.

    `sensor` is the SensorConfig of the event simulation, `rgb` makes /dvs/image_raw rgb8.
    Returns the message count per topic (see the module docstring for the topics). Raises
    BagError if `path` exists or the storage is unknown, before simulating anything.
    """
    writer = BagWriter(path, storage)
    scene = SyntheticScene(config, seed)
    windows = _Windows(scene.camera, int(window_ms * 1_000_000), start_ns)
    counts = dict.fromkeys(TOPICS, 0)
    queue, order = [], 0  # (receive_ns, order, topic, data): written once nothing can precede

    def push(messages):
        nonlocal order
        for receive_ns, topic, data in messages:
            heapq.heappush(queue, (receive_ns, order, topic, data))
            order += 1

    def flush(until_ns):
        while queue and queue[0][0] <= until_ns:
            receive_ns, _, topic, data = heapq.heappop(queue)
            bag.write(topic, receive_ns, data)
            counts[topic] += 1

    with writer as bag:
        for topic, msgtype in TOPICS.items():
            bag.add_topic(topic, msgtype)
        end_ns = int(round(seconds * 1e9))
        for t_ns, events, frames in scene.stream(seconds, frame_rate, sensor, rgb):
            push(windows.add(events, t_ns, final=t_ns == end_ns))
            for frame in frames:
                push(_frame_messages(frame, scene.camera, start_ns))
            # Later steps only produce messages received after start_ns + t_ns.
            flush(start_ns + t_ns)
        flush(float('inf'))
    return counts
