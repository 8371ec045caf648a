"""`gep bench wire`: our CDR codecs against rosbags on the same bytes, in the same run.

Rows (rates, higher is better):
- EventArray decode and encode at 50k and 1M events, against rosbags' deserialize_cdr /
  serialize_cdr, which build one Python object per event;
- EVT3 EventPacket decode of 1M events, in packets of 20k events and of 700 (the size in the
  real recordings), 64 messages per decode_batch call (and at 700 also one message per
  decode call), against rosbags' deserialize_cdr followed by the straightforward per-word
  Python decoder (`evt3.reference_decode`, the tests' oracle): rosbags itself only
  unpacks the CDR and cannot decode EVT3;
- Image decode (640x480 rgb8, 1280x720 mono8) against rosbags' deserialize_cdr. Both are
  zero-copy views of the pixels; ours is shaped with step padding and byte order handled.

Rows against the code the compiled kernels replaced, in the same run:
- EventArray decode of 1M events against the numpy strided copy (`dvs.decode_events_numpy`);
- EVT3 on the real recordings in test/data/bags (evpy_test_events_1, 640x480, and
  codecs_test_data_evt3_trigger, 1280x720, IMX636): every packet after the first, one
  `EventPacketDecoder.decode` at a time (a live subscription) and `decode_batch` 64 at a
  time, against the numpy decoder (`evt3_numpy`) doing the same, and against faery's Rust
  file decoder (`faery.extension.evt.Decoder`, PyPI `faery`) on the same words written to a
  Prophesee .raw file, when faery is installed. These decoders run round after round, each
  once a round, and the medians are compared, so that a busy machine slows them alike.
  Each of ours is one EventPacketDecoder for all rounds, its stream state set back at the
  start of a round, as a node keeps one decoder per topic (its array chunks stay warm).
- On the same recordings, `_ros_clock_one_at_a_time`: every packet through
  `EventStream.decode` onto the ROS clock (the node's default: decode, then the events
  moved by the slewed clock offset, one `to_ros` kernel call a packet), one `reset` stream
  for all rounds, against the same with the Python and numpy clock placement that the
  `shift_times` and `to_ros` kernels replaced.
"""

from pathlib import Path
import statistics
import tempfile
import time

import numpy as np

from .common import median_seconds, print_table, row, write_json
from ..msgtypes import EVENT_ARRAY, EVENT_PACKET, typestore
from ..wire import evt3_numpy
from ..wire.dvs import decode_event_array, decode_events_numpy, encode_event_array
from ..wire.event_packet import decode_event_packet, encode_event_packet, EventPacketDecoder
from ..wire.events import make_events
from ..wire.evt3 import Evt3State, reference_decode
from ..wire.evt3_encoder import Evt3Encoder
from ..wire.image import decode_image, encode_image
from ..wire.std import Header
from ..wire.stream import EventStream, shift_times_numpy

ROSBAGS = 'rosbags 0.11 deserialize_cdr/serialize_cdr'
BATCH = 64  # messages per EventPacketDecoder.decode_batch call, as `gep bag` decodes


def random_events(n, rng, width=640, height=480):
    t = np.sort(rng.integers(0, 10**9, n)) + 1_700_000_000 * 10**9
    return make_events(rng.integers(0, width, n), rng.integers(0, height, n), t,
                       rng.integers(0, 2, n))


def rosbags_event_array(events):
    """Build the rosbags message object for an event array (once, not timed)."""
    store = typestore()
    event_cls = store.types['dvs_msgs/msg/Event']
    time_cls = store.types['builtin_interfaces/msg/Time']
    header_cls = store.types['std_msgs/msg/Header']
    sec, nsec = np.divmod(events['t'], 10**9)
    evs = [event_cls(int(x), int(y), time_cls(int(s), int(ns)), bool(p))
           for x, y, s, ns, p in zip(events['x'], events['y'], sec, nsec, events['p'])]
    return store.types[EVENT_ARRAY](header_cls(time_cls(1, 2), 'camera'), 480, 640, evs)


