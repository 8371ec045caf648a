"""The perception pipeline without ROS: windows, outputs, bursts, time jumps, bad input."""

from collections import defaultdict
import re
import threading
import time

import numpy as np
import pytest
import torch

from gep_model.artifact import load_artifact, save_artifact
from gep_model.events import fit_to_input
from gep_model.model import GEPModel
from gep_model.registry import variant_config
from gep_model.runtime import make_runtime
from gep_ros.msgtypes import EVENT_ARRAY
from gep_ros.outputs import colour_table, intrinsics, label_colours, overlay, resize_depth
from gep_ros.params import make_params, ParamError, resolve_name
from gep_ros.pipeline import frame_input, Pipeline
from gep_ros.stats import STAGES
from gep_ros.wire.dvs import encode_event_array
from gep_ros.wire.events import make_events
from gep_ros.wire.image import (decode_camera_info, decode_image, encode_camera_info,
                                encode_image, IMAGE, image_to_rgb)
from gep_ros.wire.std import Header

W, H = 168, 126  # sensor; the tiny model runs at the same size
T0 = 1_700_000_000 * 10**9
MS = 10**6


@pytest.fixture(scope='module')
def artifact(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp('pipe') / 'tiny'
    save_artifact(GEPModel(variant_config('gep_tiny', input_size=(H, W))), folder)
    return load_artifact(folder)


class Recorder:
    """The publish callback: keeps every output in order."""

    def __init__(self):
        self.messages = []  # (topic, bytes) in publication order
        self.by_topic = defaultdict(list)

    def __call__(self, topic, data):
        self.messages.append((topic, data))
        self.by_topic[topic].append(data)

    def stamps(self, topic):
        return [decode_image(d).header.stamp_ns for d in self.by_topic[topic]]


def make_pipeline(artifact, overrides=None, block=True):
    values = {'cam0.events_topic': '/cam0/events', 'cam0.image_topic': '/cam0/image',
              'max_batch': 4, 'max_wait_ms': 1.0}
    values.update(overrides or {})
    if 'cameras' in values:
        values = {k: v for k, v in values.items() if not k.startswith('cam0.')}
    out = Recorder()
    runtime = make_runtime(artifact, 'cpu', max_batch=values['max_batch'])
    return Pipeline(make_params(values), runtime, out, block_when_full=block), out


def events_msg(t_start, t_end, n=400, seed=0, frame='cam0'):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(t_start, t_end, n))
    ev = make_events(rng.integers(0, W, n), rng.integers(0, H, n), t, rng.integers(0, 2, n))
    return encode_event_array(Header(int(t[0]), frame), H, W, ev)


def image_msg(stamp, frame='cam0_optical'):
    img = (np.arange(H * W) % 251).astype(np.uint8).reshape(H, W)
    return encode_image(Header(stamp, frame), img, 'mono8')


def play(pipeline, start, frames, packet_ms=10, frame_ms=50, seed=0, prefix='/cam0'):
    """Events in packets of packet_ms and a frame every frame_ms, in arrival order."""
    t = start
    end = start + frames * frame_ms * MS
    while t < end:
        pipeline.feed(f'{prefix}/events', events_msg(t, t + packet_ms * MS, seed=seed + t % 997),
                      t + packet_ms * MS)
        t += packet_ms * MS
        if (t - start) % (frame_ms * MS) == 0:
            pipeline.feed(f'{prefix}/image', image_msg(t), t + MS)


def test_every_frame_gets_every_output_with_its_header(artifact):
    pipe, out = make_pipeline(artifact)
    play(pipe, T0, frames=6)
    assert pipe.flush(timeout=60)
    pipe.close()
    want = [T0 + (i + 1) * 50 * MS for i in range(6)]
    for topic in ('/cam0/depth/image', '/cam0/segmentation/labels', '/cam0/segmentation/color'):
        assert sorted(out.stamps(topic)) == want
    depth = decode_image(out.by_topic['/cam0/depth/image'][0])
    assert depth.encoding == '32FC1' and depth.array.shape == (H, W)
    assert depth.header.frame_id == 'cam0_optical'
    d = depth.array
    assert np.all(np.isnan(d) | ((d >= 1.0) & (d <= 80.0)))
    labels = decode_image(out.by_topic['/cam0/segmentation/labels'][0]).array
    assert labels.max() < 11
    color = decode_image(out.by_topic['/cam0/segmentation/color'][0])
    assert color.encoding == 'rgb8' and color.array.shape == (H, W, 3)
    snap = pipe.snapshot()
    assert snap['windows'] == 6 and not snap['dropped'] and not snap['rejected']
    for stage in STAGES:
        assert snap['latency_ms'][stage]['count'] > 0


