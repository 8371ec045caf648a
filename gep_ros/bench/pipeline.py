"""`gep bench pipeline`: latency at the sensor's pace, and the event rate windowing sustains.

Two parts:
- Latency. A synthetic camera (346x260, 1 Mev/s of random events in 1 ms EventArray packets,
  mono8 frames at 20 Hz) is fed to the `Pipeline` at its real pace, as the node's
  subscriptions would deliver it (dropping the oldest window when the queue is full), for
  gep_tiny and gep_small at their default input size, each event-only (what fine-tuning
  exports by default; the frames only colour the overlay) and with the frame encoder
  (`frames: true`, rows `_frames`), set up as the node sets it up: its default parameters,
  the backend `auto` picks (onnxruntime on a CPU) and the thread budget of `threads: 0`
  (all cores but one for the model). Rows: p50 and p95 of `end_to_end` (frame arrival to
  outputs published) against the model step alone (`Runtime.infer` of one window, with its
  frame where the model takes one, batch 1) measured in the same run, twice: back to back,
  and at the camera's pace (one call every 50 ms, idle in between, as the node calls it);
  ratio = pipeline / step, the cost of waiting for events, batching, queueing, rendering
  and encoding. The step alone and the pipeline take turns in ROUNDS rounds (a quarter of
  the camera's seconds each), and the percentiles are over all rounds' samples. Per-stage
  percentiles and drops are in the JSON rows.
- Event rate. EventArray and EVT3 EventPacket streams in 1 ms packets (1k and 10k events a
  packet: 1 and 10 Mev/s of sensor time, 640x480) are fed as fast as they go through one
  `WindowCutter` (decode, bounded buffer, 20 Hz rate windows of 50 ms), no model. Rows: events
  per second processed, against rosbags on the same packets (EventArray: `deserialize_cdr`,
  one Python object per event; EVT3: `deserialize_cdr` plus the per-word Python decoder,
  since rosbags cannot decode EVT3), timed on a slice. `realtime_factor` = processed rate /
  stream rate: above 1 the path keeps up with such a camera on one core.
"""

from collections import Counter
from dataclasses import replace
import statistics
import tempfile
import time

import numpy as np

from .common import median_seconds, print_table, row, write_json
from ..msgtypes import EVENT_ARRAY, EVENT_PACKET, typestore
from ..params import make_params
from ..stats import STAGES, summarize
from ..windows import WindowCutter
from ..wire.dvs import encode_event_array
from ..wire.event_packet import encode_event_packet
from ..wire.events import make_events
from ..wire.evt3 import Evt3State, reference_decode
from ..wire.evt3_encoder import Evt3Encoder
from ..wire.image import encode_image
from ..wire.std import Header

T0 = 1_700_000_000 * 10**9
MS = 1_000_000
FRAME_HZ = 20.0
ROUNDS = 4  # turns of step alone and pipeline per variant (2 with --quick)


def event_stream(seconds, per_packet, width, height, seed=0):
    """Random sorted events on whole microseconds, cut into 1 ms packets: [(events, end)]."""
    rng = np.random.default_rng(seed)
    packets = []
    for k in range(int(round(seconds * 1000))):
        t = np.sort(rng.integers(k * 1000, (k + 1) * 1000, per_packet)) * 1000  # sensor ns
        events = make_events(rng.integers(0, width, per_packet),
                             rng.integers(0, height, per_packet), t,
                             rng.integers(0, 2, per_packet))
        packets.append((events, (k + 1) * MS))
    return packets


def encode_stream(packets, msgtype, width, height):
    """Serialize sensor-time packets as EventArray (ROS time) or EVT3 EventPacket messages."""
    out = []
    encoder, now = Evt3Encoder(), 0
    for seq, (events, _) in enumerate(packets):
        if msgtype == EVENT_ARRAY:
            ros = events.copy()
            ros['t'] += T0
            out.append(encode_event_array(Header(int(ros['t'][0]), 'cam'), height, width, ros))
        else:
            # Stamped with the sensor time in effect at the packet's start, as a driver does.
            out.append(encode_event_packet(Header(T0 + now, 'cam'), height, width, seq, 0,
                                           'evt3', encoder.encode(events)))
            now = int(events['t'][-1])
    return out