def bench_event_array(n, rng, quick):
    store = typestore()
    events = random_events(n, rng)
    data = encode_event_array(Header(10**9 + 2, 'camera'), 480, 640, events)
    msg = rosbags_event_array(events)
    repeat = 3 if quick else 7
    # Steady state, as in a running node: the first calls pay for the allocator growing.
    ours_dec = median_seconds(lambda: decode_event_array(data), repeat=repeat * 3, warmup=5)
    ours_enc = median_seconds(
        lambda: encode_event_array(Header(10**9 + 2, 'camera'), 480, 640, events),
        repeat=repeat * 3, warmup=5)
    base_dec = median_seconds(lambda: store.deserialize_cdr(data, EVENT_ARRAY),
                              repeat=repeat, warmup=0 if n > 100_000 else 1, budget_s=10)
    base_enc = median_seconds(lambda: store.serialize_cdr(msg, EVENT_ARRAY),
                              repeat=repeat, warmup=0 if n > 100_000 else 1, budget_s=10)
    label = f'{n // 1000}k' if n < 10**6 else f'{n // 10**6}M'
    numpy_rows = []
    if n >= 10**6:
        start = len(data) - max(16 * n - 3, 0)
        view = memoryview(data)
        numpy_dec = median_seconds(lambda: decode_events_numpy(view, start, n),
                                   repeat=repeat * 3, warmup=5)
        numpy_rows.append(row(f'eventarray_decode_{label}_vs_numpy', 'Mev/s',
                              n / ours_dec / 1e6, n / numpy_dec / 1e6,
                              'numpy strided copy (the code the kernel replaced)'))
    return numpy_rows + [
        row(f'eventarray_decode_{label}', 'Mev/s', n / ours_dec / 1e6, n / base_dec / 1e6,
            ROSBAGS),
        row(f'eventarray_encode_{label}', 'Mev/s', n / ours_enc / 1e6, n / base_enc / 1e6,
            ROSBAGS),
    ]


def evt3_packets(n, rng, packet_events):
    """Encode n random events (sorted, whole microseconds) as serialized EVT3 EventPackets."""
    events = random_events(n, rng)
    events['t'] = (events['t'] - events['t'][0]) // 1000 * 1000
    encoder = Evt3Encoder()
    return [encode_event_packet(Header(i, 'camera'), 480, 640, i, 0, 'evt3',
                                encoder.encode(events[a:a + packet_events]))
            for i, a in enumerate(range(0, n, packet_events))]


