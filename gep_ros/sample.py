"""A small synthetic recording with events and frames, for the demo and the tests.

A textured square circles over a gradient, seen by an event camera (as dvs_msgs/EventArray
and as EVT3 event_camera_msgs/EventPacket) and by a frame camera (sensor_msgs/Image, mono8).
Events come from log-intensity threshold crossings between finely spaced renderings, with
crossing times interpolated linearly inside each step: the principle of event simulators
such as ESIM, at toy scale. It gives `make demo` and the tests a bag with known content
and no download; the full procedural scene with depth and labels lives in `gep synth`.
"""

import numpy as np

from .bag import BagWriter
from .msgtypes import EVENT_ARRAY, EVENT_PACKET
from .wire.dvs import encode_event_array
from .wire.event_packet import encode_event_packet
from .wire.events import EVENT_DTYPE
from .wire.evt3_encoder import Evt3Encoder
from .wire.image import encode_image
from .wire.std import Header

WIDTH, HEIGHT = 346, 260
FRAME_ID = 'dvs'
TOPICS = {
    '/dvs/events': EVENT_ARRAY,
    '/event_camera/events': EVENT_PACKET,
    '/dvs/image_raw': 'sensor_msgs/msg/Image',
}
IMAGE = 'sensor_msgs/msg/Image'


def render(t_s, texture):
    """Intensity image (H, W) float32 in (0, 1] of the scene at time t_s."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    img = 0.25 + 0.5 * xx / WIDTH  # static gradient background
    cx = WIDTH / 2 + 90 * np.cos(2 * np.pi * 0.5 * t_s)
    cy = HEIGHT / 2 + 60 * np.sin(2 * np.pi * 0.5 * t_s)
    side = texture.shape[0]
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    xs, ys = slice(max(x0, 0), min(x0 + side, WIDTH)), slice(max(y0, 0), min(y0 + side, HEIGHT))
    img[ys, xs] = texture[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
    return img


def simulate(seconds, seed, step_us=500, threshold=0.25, noise_rate=2e4):
    """Events (EVENT_DTYPE, sorted by t) and frames [(t_ns, (H, W) uint8)] of the scene."""
    rng = np.random.default_rng(seed)
    cells = rng.uniform(0.05, 1.0, (6, 6)).astype(np.float32)
    texture = np.kron(cells, np.ones((10, 10), np.float32))  # 60x60 checker
    ref = np.log(render(0.0, texture))
    chunks, frames = [], []
    steps = int(seconds * 1e6 / step_us)
    frame_every = 50_000 // step_us  # 20 Hz frames
    prev = ref.copy()
    for k in range(1, steps + 1):
        t0_ns, t1_ns = (k - 1) * step_us * 1000, k * step_us * 1000
        cur = np.log(render(t1_ns * 1e-9, texture))
        diff = cur - ref
        crossings = np.floor(np.abs(diff) / threshold).astype(np.int64)
        ys, xs = np.nonzero(crossings)
        if len(ys):
            n = crossings[ys, xs]
            sign = np.sign(diff[ys, xs])
            ev_y, ev_x = np.repeat(ys, n), np.repeat(xs, n)
            ev_sign = np.repeat(sign, n)
            # The j-th crossing happens where the linear ramp from prev to cur passes it.
            j = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n) + 1
            start = prev[ev_y, ev_x]
            level = ref[ev_y, ev_x] + ev_sign * j * threshold
            span = cur[ev_y, ev_x] - start
            frac = np.clip((level - start) / np.where(span == 0, 1, span), 0, 1)
            ev = np.empty(len(ev_x), EVENT_DTYPE)
            ev['x'], ev['y'], ev['p'] = ev_x, ev_y, ev_sign > 0
            # Whole microseconds, the resolution EVT3 carries, so both streams agree exactly.
            ev['t'] = (t0_ns + frac * (t1_ns - t0_ns)).astype(np.int64) // 1000 * 1000
            chunks.append(ev)
            ref[ys, xs] += sign * n * threshold
        n_noise = rng.poisson(noise_rate * step_us * 1e-6)
        if n_noise:
            ev = np.empty(n_noise, EVENT_DTYPE)
            ev['x'] = rng.integers(0, WIDTH, n_noise)
            ev['y'] = rng.integers(0, HEIGHT, n_noise)
            ev['p'] = rng.integers(0, 2, n_noise)
            ev['t'] = rng.integers(t0_ns // 1000, t1_ns // 1000, n_noise) * 1000
            chunks.append(ev)
        prev = cur
        if k % frame_every == 0:
            frames.append((t1_ns, (np.exp(cur) * 255).astype(np.uint8)))
    events = np.concatenate(chunks) if chunks else np.empty(0, EVENT_DTYPE)
    return events[np.argsort(events['t'], kind='stable')], frames


def write_sample_bag(path, seconds=2.0, seed=0, storage='mcap', packet_ms=10,
                     start_ns=1_700_000_000_000_000_000):
    """Write the sample scene as a ROS 2 bag; return the message count per topic.

    Event messages cover `packet_ms` each; the EventPacket stream carries the same events
    as the EventArray stream, encoded as EVT3 on a sensor clock that starts at zero (ROS time
    `start_ns`). Each packet's header stamp is the ROS time of the sensor time in effect at
    the packet's start (the previous packet's last event), as a driver without transport
    latency would stamp it, so decoding on the ROS clock reproduces the EventArray times.
    """
    events, frames = simulate(seconds, seed)
    counts = dict.fromkeys(TOPICS, 0)
    encoder = Evt3Encoder()
    bounds = np.searchsorted(events['t'], np.arange(0, int(seconds * 1e9) + 1, packet_ms * 10**6))
    with BagWriter(path, storage) as bag:
        for topic, msgtype in TOPICS.items():
            bag.add_topic(topic, msgtype)
        stream, sensor_now = [], None
        for seq, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            sensor = events[a:b]
            if not len(sensor):
                continue
            chunk = sensor.copy()
            chunk['t'] += start_ns
            first = int(sensor['t'][0]) if sensor_now is None else sensor_now
            sensor_now = int(sensor['t'][-1])
            end_ns = int(chunk['t'][-1]) + 1
            stream.append((end_ns, '/dvs/events', encode_event_array(
                Header(int(chunk['t'][0]), FRAME_ID), HEIGHT, WIDTH, chunk)))
            stream.append((end_ns, '/event_camera/events', encode_event_packet(
                Header(first + start_ns, FRAME_ID), HEIGHT, WIDTH, seq, 0, 'evt3',
                encoder.encode(sensor))))
        for t_ns, img in frames:
            stream.append((t_ns + start_ns + 1, '/dvs/image_raw',
                           encode_image(Header(t_ns + start_ns, FRAME_ID), img, 'mono8')))
        stream.sort(key=lambda m: m[0])
        for time_ns, topic, data in stream:
            bag.write(topic, time_ns, data)
            counts[topic] += 1
    return counts