# -- latency ------------------------------------------------------------------------------
def camera_messages(seconds, width=346, height=260, rate=1_000_000, frame_hz=FRAME_HZ):
    """Messages of a synthetic camera in arrival order: [(receive_ns, topic, bytes)]."""
    packets = event_stream(seconds, rate // 1000, width, height)
    msgs = [(T0 + end + 200_000, '/cam0/events', data) for data, (_, end) in
            zip(encode_stream(packets, EVENT_ARRAY, width, height), packets)]
    rng = np.random.default_rng(1)
    base = (np.add.outer(np.arange(height), np.arange(width)) % 256).astype(np.uint8)
    period = int(1e9 / frame_hz)
    for stamp in range(T0 + period, T0 + int(seconds * 1e9) + 1, period):
        frame = base + rng.integers(0, 8, base.shape, dtype=np.uint8)
        msgs.append((stamp + 2 * MS, '/cam0/image',
                     encode_image(Header(stamp, 'cam_optical'), frame, 'mono8')))
    msgs.sort(key=lambda m: m[0])
    return msgs


def step_latency(runtime, size, repeat, period=0.0):
    """Seconds of one Runtime.infer of a single window with its frame (after warm-up).

    period: start the calls this many seconds apart (sleeping in between), as windows reach
    the model at the camera's pace; 0 runs them back to back. On an idle-capable CPU the
    paced call is slower (caches and clocks cool down between calls), and that is the
    model's cost in the node too, not the pipeline's.
    """
    import torch
    events, images = torch.rand(1, 3, *size), torch.rand(1, 3, *size)
    for _ in range(3):
        runtime.infer(events, images, streams=['bench'])
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        runtime.infer(events, images, streams=['bench'])
        end = time.perf_counter()
        times.append(end - start)
        if period:
            time.sleep(max(0.0, start + period - end))
    runtime.reset('bench')
    return times


def play(pipeline, messages):
    """Feed messages at their receive pace; return how late the feeding fell, at most (s)."""
    start, first = time.perf_counter(), messages[0][0]
    late = 0.0
    for receive_ns, topic, data in messages:
        wait = (receive_ns - first) / 1e9 - (time.perf_counter() - start)
        if wait > 0:
            time.sleep(wait)
        else:
            late = max(late, -wait)
        pipeline.feed(topic, data, receive_ns)
    return late


def bench_latency(variant, seconds, quick, folder, frame_encoder=False):
    from gep_model.artifact import load_artifact, save_artifact
    from gep_model.model import GEPModel
    from gep_model.registry import variant_config
    from gep_model.runtime import choose_backend, cpu_threads, make_runtime
    import torch

    from ..pipeline import Pipeline
    torch.manual_seed(0)
    config = variant_config(variant)
    config.temporal = replace(config.temporal, image_tokens=frame_encoder)
    name = f'{variant}_frames' if frame_encoder else variant
    artifact = load_artifact(save_artifact(GEPModel(config), f'{folder}/{name}'))
    size = tuple(artifact.model.config.input_size)
    # The node's set-up: its default parameters, its backend choice and thread budget.
    params = make_params({'cam0.events_topic': '/cam0/events', 'cam0.image_topic': '/cam0/image'})
    backend = choose_backend(params['backend'])
    threads = cpu_threads(params['threads'])
    runtime = make_runtime(artifact, backend, params['max_batch'], params['precision'],
                           folder, threads=threads)
    # The step alone and the pipeline take turns, round after round, so that a machine whose
    # speed drifts (a VM's clock does, by tens of percent) slows both alike.
    rounds = 2 if quick else ROUNDS
    messages = camera_messages(seconds / rounds)
    step, paced, late = [], [], 0.0
    samples, totals = {s: [] for s in STAGES}, dict.fromkeys(STAGES, 0)
    windows, dropped = 0, Counter()
    for _ in range(rounds):
        step += step_latency(runtime, size, 3 if quick else 4)
        paced += step_latency(runtime, size, 5 if quick else 8, period=1 / FRAME_HZ)
        runtime.infer(torch.rand(params['max_batch'], 3, *size),
                      torch.rand(params['max_batch'], 3, *size),
                      streams=[f'w{i}' for i in range(params['max_batch'])])  # the batch path
        runtime.reset()
        pipeline = Pipeline(params, runtime, lambda topic, data: None, block_when_full=False)
        try:
            late = max(late, play(pipeline, messages))
            pipeline.flush(timeout=120)
        finally:
            pipeline.close()
        snap = pipeline.snapshot()
        windows += snap['windows']
        dropped.update(snap['dropped'])
        for stage in STAGES:
            samples[stage] += pipeline.stats.latency[stage].samples
            totals[stage] += pipeline.stats.latency[stage].total
    lat = {stage: summarize(samples[stage], totals[stage]) for stage in STAGES}
    frames = rounds * sum(1 for m in messages if m[1] == '/cam0/image')
    rows = []
    window = '1 window + frame' if frame_encoder else '1 window'
    for label, times, what in (
            ('', step, f'model step alone (Runtime.infer, {window}, back to back)'),
            ('_vs_paced_step', paced, f'model step alone at the camera pace (Runtime.infer, '
                                      f'{window}, one call every {1e3 / FRAME_HZ:g} ms)')):
        base = {'p50': statistics.median(times) * 1e3,
                'p95': float(np.percentile(times, 95)) * 1e3}
        for q in ('p50', 'p95'):
            r = row(f'e2e_{name}_346x260_20hz{label}_{q}', 'ms', lat['end_to_end'][q],
                    base[q], what)
            r.update(variant=name, frame_encoder=frame_encoder, backend=backend,
                     threads=threads, input_size=list(size), seconds=seconds, frames=frames,
                     rounds=rounds, windows=windows,
                     published=lat['end_to_end']['count'], dropped=dict(dropped),
                     feed_late_max_s=late,
                     stages={s: {k: lat[s][k] for k in ('p50', 'p95', 'max', 'count')}
                             for s in STAGES})
            rows.append(r)
    return rows


# -- event rate ---------------------------------------------------------------------------
def cutter_seconds(messages, msgtype):
    """Seconds to push every message through a fresh WindowCutter in rate mode."""
    events_type = 'dvs' if msgtype == EVENT_ARRAY else 'event_camera'
    params = make_params({'cam0.events_topic': '/cam0/events', 'cam0.events_type': events_type,
                          'window.mode': 'rate'})
    cutter = WindowCutter(params.cameras[0], params.values)
    windows = 0
    start = time.perf_counter()
    for i, data in enumerate(messages):
        windows += len(cutter.events(data, T0 + (i + 1) * MS))
    return time.perf_counter() - start, windows


def rosbags_seconds(messages, msgtype, width, height):
    store = typestore()
    start = time.perf_counter()
    if msgtype == EVENT_ARRAY:
        for data in messages:
            store.deserialize_cdr(data, EVENT_ARRAY)
    else:
        state = Evt3State()
        for data in messages:
            msg = store.deserialize_cdr(data, EVENT_PACKET)
            state = reference_decode(msg.events.view('<u2'), state, width, height).state
    return time.perf_counter() - start


def bench_cutter(quick):
    width, height = 640, 480
    seconds = 0.25 if quick else 0.5
    rows = []
    for per_packet in (1000, 10_000):
        packets = event_stream(seconds, per_packet, width, height, seed=per_packet)
        n = per_packet * len(packets)
        for msgtype, name in ((EVENT_ARRAY, 'eventarray'), (EVENT_PACKET, 'evt3')):
            messages = encode_stream(packets, msgtype, width, height)
            # Each run is a few tens of milliseconds: many of them for a steady median.
            runs = [cutter_seconds(messages, msgtype) for _ in range(7 if quick else 21)]
            t_ours = statistics.median(r[0] for r in runs)
            # rosbags builds Python objects per event (or decodes word by word): time a slice.
            sample = messages[:max(2, 40_000 // per_packet)]
            t_base = median_seconds(lambda: rosbags_seconds(sample, msgtype, width, height),
                                    repeat=3, warmup=1)
            stream = per_packet * 1000
            r = row(f'cutter_{name}_1ms_{per_packet // 1000}k', 'Mev/s', n / t_ours / 1e6,
                    len(sample) * per_packet / t_base / 1e6,
                    'rosbags deserialize_cdr (EVT3: + per-word Python decoder)')
            r.update(stream_mev_s=stream / 1e6, realtime_factor=n / t_ours / stream,
                     packets_per_s=len(messages) / t_ours, windows=runs[0][1], events=n,
                     baseline_sample_events=len(sample) * per_packet)
            rows.append(r)
            print(f'  {r["name"]:<30} {r["ours"]:8.1f} Mev/s, {r["packets_per_s"]:9.0f} '
                  f'packets/s, {r["realtime_factor"]:6.1f}x real time', flush=True)
    return rows


def print_stages(rows):
    print('\nper stage (ms)          p50        p95        max')
    for r in rows:
        if not r['name'].endswith('_20hz_p50'):
            continue
        print(f'{r["variant"]}: {r["windows"]} windows of {r["frames"]} frames, '
              f'dropped {sum(r["dropped"].values())}')
        for stage, s in r['stages'].items():
            cells = ' '.join('         -' if s[k] is None else f'{s[k]:10.2f}'
                             for k in ('p50', 'p95', 'max'))
            print(f'  {stage:<18} {cells}')


def run(json_path=None, quick=False, variants=('gep_tiny', 'gep_small'), command=''):
    # The event rates first: rosbags' per-event objects cost more once torch's are alive.
    rates = bench_cutter(quick)
    seconds = 2.0 if quick else 5.0
    latency = []
    with tempfile.TemporaryDirectory() as tmp:
        for variant in variants:
            for frame_encoder in (False, True):
                print(f'  {variant}{" with the frame encoder" if frame_encoder else ""}: '
                      f'{seconds:g} s of camera at its real pace ...', flush=True)
                latency += bench_latency(variant, seconds, quick, tmp, frame_encoder)
    print_table(f'pipeline end-to-end latency, {latency[0]["backend"] if latency else ""} '
                '(ms; ratio = pipeline / model step)',
                latency)
    print_stages(latency)
    print_table('decode + window, WindowCutter (Mev/s; ratio = ours / rosbags)', rates)
    write_json(json_path, 'pipeline', latency + rates, command)
    return latency + rates