def bench_evt3(rng, quick):
    """EVT3 decode, large packets (20k events) and the real bags' size (about 700 events).

    Messages go through `EventPacketDecoder.decode_batch` 64 at a time, as `gep bag`
    decodes them; `evt3_decode_1M_700_one_at_a_time` calls `decode` once per message, as a
    live subscription callback would.
    """
    store = typestore()

    def batched(packets):
        decoder = EventPacketDecoder()
        for a in range(0, len(packets), BATCH):
            decoder.decode_batch(packets[a:a + BATCH])

    def one_at_a_time(packets):
        decoder = EventPacketDecoder()
        for p in packets:
            decoder.decode(p)

    def baseline(packets):
        state = Evt3State()
        for p in packets:
            msg = store.deserialize_cdr(p, EVENT_PACKET)
            state = reference_decode(msg.events.view('<u2'), state, msg.width,
                                     msg.height).state

    rows = []
    for name, n, size, ours in (
            ('evt3_decode_1M_20k_per_packet', 1_000_000, 20_000, batched),
            ('evt3_decode_1M_700_per_packet', 1_000_000, 700, batched),
            ('evt3_decode_1M_700_one_at_a_time', 1_000_000, 700, one_at_a_time)):
        packets = evt3_packets(n, rng, size)
        t_ours = median_seconds(lambda: ours(packets), repeat=5 if quick else 9)
        # The per-word Python loop runs at about a million words a second: time a slice.
        sample = packets[:max(1, 50_000 // size)]
        t_base = median_seconds(lambda: baseline(sample), repeat=3, warmup=0)
        n_sample = min(n, len(sample) * size)
        rows.append(row(name, 'Mev/s', n / t_ours / 1e6, n_sample / t_base / 1e6,
                        'rosbags deserialize_cdr + per-word Python EVT3 loop'))
    return rows


REAL_EVT3 = ('evpy_test_events_1', 'codecs_test_data_evt3_trigger')
NUMPY_EVT3 = 'numpy EVT3 decoder (evt3_numpy, the code the kernel replaced)'
FAERY = 'faery 0.7 Rust EVT3 file decoder, same words'
NUMPY_CLOCK = ('EventStream.decode with the Python and numpy clock placement '
               '(shift_times_numpy, the code the kernels replaced)')


class NumpyClockStream(EventStream):
    """An EventStream that moves times onto the ROS clock in Python and numpy.

    As before the kernels: a `shift` other than shift_times also keeps `_to_ros` in Python.
    """

    shift = staticmethod(shift_times_numpy)


def ros_clock(stream, raws):
    """Decode every packet onto the ROS clock, the stream started afresh; return the events."""
    stream.reset()
    return sum(len(stream.decode(raw).events) for raw in raws)


def bags_dir():
    """Return the folder of the real recordings of the test suite (test/data/bags)."""
    return Path(__file__).resolve().parents[2] / 'test' / 'data' / 'bags'


def real_evt3(name):
    """Return the EventPackets of a real EVT3 recording, in order; None where it is missing."""
    from ..bag import BagReader
    path = bags_dir() / name
    if not path.exists():
        return None
    with BagReader(path) as reader:
        return [m.data for m in reader.messages() if not m.error]


def numpy_one_at_a_time(first_state, msgs):
    """Decode with numpy packet by packet, as EventPacketDecoder.decode did before."""
    state = first_state
    for raw in msgs:
        msg = decode_event_packet(raw)
        state = evt3_numpy.decode_words(msg.events.view('<u2'), state, msg.width,
                                        msg.height).state


def numpy_batched(first_state, msgs):
    """Decode with numpy over runs of BATCH packets, as decode_batch did before."""
    state = first_state
    for a in range(0, len(msgs), BATCH):
        decoded = [decode_event_packet(raw) for raw in msgs[a:a + BATCH]]
        payloads = [m.events for m in decoded]
        bounds = np.zeros(len(payloads) + 1, np.int64)
        np.cumsum([p.size >> 1 for p in payloads], out=bounds[1:])
        out = evt3_numpy.decode_run(np.concatenate(payloads).view('<u2'), bounds, state,
                                    decoded[0].width, decoded[0].height)
        state = out.result.state


def faery_decode(path, width, height):
    """Decode a Prophesee .raw file with faery; return the number of CD events."""
    from faery.extension import evt
    n = 0
    with evt.Decoder(path, (width, height), 'evt3') as decoder:
        for packet in decoder:
            n += len(packet['events'])
    return n


def interleaved_medians(fns, repeat, warmup=2):
    """Median seconds of each of `fns` (a dict), all run once a round for `repeat` rounds."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {key: [] for key in fns}
    for _ in range(repeat):
        for key, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
    return {key: statistics.median(values) for key, values in times.items()}


def bench_real_evt3(quick):
    """EVT3 on the real recordings: every packet after the first (which starts the clock)."""
    try:
        import faery  # noqa: F401
    except ImportError:
        faery = None
        print('faery is not installed: the rows against its Rust decoder are left out')
    rows = []
    repeat = 5 if quick else 11
    for name in REAL_EVT3:
        raws = real_evt3(name)
        if raws is None:
            print(f'{name}: not found under {bags_dir()}, left out')
            continue
        first = EventPacketDecoder()
        first.decode(raws[0])
        (key, state), = first._states.items()
        msgs = raws[1:]
        sizes = [decode_event_packet(raw) for raw in msgs]
        width, height = sizes[0].width, sizes[0].height
        n = sum(len(p.events) for p in first.decode_batch(msgs))

        def ours_one(msgs=msgs, state=state, key=key, decoder=EventPacketDecoder()):
            decoder._states[key] = state
            for raw in msgs:
                decoder.decode(raw)

        def ours_batched(msgs=msgs, state=state, key=key, decoder=EventPacketDecoder()):
            decoder._states[key] = state
            for a in range(0, len(msgs), BATCH):
                decoder.decode_batch(msgs[a:a + BATCH])

        per_packet = n // len(msgs)
        on_ros, numpy_ros = EventStream(EVENT_PACKET, 'ros'), NumpyClockStream(EVENT_PACKET, 'ros')
        n_ros = ros_clock(on_ros, raws)
        fns = {'one': ours_one, 'batch': ours_batched,
               'numpy_one': lambda: numpy_one_at_a_time(state, msgs),
               'numpy_batch': lambda: numpy_batched(state, msgs),
               'ros': lambda: ros_clock(on_ros, raws),
               'numpy_ros': lambda: ros_clock(numpy_ros, raws)}
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f'{name}.raw'
            if faery is not None:
                with open(path, 'wb') as f:
                    f.write(f'% evt 3.0\n% format EVT3;height={height};width={width}\n'
                            f'% geometry {width}x{height}\n% end\n'.encode())
                    for msg in sizes:
                        f.write(msg.events.tobytes())
                fns['faery'] = lambda: faery_decode(path, width, height)
                n_faery = faery_decode(path, width, height)
            # Round after round, each decoder once a round: a busy machine slows them alike.
            t = interleaved_medians(fns, repeat)
        label = f'evt3_{name}_{per_packet}_per_packet'
        rows += [row(f'{label}_one_at_a_time', 'Mev/s', n / t['one'] / 1e6,
                     n / t['numpy_one'] / 1e6, NUMPY_EVT3),
                 row(f'{label}_batched', 'Mev/s', n / t['batch'] / 1e6,
                     n / t['numpy_batch'] / 1e6, NUMPY_EVT3),
                 row(f'{label}_ros_clock_one_at_a_time', 'Mev/s', n_ros / t['ros'] / 1e6,
                     n_ros / t['numpy_ros'] / 1e6, NUMPY_CLOCK)]
        if faery is not None:
            rows += [row(f'{label}_one_at_a_time_vs_faery', 'Mev/s', n / t['one'] / 1e6,
                         n_faery / t['faery'] / 1e6, FAERY),
                     row(f'{label}_batched_vs_faery', 'Mev/s', n / t['batch'] / 1e6,
                         n_faery / t['faery'] / 1e6, FAERY)]
    return rows


def bench_images(rng, quick):
    store = typestore()
    rows = []
    for name, shape, encoding in (('image_decode_640x480_rgb8', (480, 640, 3), 'rgb8'),
                                  ('image_decode_1280x720_mono8', (720, 1280), 'mono8')):
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        data = encode_image(Header(1, 'camera'), img, encoding)
        repeat = 11 if quick else 31
        repeat *= 20  # microseconds each: many runs for a stable median
        t_ours = median_seconds(lambda: decode_image(data), repeat=repeat)
        t_base = median_seconds(lambda: store.deserialize_cdr(data, 'sensor_msgs/msg/Image'),
                                repeat=repeat)
        rows.append(row(name, 'images/s', 1 / t_ours, 1 / t_base,
                        'rosbags deserialize_cdr (flat data view; ours is shaped, step and '
                        'byte order handled)'))
    return rows


def run(json_path=None, quick=False, command='gep bench wire'):
    rng = np.random.default_rng(0)
    rows = []
    for n in (50_000, 1_000_000):
        rows += bench_event_array(n, rng, quick)
    rows += bench_evt3(rng, quick)
    rows += bench_real_evt3(quick)
    rows += bench_images(rng, quick)
    print_table('wire codecs (rates; ratio = ours / baseline)', rows)
    write_json(json_path, 'wire', rows, command)
    return rows