def test_rate_windows_without_frames(artifact):
    pipe, out = make_pipeline(artifact, {'cam0.image_topic': '', 'window.rate_hz': 50.0})
    t = T0
    for i in range(20):  # 200 ms of events
        pipe.feed('/cam0/events', events_msg(t, t + 10 * MS, seed=i), t + 10 * MS)
        t += 10 * MS
    pipe.flush(timeout=60)
    pipe.close()
    stamps = out.stamps('/cam0/depth/image')
    assert len(stamps) >= 8
    assert np.all(np.diff(stamps) == 20 * MS)  # 50 Hz on the event clock
    assert decode_image(out.by_topic['/cam0/depth/image'][0]).header.frame_id == 'cam0'


def test_corrupt_messages_are_rejected_and_counted_and_the_rest_processed(artifact):
    pipe, out = make_pipeline(artifact)
    t = T0
    good = events_msg(t, t + 50 * MS)
    pipe.feed('/cam0/events', good[:57], t)  # truncated
    pipe.feed('/cam0/events', b'\x00\x01\x00\x00garbage', t)
    pipe.feed('/cam0/image', image_msg(t)[:-10], t)
    pipe.feed('/cam0/unknown', good, t)
    play(pipe, T0, frames=2)
    pipe.flush(timeout=60)
    pipe.close()
    snap = pipe.snapshot()
    assert sum(v for k, v in snap['rejected'].items() if k.startswith('/cam0/events')) == 2
    assert sum(v for k, v in snap['rejected'].items() if k.startswith('/cam0/image')) == 1
    assert snap['rejected']['/cam0/unknown: not subscribed'] == 1
    assert len(out.by_topic['/cam0/depth/image']) == 2


def test_a_burst_drops_windows_keeps_memory_bounded_and_recovers(artifact):
    pipe, out = make_pipeline(artifact, {'queue_size': 2, 'max_batch': 1,
                                         'buffer.max_events': 20_000, 'buffer.keep_ms': 200.0},
                              block=False)
    # 2 s of data in one go: 40 frames, far more than inference keeps up with.
    play(pipe, T0, frames=40)
    camera = pipe.cameras['cam0']
    assert camera.buffer.count <= 20_000 and len(pipe.queue) <= 2
    pipe.flush(timeout=120)
    burst = pipe.snapshot()
    assert burst['dropped'].get('inference queue full', 0) > 0
    assert len(out.by_topic['/cam0/depth/image']) + burst['dropped']['inference queue full'] \
        == 40
    # Afterwards, at a pace it can follow, each frame is answered promptly again.
    latencies = []
    start = T0 + 40 * 50 * MS
    for i in range(3):
        before = len(out.by_topic['/cam0/depth/image'])
        end = start + (i + 1) * 50 * MS
        play(pipe, end - 50 * MS, frames=1)
        fed = time.perf_counter()
        # The next packet shows the events up to the frame's stamp have all arrived.
        pipe.feed('/cam0/events', events_msg(end, end + 10 * MS), end + 10 * MS)
        deadline = fed + 30
        while len(out.by_topic['/cam0/depth/image']) == before and time.perf_counter() < deadline:
            time.sleep(0.002)
        latencies.append(time.perf_counter() - fed)
    pipe.close()
    one = pipe.snapshot()['latency_ms']['inference']['p50'] / 1e3
    assert max(latencies) < 20 * one + 0.5


def test_time_jump_backwards_resets_and_never_publishes_old_stamps_after(artifact):
    pipe, out = make_pipeline(artifact, {'queue_size': 64, 'buffer.jump_back_ms': 100.0})
    play(pipe, T0, frames=8)  # 400 ms
    published_before = len(out.by_topic['/cam0/depth/image'])
    play(pipe, T0, frames=4, seed=5)  # the bag loops: 200 ms again from the start
    pipe.flush(timeout=60)
    pipe.close()
    snap = pipe.snapshot()
    assert snap['resets'] == {'cam0': 1}
    after = out.stamps('/cam0/depth/image')[published_before:]
    # Windows of the old timeline still queued are dropped (and counted), never published.
    assert after[-4:] == [T0 + k * 50 * MS for k in range(1, 5)]
    assert max(after) <= T0 + 200 * MS
    lost = snap['dropped'].get('window from before a time jump', 0)
    lost += snap['dropped'].get('frame lost to a time jump', 0)
    assert published_before + len(after) + lost == 12
    assert pipe.cameras['cam0'].buffer.chunks[0][0] >= T0


def test_two_cameras_are_batched_and_kept_apart(artifact):
    pipe, out = make_pipeline(artifact, {'cameras': ['left', 'right'],
                                         'left.events_topic': '/left/events',
                                         'left.image_topic': '/left/image',
                                         'right.events_topic': '/right/events',
                                         'right.image_topic': '/right/image',
                                         'right.output_namespace': '/stereo/right'})
    play(pipe, T0, frames=3, prefix='/left')
    play(pipe, T0, frames=3, prefix='/right', seed=9)
    pipe.flush(timeout=60)
    pipe.close()
    assert len(out.by_topic['/left/depth/image']) == 3
    assert len(out.by_topic['/stereo/right/depth/image']) == 3
    assert set(pipe.runtime.states) == {'left', 'right'}


def test_bad_parameters_name_the_parameter():
    with pytest.raises(ParamError, match='window.mode'):
        make_params({'window.mode': 'sideways'})
    with pytest.raises(ParamError, match='unknown parameter cam1.events_topic'):
        make_params({'cam1.events_topic': '/x'})
    with pytest.raises(ParamError, match=r'max_batch: 0 is outside \[1, 64\]'):
        make_params({'max_batch': 0})
    with pytest.raises(ParamError, match='cam0.events_type'):
        make_params({'cam0.events_type': 'prophesee'})
    with pytest.raises(ParamError, match=r'window.duraton_ms \(did you mean window.duration_ms'):
        make_params({'window.duraton_ms': 50.0})


@pytest.mark.parametrize('overrides,message', [
    ({'cam1.events_topic': '/dvs/events', 'cam1.output_namespace': '/other'},
     'cam1.events_topic and cam0.events_topic are both /dvs/events'),
    ({'cam1.events_topic': 'dvs/events'},  # relative, resolves to the same topic
     'cam1.events_topic and cam0.events_topic are both /dvs/events'),
    ({'cam1.events_topic': '/cam1/events', 'cam1.output_namespace': '/dvs'},
     'camera cam1 output color and camera cam0 output color are both /dvs/segmentation/color'),
    ({'cam1.events_topic': '/cam1/events', 'cam1.output_namespace': 'dvs/depth/image'},
     None),  # outputs under /dvs/depth/image/...: no clash
])
def test_topics_used_twice_are_refused_at_start(artifact, overrides, message):
    values = {'cameras': ['cam0', 'cam1'], 'cam0.events_topic': '/dvs/events', **overrides}
    params = make_params(values)
    runtime = make_runtime(artifact, 'cpu', max_batch=1)
    if message is None:
        Pipeline(params, runtime, Recorder()).close()
        return
    with pytest.raises(ValueError, match=re.escape(message)):
        Pipeline(params, runtime, Recorder())


def test_relative_topics_resolve_in_the_namespace_given(artifact):
    params = make_params({'cam0.events_topic': 'dvs/events', 'cam0.image_topic': '~/frames'})
    pipe = Pipeline(params, make_runtime(artifact, 'cpu', max_batch=1), Recorder(),
                    resolve=lambda name: resolve_name(name, '/robot1'))
    pipe.close()
    assert dict(pipe.subscriptions()) == {
        '/robot1/dvs/events': EVENT_ARRAY, '/robot1/perception_node/frames': IMAGE}
    assert set(pipe.output_topics()) == {'/robot1/dvs/depth/image', '/robot1/dvs/segmentation/'
                                         'labels', '/robot1/dvs/segmentation/color'}


class Gate:
    """A runtime stand-in's infer that waits until the test opens it."""

    def __init__(self, infer):
        self.infer, self.open = infer, threading.Event()
        self.entered = threading.Event()

    def __call__(self, *args, **kwargs):
        self.entered.set()
        self.open.wait(30)
        return self.infer(*args, **kwargs)


def test_close_with_drop_counts_the_queue_and_publishes_nothing_more(artifact):
    pipe, out = make_pipeline(artifact, {'max_batch': 1, 'queue_size': 16}, block=False)
    gate = Gate(pipe.runtime.infer)
    pipe.runtime.infer = gate
    play(pipe, T0, frames=6)
    assert gate.entered.wait(30)  # one window in the model, the others wait in the queue
    waiting = len(pipe.queue)
    assert waiting >= 3
    threading.Timer(0.2, gate.open.set).start()
    pipe.close(drop=True)
    assert not pipe.worker.is_alive()
    assert out.messages == []  # not even the window that was in the model
    assert pipe.snapshot()['dropped'] == {'shutdown': waiting + 1}


def test_point_cloud_intrinsics_follow_binning_and_the_depth_size():
    """The pixel under the principal point back-projects onto the optical axis."""
    k_full = np.array([[400.0, 0.0, 330.0], [0.0, 410.0, 250.0], [0.0, 0.0, 1.0]])
    for height, width, binning, size in ((520, 692, 2, (260, 346)), (520, 692, 0, (130, 173))):
        info = decode_camera_info(encode_camera_info(Header(0, 'cam'), height, width, k_full,
                                                     binning_x=binning, binning_y=binning))
        k = intrinsics(info, size)
        scale = size[1] / (width / max(binning, 1))
        assert k[0, 0] == pytest.approx(k_full[0, 0] / max(binning, 1) * scale)
        assert (k[0, 2] + 0.5) / scale - 0.5 == pytest.approx(k_full[0, 2] / max(binning, 1))


@pytest.mark.parametrize('events,output', [
    ('/events', '/depth/image'), ('events', 'depth/image'), ('dvs/events', 'dvs/depth/image'),
    ('/dvs/events', '/dvs/depth/image'), ('~/ev', '~/depth/image')])
def test_outputs_go_in_the_events_topics_namespace(events, output):
    camera = make_params({'cam0.events_topic': events}).cameras[0]
    assert camera.output_topic('depth/image') == output


def test_a_batch_holds_one_window_per_camera(artifact):
    """A camera's windows run in order anyway: batching two of them only delays the first."""
    pipe, out = make_pipeline(artifact, {'cameras': ['left', 'right'],
                                         'left.events_topic': '/left/events',
                                         'left.image_topic': '/left/image',
                                         'right.events_topic': '/right/events',
                                         'right.image_topic': '/right/image'}, block=True)
    batches, infer = [], pipe.runtime.infer

    def recording(*args, streams=None, **kwargs):
        batches.append(list(streams))
        time.sleep(0.05)  # slower than the frames come: a backlog builds
        return infer(*args, streams=streams, **kwargs)
    pipe.runtime.infer = recording
    play(pipe, T0, frames=6, prefix='/left')
    play(pipe, T0, frames=6, prefix='/right', seed=9)
    pipe.flush(timeout=60)
    pipe.close()
    assert sum(len(b) for b in batches) == 12
    assert all(len(b) == len(set(b)) for b in batches), batches
    assert any(len(b) == 2 for b in batches), batches  # the two cameras did share steps
    assert len(out.by_topic['/left/depth/image']) == len(out.by_topic['/right/depth/image']) == 6
    for topic in ('/left/depth/image', '/right/depth/image'):
        assert out.stamps(topic) == sorted(out.stamps(topic))


def test_one_camera_never_batches_or_waits(artifact):
    pipe, out = make_pipeline(artifact, {'max_batch': 4, 'max_wait_ms': 500.0}, block=True)
    batches, infer = [], pipe.runtime.infer

    def recording(*args, streams=None, **kwargs):
        batches.append(len(streams))
        time.sleep(0.05)
        return infer(*args, streams=streams, **kwargs)
    pipe.runtime.infer = recording
    start = time.perf_counter()
    play(pipe, T0, frames=6)
    pipe.flush(timeout=60)
    pipe.close()
    assert batches == [1] * 6
    assert time.perf_counter() - start < 6 * 0.5  # no 500 ms wait for company


@pytest.mark.parametrize('encoding', ['mono8', 'mono16', 'rgb8', 'bgr8'])
def test_frame_input_equals_fitting_the_rgb_frame(encoding):
    """A grey frame is fitted as one channel: the values of fitting its RGB copy, exactly."""
    rng = np.random.default_rng(3)
    dtype, channels = (np.uint16, 1) if encoding == 'mono16' else (np.uint8, 1)
    if encoding in ('rgb8', 'bgr8'):
        channels = 3
    pixels = rng.integers(0, np.iinfo(dtype).max, (H + 7, W - 5, channels)).astype(dtype)
    image = decode_image(encode_image(Header(0, 'cam'), pixels.squeeze(-1) if channels == 1
                                      else pixels, encoding))
    rgb = torch.from_numpy(image_to_rgb(image)).permute(2, 0, 1).float() / 255
    expected = fit_to_input(rgb, (H, W))
    got = frame_input(image, (H, W))
    assert got.shape == (3, H, W) and got.dtype == torch.float32
    assert torch.equal(got, expected)


def test_label_colours_are_the_palette_and_its_last_colour_past_it():
    rng = np.random.default_rng(4)
    palette = rng.integers(0, 256, (5, 3)).astype(np.uint8)
    labels = rng.integers(0, 256, (H, W)).astype(np.uint8)
    expected = palette[np.minimum(labels, len(palette) - 1)]
    assert np.array_equal(label_colours(labels, palette), expected)
    assert np.array_equal(label_colours(labels, colour_table(palette)), expected)
    frame = rng.integers(0, 256, (H, W, 3)).astype(np.uint8)
    blended = overlay(labels, colour_table(palette), frame).astype(int)
    assert np.abs(blended - (expected.astype(int) + frame) / 2).max() <= 1
    # One row of labels (the point cloud's colours), and none (no valid depth): OpenCV's
    # colour map would return nothing for the one and stop the process for the other.
    assert np.array_equal(label_colours(labels[3:4], palette), expected[3:4])
    for empty in ((1, 0), (0, 5)):
        assert label_colours(np.zeros(empty, np.uint8), palette).shape == empty + (3,)


def test_depth_is_resized_to_a_new_array_with_nan_where_not_finite():
    rng = np.random.default_rng(6)
    depth = rng.uniform(1, 80, (12, 20)).astype(np.float32)
    same = resize_depth(depth, (12, 20))
    assert np.array_equal(same, depth) and not np.shares_memory(same, depth)
    bigger = resize_depth(depth, (24, 40))
    assert bigger.shape == (24, 40) and bigger.dtype == np.float32 and np.isfinite(bigger).all()
    depth[2, 3], depth[5, 7], depth[9, 9] = np.inf, -np.inf, np.nan
    for size in ((12, 20), (24, 40)):
        out = resize_depth(depth, size)
        assert not np.isinf(out).any() and np.isnan(out).any()
        assert np.isfinite(out[~np.isnan(out)]).all()
    # Finite values whose float32 sum would overflow are finite depth all the same.
    huge = np.full((12, 20), 3e38, np.float32)
    assert np.array_equal(resize_depth(huge, (12, 20)), huge)


def test_an_event_only_model_gets_no_frames_and_still_answers_each(tmp_path, monkeypatch):
    from gep_model.config import TemporalConfig
    torch.manual_seed(0)
    tiny = variant_config('gep_tiny', input_size=(H, W))
    config = variant_config('gep_tiny', input_size=(H, W), temporal=TemporalConfig(
        **{**tiny.temporal.__dict__, 'image_tokens': False}))
    event_only = load_artifact(save_artifact(GEPModel(config), tmp_path / 'event_only'))
    frames, infer_images = [], []
    monkeypatch.setattr('gep_ros.pipeline.frame_input',
                        lambda *args: frames.append(args) or torch.zeros(3, H, W))
    pipe, out = make_pipeline(event_only)
    infer = pipe.runtime.infer

    def recording(events, images, has_image, **kwargs):
        infer_images.append(bool(has_image.any()))
        return infer(events, images, has_image, **kwargs)
    pipe.runtime.infer = recording
    play(pipe, T0, frames=3)
    assert pipe.flush(timeout=60)
    pipe.close()
    assert not frames and infer_images == [False] * 3
    colour = decode_image(out.by_topic['/cam0/segmentation/color'][0])
    assert colour.array.shape == (H, W, 3)  # the overlay still has its frame
    assert sorted(out.stamps('/cam0/depth/image')) == [T0 + (i + 1) * 50 * MS for i in range(3)]


def test_flush_cuts_waiting_frames_and_gives_up_after_its_timeout(artifact):
    # The end of an input (the node's ~/flush): a frame still waiting for the events up to
    # its stamp is cut with the events there are; a step that does not return makes flush
    # give up after its timeout and say so, and the window is still published later.
    pipe, out = make_pipeline(artifact)
    pipe.feed('/cam0/events', events_msg(T0, T0 + 30 * MS), T0 + 30 * MS)
    pipe.feed('/cam0/image', image_msg(T0 + 50 * MS), T0 + 51 * MS)
    assert pipe.snapshot()['windows'] == 0  # it waits for events up to 50 ms
    assert pipe.flush(timeout=60)
    assert out.stamps('/cam0/depth/image') == [T0 + 50 * MS]
    release = threading.Event()
    infer = pipe.runtime.infer
    pipe.runtime.infer = lambda *args, **kw: (release.wait(60), infer(*args, **kw))[1]
    pipe.feed('/cam0/events', events_msg(T0 + 50 * MS, T0 + 110 * MS), T0 + 110 * MS)
    pipe.feed('/cam0/image', image_msg(T0 + 100 * MS), T0 + 111 * MS)
    start = time.monotonic()
    assert not pipe.flush(timeout=0.3)
    assert 0.3 <= time.monotonic() - start < 10
    release.set()
    assert pipe.flush(timeout=60)
    pipe.close()
    assert out.stamps('/cam0/depth/image') == [T0 + 50 * MS, T0 + 100 * MS]
