"""Event representations against slow per-event loops, hand-computed values and edge cases.

Each representation is checked against an obviously correct Python loop over a few hundred
random events (exact for counts, allclose for interpolated values), on the CPU and, when a GPU
is present, on CUDA. polarity_rgb is checked against a direct numpy port of the GEP authors'
``accumulate_to_rgb`` (np.add.at, np.percentile on the nonzero counts, dominant polarity wins).
"""

import ast
import json
from pathlib import Path
import platform

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812 (the conventional alias)

from gep_model.events import (EventTensors, fit_to_input, make_representation,
                              nonzero_percentile, reference, render_batch,
                              representation_names, round_to_patch, window_events)
from gep_model.events.fit import antialias_taps, resize_antialiased, resize_arithmetic, \
    resize_call
from gep_model.events.records import RECORD_DTYPE
from gep_ros.wire.events import EVENT_DTYPE

HEIGHT, WIDTH = 12, 16
T0 = 1_700_000_000_000_000_000  # epoch nanoseconds: float64 alone could not hold these exactly
SPAN = 50_000_000  # 50 ms
T1 = T0 + SPAN

DEVICES = ['cpu', pytest.param('cuda', marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason='no CUDA device'))]
ALL_PARAMS = [
    ('polarity_rgb', {}),
    ('polarity_rgb', {'percentile': 99.0, 'channel_order': 'bgr'}),
    ('voxel_grid', {'bins': 5}),
    ('voxel_grid', {'bins': 1}),
    ('histogram', {}),
    ('histogram', {'count_cutoff': 2}),
    ('stacked_histogram', {}),
    ('stacked_histogram', {'bins': 3, 'count_cutoff': None, 'channel_order': 'polarity_major'}),
]


def random_events(seed, n=400, height=HEIGHT, width=WIDTH, spill=3, hot=False):
    """Return EVENT_DTYPE events, unsorted, some off the sensor and some outside [T0, T1]."""
    rng = np.random.default_rng(seed)
    events = np.empty(n, EVENT_DTYPE)
    if hot:
        # A few hot pixels give a spread of counts, so the percentile clip matters.
        events['x'] = np.minimum(rng.geometric(0.3, n) - 1, width + spill - 1)
        events['y'] = np.minimum(rng.geometric(0.3, n) - 1, height + spill - 1)
    else:
        events['x'] = rng.integers(0, width + spill, n)
        events['y'] = rng.integers(0, height + spill, n)
    events['t'] = rng.integers(T0 - SPAN // 10, T1 + SPAN // 10, n, endpoint=True)
    events['t'][:3] = (T0, T1, T0 + SPAN // 2)  # the window's edges and midpoint, exactly
    events['p'] = rng.integers(0, 2, n)
    return events


def kept(events, t0=T0, t1=T1, height=HEIGHT, width=WIDTH):
    """Yield (x, y, t, p) of the events a representation must keep, one Python tuple each."""
    for x, y, t, p in zip(events['x'].tolist(), events['y'].tolist(), events['t'].tolist(),
                          events['p'].tolist()):
        if 0 <= x < width and 0 <= y < height and t0 <= t <= t1:
            yield x, y, t, p


def loop_histogram(events, cutoff=None):
    out = np.zeros((2, HEIGHT, WIDTH), np.float32)
    for x, y, _, p in kept(events):
        out[1 if p else 0, y, x] += 1
    return out if cutoff is None else np.minimum(out, cutoff)


def loop_stacked(events, bins, cutoff, order):
    out = np.zeros((2 * bins, HEIGHT, WIDTH), np.float32)
    for x, y, t, p in kept(events):
        time_bin = min((t - T0) * bins // SPAN, bins - 1)
        channel = 2 * time_bin + p if order == 'time_major' else bins * p + time_bin
        out[channel, y, x] += 1
    return out if cutoff is None else np.minimum(out, cutoff)


def loop_voxel(events, bins, t0=T0, t1=T1):
    out = np.zeros((bins, HEIGHT, WIDTH), np.float64)
    for x, y, t, p in kept(events, t0, t1):
        tau = 0.0 if t1 == t0 else (t - t0) * (bins - 1) / (t1 - t0)
        left = int(tau)
        value = 1.0 if p else -1.0
        out[left, y, x] += value * (1 - (tau - left))
        if left + 1 < bins:
            out[left + 1, y, x] += value * (tau - left)
    return out


def authors_rgb(x, y, p, shape, pct):
    """Render the GEP authors' accumulate_to_rgb rule, ported line by line, before uint8."""
    height, width = shape
    m = (x < width) & (y < height) & (x >= 0) & (y >= 0)
    x = x[m]
    y = y[m]
    p = p[m].astype(bool)
    pos = np.zeros((height, width), dtype=np.float32)
    neg = np.zeros((height, width), dtype=np.float32)
    if x.size:
        np.add.at(pos, (y[p], x[p]), 1)
        np.add.at(neg, (y[~p], x[~p]), 1)

    def norm_with_percentile(a):
        if a.max() == 0:
            return a
        thr = np.percentile(a[a > 0], pct) if np.any(a > 0) else 1.0
        if thr <= 0:
            thr = float(a.max())
        return np.clip(a, 0, thr) / thr

    pos_n = norm_with_percentile(pos)
    neg_n = norm_with_percentile(neg)
    dominate_pos = pos_n >= neg_n
    inten_pos = pos_n * dominate_pos
    inten_neg = neg_n * (~dominate_pos)
    r = np.ones((height, width), dtype=np.float32)
    g = np.ones((height, width), dtype=np.float32)
    b = np.ones((height, width), dtype=np.float32)
    g -= inten_pos
    b -= inten_pos
    r -= inten_neg
    g -= inten_neg
    return np.stack([np.clip(r, 0, 1), np.clip(g, 0, 1), np.clip(b, 0, 1)], axis=-1)


def in_window(events, t0=T0, t1=T1):
    return events[(events['t'] >= t0) & (events['t'] <= t1)]


def render(name, events, device, t0=T0, t1=T1, **params):
    out = make_representation(name, **params)(events, t0, t1, HEIGHT, WIDTH, device=device)
    assert out.device.type == device
    return out.cpu()


# --- each representation against its loop ----------------------------------------------------


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('cutoff', [None, 1, 2])
def test_histogram_matches_loop(device, cutoff):
    for seed in range(3):
        events = random_events(seed)
        out = render('histogram', events, device, count_cutoff=cutoff)
        assert torch.equal(out, torch.from_numpy(loop_histogram(events, cutoff)))


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('bins,cutoff,order', [(10, 10, 'time_major'), (3, None, 'time_major'),
                                               (4, 2, 'polarity_major'), (1, None, 'time_major')])
def test_stacked_histogram_matches_loop(device, bins, cutoff, order):
    for seed in range(3):
        events = random_events(seed, hot=seed == 2)
        out = render('stacked_histogram', events, device, bins=bins, count_cutoff=cutoff,
                     channel_order=order)
        assert torch.equal(out, torch.from_numpy(loop_stacked(events, bins, cutoff, order)))


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('bins', [1, 2, 5, 9])
def test_voxel_grid_matches_loop(device, bins):
    for seed in range(3):
        events = random_events(seed)
        out = render('voxel_grid', events, device, bins=bins)
        np.testing.assert_allclose(out.numpy(), loop_voxel(events, bins), rtol=0, atol=1e-5)


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('pct', [90.0, 99.0, 50.0, 0.0, 100.0])
@pytest.mark.parametrize('hot', [False, True])
def test_polarity_rgb_matches_authors(device, pct, hot):
    for seed in range(3):
        events = random_events(seed, hot=hot)
        out = render('polarity_rgb', events, device, percentile=pct)  # (3, H, W)
        window = in_window(events)
        theirs = authors_rgb(window['x'].astype(np.int64), window['y'].astype(np.int64),
                             window['p'], (HEIGHT, WIDTH), pct)  # (H, W, 3)
        np.testing.assert_array_equal(out.permute(1, 2, 0).numpy(), theirs)
        # What the authors save: the same bytes after their uint8 quantisation.
        np.testing.assert_array_equal((out.permute(1, 2, 0).numpy() * 255).astype(np.uint8),
                                      (theirs * 255).astype(np.uint8))


def test_polarity_rgb_bgr_swaps_red_and_blue():
    events = random_events(4, hot=True)
    rgb = render('polarity_rgb', events, 'cpu')
    bgr = render('polarity_rgb', events, 'cpu', channel_order='bgr')
    assert torch.equal(bgr, rgb[[2, 1, 0]])


def test_polarity_rgb_colours():
    events = np.zeros(3, EVENT_DTYPE)
    events['x'], events['y'], events['t'], events['p'] = [1, 2, 2], [0, 0, 0], T0, [1, 0, 0]
    out = render('polarity_rgb', events, 'cpu')
    assert out[:, 0, 1].tolist() == [1.0, 0.0, 0.0]  # one ON event: full red
    assert out[:, 0, 2].tolist() == [0.0, 0.0, 1.0]  # two OFF events: full blue
    assert out[:, 1:].eq(1).all() and out[:, 0, 0].eq(1).all()  # white elsewhere


@pytest.mark.parametrize('device', DEVICES)
def test_nonzero_percentile_matches_numpy(device):
    rng = np.random.default_rng(7)
    for trial in range(40):
        size = int(rng.integers(1, 300))
        values = rng.integers(0, 12, size).astype(np.float32) * (rng.random(size) < 0.6)
        pct = float(rng.choice([0.0, 12.5, 50.0, 90.0, 95.0, 99.0, 100.0, rng.random() * 100]))
        got = nonzero_percentile(torch.from_numpy(values)[None].to(device), pct)[0].item()
        nonzero = values[values > 0]
        want = np.percentile(nonzero, pct) if nonzero.size else 0.0
        assert got == want, (trial, pct, nonzero)
    # Interpolations where numpy's two float32 formulas (from below for gamma < 0.5, from above
    # otherwise) round differently: only the right choice matches to the bit.
    values = torch.tensor([[0.0, 4.0, 0.0, 1.0]], device=device)
    for pct in (10.0, 20.0, 40.0, 60.0, 90.0):
        want = np.percentile(np.array([1, 4], np.float32), pct)
        assert nonzero_percentile(values, pct)[0].item() == want, pct


# --- hand-computed time scaling ---------------------------------------------------------------


def one_event(t, p=1, x=3, y=2):
    events = np.zeros(1, EVENT_DTYPE)
    events['x'], events['y'], events['t'], events['p'] = x, y, t, p
    return events


@pytest.mark.parametrize('fraction,bins,expected', [
    (0.5, 5, {2: 1.0}),  # midpoint of 5 bins: wholly bin 2
    (0.25, 5, {1: 1.0}),  # a quarter: bin centre 1
    (0.125, 5, {0: 0.5, 1: 0.5}),  # an eighth: tau 0.5
    (0.25, 4, {0: 0.25, 1: 0.75}),  # tau = 0.75
    (0.75, 3, {1: 0.5, 2: 0.5}),  # tau = 1.5
    (0.0, 5, {0: 1.0}),  # window start: bin 0
    (1.0, 5, {4: 1.0}),  # window end: last bin
    (0.6, 2, {0: 0.4, 1: 0.6}),
])
def test_voxel_time_scaling_by_hand(fraction, bins, expected):
    t = T0 + int(SPAN * fraction)
    for p, sign in ((1, 1.0), (0, -1.0)):
        out = render('voxel_grid', one_event(t, p), 'cpu', bins=bins)
        want = torch.zeros(bins, HEIGHT, WIDTH)
        for time_bin, share in expected.items():
            want[time_bin, 2, 3] = sign * share
        torch.testing.assert_close(out, want, rtol=0, atol=1e-7)


def test_voxel_bins_sum_to_polarity_balance():
    events = random_events(11)
    voxel = render('voxel_grid', events, 'cpu', bins=7).sum(0)
    counts = render('histogram', events, 'cpu')
    torch.testing.assert_close(voxel, counts[1] - counts[0], rtol=0, atol=1e-5)


def test_stacked_time_bins_by_hand():
    rep = make_representation('stacked_histogram', bins=4, count_cutoff=None)
    offsets = [0, SPAN // 4 - 1, SPAN // 4, SPAN // 2, SPAN - 1, SPAN]
    events = np.concatenate([one_event(T0 + offset, p=1, x=i) for i, offset in enumerate(offsets)])
    out = rep(events, T0, T1, HEIGHT, WIDTH)
    for x, time_bin in enumerate([0, 0, 1, 2, 3, 3]):  # t == t1 joins the last bin
        assert out[:, 2, x].nonzero().flatten().tolist() == [rep.channel_of(time_bin, True)]
    assert rep.channel_of(1, True) == 3
    polarity_major = make_representation('stacked_histogram', bins=4,
                                         channel_order='polarity_major')
    assert polarity_major.channel_of(1, True) == 5 and polarity_major.channel_of(1, False) == 1


# --- edge cases -------------------------------------------------------------------------------


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('name,params', ALL_PARAMS)
def test_empty_window(device, name, params):
    rep = make_representation(name, **params)
    empty = np.zeros(0, EVENT_DTYPE)
    outside = one_event(T1 + 1)  # nothing inside the window either
    for events in (empty, outside):
        out = rep(events, T0, T1, HEIGHT, WIDTH, device=device)
        assert out.shape == (rep.channels, HEIGHT, WIDTH) and out.dtype == torch.float32
        assert out.eq(rep.background).all()
    assert rep.background == (1.0 if name == 'polarity_rgb' else 0.0)


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('name,params', ALL_PARAMS)
def test_one_event(device, name, params):
    rep = make_representation(name, **params)
    out = rep(one_event(T0 + SPAN // 3, p=0), T0, T1, HEIGHT, WIDTH, device=device).cpu()
    touched = (out != rep.background).any(0)
    assert touched.nonzero().tolist() == [[2, 3]]
    if name == 'polarity_rgb':
        assert out[:, 2, 3].tolist() == ([0.0, 0.0, 1.0] if params.get('channel_order', 'rgb')
                                         == 'rgb' else [1.0, 0.0, 0.0])
    elif name == 'voxel_grid':
        assert out[:, 2, 3].sum().item() == pytest.approx(-1.0)
    else:
        assert out[:, 2, 3].sum().item() == 1.0


@pytest.mark.parametrize('device', DEVICES)
def test_zero_length_window(device):
    events = random_events(5)
    events['t'][::2] = T0  # half the events at the instant, the rest outside it
    voxel = render('voxel_grid', events, device, t1=T0, bins=5)
    assert voxel[1:].eq(0).all()
    counts = render('histogram', in_window(events, T0, T0), 'cpu')
    assert torch.equal(voxel[0], counts[1] - counts[0])
    stacked = render('stacked_histogram', events, device, t1=T0, bins=3, count_cutoff=None)
    assert torch.equal(stacked[:2], counts) and stacked[2:].eq(0).all()
    with pytest.raises(ValueError, match='ends before'):
        render('voxel_grid', events, device, t0=T1, t1=T0)


@pytest.mark.parametrize('device', DEVICES)
def test_drops_are_counted(device):
    x = torch.tensor([0, -1, WIDTH - 1, WIDTH, 5, 5, 2, 3])
    y = torch.tensor([0, 0, HEIGHT - 1, 0, -4, HEIGHT, 1, 1])
    t = torch.tensor([T0, T0, T1, T0, T0, T0, T0 - 1, T1 + 1])
    p = torch.tensor([1, 0, 1, 1, 0, 0, 1, 1], dtype=torch.uint8)
    on_sensor = EventTensors.from_events({'x': x, 'y': y, 't': t, 'p': p}, HEIGHT, WIDTH,
                                         device=device)
    assert len(on_sensor) == 4 and on_sensor.dropped_outside_sensor == 4
    window = on_sensor.in_window(T0, T1)
    assert len(window) == 2 and window.dropped_outside_window == 2
    assert window.dropped_outside_sensor == 4 and window.device.type == device
    assert sorted(zip(window.x.tolist(), window.y.tolist())) == [(0, 0), (WIDTH - 1, HEIGHT - 1)]
    counts = make_representation('histogram').render(window, T0, T1)
    assert counts.sum().item() == 2
    # Direct calls drop the same events, and render where the event tensors are.
    on_device = tuple(column.to(device) for column in (x, y, t, p))
    direct = make_representation('histogram')(on_device, T0, T1, HEIGHT, WIDTH)
    assert direct.device.type == device and torch.equal(direct, counts)


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('name,params', ALL_PARAMS)
def test_event_order_is_irrelevant(device, name, params):
    events = random_events(8, hot=True)
    shuffled = events[np.random.default_rng(0).permutation(len(events))]
    ordered = np.sort(events, order='t')
    outs = [render(name, e, device, **params) for e in (events, shuffled, ordered)]
    for out in outs[1:]:
        if name == 'voxel_grid':  # float sums in another order: equal up to rounding
            torch.testing.assert_close(out, outs[0], rtol=0, atol=1e-5)
        else:
            assert torch.equal(out, outs[0])


@pytest.mark.parametrize('name,params', ALL_PARAMS)
def test_input_forms_agree(name, params):
    events = random_events(9)
    rep = make_representation(name, **params)
    columns = {key: torch.from_numpy(events[key].astype(np.int64)) for key in 'xytp'}
    signed = dict(columns, p=columns['p'] * 2 - 1)  # polarity as -1 / +1
    forms = [
        columns,
        (columns['x'], columns['y'], columns['t'], columns['p']),
        signed,
        {key: events[key] for key in 'xytp'},
        EventTensors.from_events(events, HEIGHT, WIDTH),
    ]
    want = rep(events, T0, T1, HEIGHT, WIDTH)
    for form in forms:
        assert torch.equal(rep(form, T0, T1, HEIGHT, WIDTH), want)


def test_float_times():
    events = random_events(10)
    seconds = {key: events[key] for key in 'xyp'}
    seconds['t'] = (events['t'] - T0).astype(np.float64) * 1e-9
    for name, params in ALL_PARAMS:
        rep = make_representation(name, **params)
        got = rep(seconds, 0.0, SPAN * 1e-9, HEIGHT, WIDTH)
        want = rep(events, T0, T1, HEIGHT, WIDTH)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    # Float bounds against integer epoch nanoseconds select exactly the events integer bounds do
    # (a float32 comparison would lump together everything within ~100 s).
    events['t'][3:6] = (T0 + 511, T0 + 512, T0 + 513)
    by_float = window_events(events, float(T0 + 512), float(T1), HEIGHT, WIDTH)
    by_int = window_events(events, T0 + 512, T1, HEIGHT, WIDTH)
    assert by_float.t.min().item() == T0 + 512
    assert torch.equal(by_float.t, by_int.t) and len(by_float) < len(window_events(
        events, T0, T1, HEIGHT, WIDTH))


def test_outputs_shape_dtype_range():
    events = random_events(12, hot=True)
    for name, params in ALL_PARAMS:
        rep = make_representation(name, **params)
        out = rep(events, T0, T1, HEIGHT, WIDTH)
        assert out.shape == (rep.channels, HEIGHT, WIDTH) and out.dtype == torch.float32
        if name == 'polarity_rgb':
            assert out.min() >= 0 and out.max() <= 1
        elif name == 'voxel_grid':
            assert out.abs().max() > 0
        else:
            assert out.min() >= 0 and torch.equal(out, out.round())
            if params.get('count_cutoff', 10 if name == 'stacked_histogram' else None):
                assert out.max() <= params.get('count_cutoff', 10)


# --- interface --------------------------------------------------------------------------------


def test_registry_and_params_round_trip():
    assert representation_names() == ['histogram', 'polarity_rgb', 'stacked_histogram',
                                      'voxel_grid']
    for name, params in ALL_PARAMS:
        rep = make_representation(name, **params)
        config = json.loads(json.dumps(rep.params()))
        assert config['name'] == name
        assert make_representation(**config) == rep
    with pytest.raises(ValueError, match='unknown representation'):
        make_representation('time_surface')
    with pytest.raises(ValueError):
        make_representation('voxel_grid', bins=0)
    with pytest.raises(ValueError):
        make_representation('stacked_histogram', channel_order='bins_first')
    with pytest.raises(ValueError):
        make_representation('polarity_rgb', percentile=120)


@pytest.mark.parametrize('device', DEVICES)
def test_render_batch(device):
    rep = make_representation('polarity_rgb')
    windows = [(random_events(seed), T0, T1) for seed in range(3)]
    batch = render_batch(rep, windows, HEIGHT, WIDTH, device=device)
    assert batch.shape == (3, 3, HEIGHT, WIDTH) and batch.device.type == device
    for image, (events, t0, t1) in zip(batch, windows):
        assert torch.equal(image.cpu(), rep(events, t0, t1, HEIGHT, WIDTH))
    padded = render_batch(rep, windows, HEIGHT, WIDTH, size=(14, 28), mode='pad')
    assert padded.shape == (3, 3, 14, 28) and padded[..., HEIGHT:, :].eq(1).all()
    assert render_batch(rep, [], HEIGHT, WIDTH, size=14).shape == (0, 3, 14, 14)


def test_fit_to_input_modes():
    image = torch.arange(2 * 4 * 6, dtype=torch.float32).view(2, 4, 6)
    resized = fit_to_input(image, (8, 12))
    assert resized.shape == (2, 8, 12)
    constant = fit_to_input(torch.full((3, 10, 10), 0.25), (7, 5))
    torch.testing.assert_close(constant, torch.full((3, 7, 5), 0.25))
    assert torch.equal(fit_to_input(image, (4, 6)), image)
    # Centre crop, and centred padding where the input is smaller.
    assert torch.equal(fit_to_input(image, (2, 2), mode='crop'), image[:, 1:3, 2:4])
    grown = fit_to_input(image, (6, 6), mode='crop', fill=-1)
    assert torch.equal(grown[:, 1:5], image) and grown[:, [0, 5]].eq(-1).all()
    # Top-left anchored padding and cutting.
    padded = fit_to_input(image, (5, 9), mode='pad', fill=1.0)
    assert torch.equal(padded[:, :4, :6], image)
    assert padded[:, 4:].eq(1).all() and padded[:, :, 6:].eq(1).all()
    assert torch.equal(fit_to_input(image, (3, 5), mode='pad'), image[:, :3, :5])
    batch = fit_to_input(image[None].repeat(2, 1, 1, 1), 14)
    assert batch.shape == (2, 2, 14, 14)
    with pytest.raises(ValueError):
        fit_to_input(image, (4, 4), mode='stretch')


@pytest.mark.parametrize('sensor, size', [((260, 346), (252, 350)), ((480, 640), (476, 644)),
                                          ((100, 120), (56, 84)), ((720, 1280), (252, 448))])
def test_compiled_resize_gives_torchs_bits_or_leaves_it_to_torch(sensor, size):
    g = torch.Generator().manual_seed(sum(sensor))
    images = torch.rand(2, 3, *sensor, generator=g)  # not the image the check used
    want = F.interpolate(images, size=size, mode='bilinear', align_corners=False, antialias=True)
    assert torch.equal(fit_to_input(images, size), want)
    assert torch.equal(fit_to_input(images[1], size), want[1])
    fused = resize_arithmetic(*sensor, *size)
    if fused is not None:
        assert torch.equal(resize_antialiased(images, *size, fused), want)
    if platform.machine() in ('x86_64', 'aarch64') and sensor != (720, 1280):
        # The pipeline's sizes take the compiled path on the robots' CPUs; the strong
        # shrinking (about 3x, 8 taps) differs from torch's arithmetic and is left to torch.
        assert fused is not None
    image = images[0].clone().requires_grad_()
    fit_to_input(image, size).sum().backward()  # a tensor that needs gradients: torch's path
    assert image.grad is not None and image.grad.shape == image.shape


def test_compiled_resize_refuses_taps_outside_the_image():
    from gep_model.events.kernels import kernels
    start, count, weights = antialias_taps(10, 6)
    src, tmp, dst = np.zeros(10, np.float32), np.zeros(6, np.float32), np.zeros(6, np.float32)
    one = (np.zeros(1, np.int32), np.ones(1, np.int32), np.ones(1, np.float32))
    kernels.resize_aa(src, tmp, dst, 1, 1, 10, 1, 6, start, count, weights, *one, False)
    with pytest.raises(ValueError, match='a tap outside the image'):
        kernels.resize_aa(src, tmp, dst, 1, 1, 10, 1, 6, start + 5, count, weights, *one,
                          False)


def test_round_to_patch():
    assert round_to_patch((480, 640)) == (476, 644)
    assert round_to_patch((480, 640), rounding='down') == (476, 630)
    assert round_to_patch((480, 640), rounding='up') == (490, 644)
    assert round_to_patch(224) == (224, 224)
    assert round_to_patch(21) == (28, 28)  # halves round up
    assert round_to_patch(3) == (14, 14)  # never below one patch
    assert round_to_patch((720, 1280), patch_size=16) == (720, 1280)


def test_gep_model_does_not_import_gep_ros():
    package = Path(__file__).resolve().parents[1] / 'gep_model' / 'events'
    for source in package.glob('*.py'):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or '']
            else:
                continue
            assert not any(name.split('.')[0] == 'gep_ros' for name in names), source


# --- against the code they replaced, bit for bit ----------------------------------------------


def _bits(image):
    """Return the float32 bits of an image, so that -0.0 and 0.0 differ."""
    return image.contiguous().view(torch.int32)


def _same_as_before(name, params, events, t0, t1, height, width, device='cpu'):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the voxel grid's reference adds in order only on one thread
    try:
        want = reference.render(name, params, events, t0, t1, height, width, device)
    finally:
        torch.set_num_threads(threads)
    got = make_representation(name, **params)(events, t0, t1, height, width, device=device)
    assert got.dtype == want.dtype == torch.float32 and got.shape == want.shape
    assert torch.equal(_bits(got), _bits(want)), (name, params)


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('name,params', ALL_PARAMS + [('polarity_rgb', {'percentile': 50.0}),
                                                      ('voxel_grid', {'bins': 9})])
def test_bit_identical_to_the_previous_code_on_random_windows(device, name, params):
    for seed in range(6):
        events = random_events(seed, n=[3, 4, 40, 400, 5000, 33000][seed], hot=seed % 2 == 1)
        _same_as_before(name, params, events, T0, T1, HEIGHT, WIDTH, device)
        _same_as_before(name, params, events, T0 + SPAN // 2, T0 + SPAN // 2, HEIGHT, WIDTH,
                        device)  # t1 == t0
        _same_as_before(name, params, events[:0], T0, T1, HEIGHT, WIDTH, device)  # empty
        _same_as_before(name, params, events, T1 + 1, T1 + 2, HEIGHT, WIDTH, device)  # none in


def _real_windows(bags_dir, name, count):
    """Consecutive windows of `count` events of a real recording, with their bounds."""
    from gep_ros.bag import BagReader
    from gep_ros.cli.bag_cmd import decode_topic
    with BagReader(bags_dir / name) as reader:
        events, _, _, sensor = decode_topic(reader, '/event_camera/events', 'sensor')
    for start in range(0, len(events) - count + 1, count)[:4]:
        chunk = events[start:start + count]
        yield chunk, int(chunk['t'][0]), int(chunk['t'][-1]), sensor


@pytest.mark.parametrize('bag,count', [('evpy_test_events_1', 30_000),
                                       ('evpy_test_events_2/test_events_2_0.mcap', 30_000),
                                       ('codecs_test_data_evt3_trigger', 20_000)])
@pytest.mark.parametrize('name,params', ALL_PARAMS)
def test_bit_identical_to_the_previous_code_on_real_windows(bags_dir, bag, count, name, params):
    for events, t0, t1, (width, height) in _real_windows(bags_dir, bag, count):
        _same_as_before(name, params, events, t0, t1, height, width)
        _same_as_before(name, params, events, (t0 + t1) // 2, (t0 + t1) // 2, height, width)


def test_voxel_sums_do_not_depend_on_threads():
    events = random_events(9, n=40_000, hot=True)
    rep = make_representation('voxel_grid', bins=5)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = rep(events, T0, T1, HEIGHT, WIDTH)
        torch.set_num_threads(2)
        two = rep(events, T0, T1, HEIGHT, WIDTH)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(_bits(one), _bits(two))


@pytest.mark.parametrize('device', DEVICES)
def test_count_thresholds_on_the_host_and_on_the_device_agree(device):
    # In CPU memory the polarity image's counts and percentile come from the compiled passes
    # and numpy (host_counts); the torch code (other devices' path) must give the same bits,
    # and both what nonzero_percentile gives on the images.
    from gep_model.events.histogram import count_index, polarity_index
    from gep_model.events.polarity_rgb import count_thresholds, host_counts
    for seed in range(8):
        raw = random_events(seed, n=[3, 50, 400, 3000][seed % 4], hot=seed % 2 == 1)
        events = window_events(raw, T0, T1, HEIGHT, WIDTH, device=device)
        on_host = window_events(raw, T0, T1, HEIGHT, WIDTH)
        index = polarity_index(events)
        counts = count_index(index, 2 * HEIGHT * WIDTH)
        for pct in (0.0, 12.5, 50.0, 90.0, 99.0, 100.0):
            host_counted, bins, host = host_counts(on_host, pct)
            assert torch.equal(host_counted, counts.cpu())
            assert bins == int(counts.max()) + 1
            torch_path = count_thresholds(counts, index, events.p, pct).cpu()
            images = nonzero_percentile(counts.view(2, -1), pct).cpu()
            assert torch.equal(_bits(host), _bits(torch_path)), (seed, pct)
            assert torch.equal(_bits(host), _bits(images)), (seed, pct)


@pytest.mark.parametrize('order', ['rgb', 'bgr'])
def test_polarity_image_compiled_and_torch_paths_give_the_same_bits(order):
    rep = make_representation('polarity_rgb', percentile=90.0, channel_order=order)
    for seed in range(6):
        raw = random_events(seed, n=[3, 4, 70, 5000, 20_000, 900][seed], hot=seed % 2 == 0)
        events = window_events(raw[:0] if seed == 0 else raw, T0, T1, HEIGHT, WIDTH)
        torch_path = rep.render_torch(events)
        if order == 'bgr':
            torch_path = torch_path.flip(0)
        assert torch.equal(_bits(rep.render(events, T0, T1)), _bits(torch_path)), seed


@pytest.mark.parametrize('order', ['rgb', 'bgr'])
def test_polarity_image_from_records_is_the_image_of_the_window(order):
    # Records (the pipeline's windows) are counted without tensors; events off the sensor or
    # outside [t0, t1] (fractional bounds included) drop out as window_events drops them.
    # The wire's records are the ones counted without tensors (else they silently are not).
    assert EVENT_DTYPE == RECORD_DTYPE
    rep = make_representation('polarity_rgb', percentile=90.0, channel_order=order)
    for seed in range(5):
        raw = random_events(seed, n=[3, 4, 70, 5000, 900][seed], hot=seed % 2 == 0)
        raw = raw[:0] if seed == 0 else raw
        for t0, t1 in ((T0, T1), (T0 + 0.5, T1 - 0.25), (T1, T1)):
            want = rep.render(window_events(raw, t0, t1, HEIGHT, WIDTH), t0, t1)
            got = rep(raw, t0, t1, HEIGHT, WIDTH)
            assert torch.equal(_bits(got), _bits(want)), (seed, t0, t1)
    assert torch.equal(rep(raw[::2], T0, T1, HEIGHT, WIDTH),  # strided records
                       rep(raw[::2].copy(), T0, T1, HEIGHT, WIDTH))
    with pytest.raises(ValueError, match='window ends before it starts'):
        rep(raw, T1, T0, HEIGHT, WIDTH)
    with pytest.raises(ValueError, match='sensor size must be positive'):
        rep(raw, T0, T1, 0, WIDTH)


@pytest.mark.parametrize('hot', [0, 255, 256, 257, 1000])
def test_polarity_thresholds_of_records_with_a_hot_pixel(hot):
    # record_polarity histograms the counts as they grow while no count passes 255, and
    # otherwise by a pass over the pixels: both give numpy's percentile, as host_counts (its
    # numpy thresholds) and nonzero_percentile (torch, over the images) compute it.
    from gep_model.events.polarity_rgb import host_counts, record_counts
    events = np.concatenate([random_events(3, n=3000, hot=True),
                             random_events(4, n=max(hot, 3))[:hot]])
    events['x'][3000:], events['y'][3000:], events['p'][3000:] = 5, 7, 1
    events['t'][3000:] = T0 + 10
    for pct in (0.0, 12.5, 50.0, 90.0, 99.5, 100.0):
        counts, bins, thresholds = record_counts(events, T0, T1, HEIGHT, WIDTH, pct)
        want_counts, want_bins, want = host_counts(
            window_events(events, T0, T1, HEIGHT, WIDTH), pct)
        assert torch.equal(counts, want_counts) and bins == want_bins
        assert counts.max() >= hot
        assert torch.equal(_bits(thresholds), _bits(want)), pct
        images = nonzero_percentile(counts.view(2, -1), pct)
        assert torch.equal(_bits(thresholds), _bits(images)), pct


class _Calls:
    """The compiled kernels, counting the calls of one of them."""

    def __init__(self, kernels, name):
        self.kernels, self.name, self.calls = kernels, name, 0

    def __getattr__(self, attr):
        if attr == self.name:
            self.calls += 1
        return getattr(self.kernels, attr)


@pytest.mark.parametrize('order', ['rgb', 'bgr'])
def test_fitted_polarity_image_is_the_resized_image(order, monkeypatch):
    # render_fitted, the pipeline's input in one call: records in CPU memory are drawn row by
    # row as the compiled resize reads them (draw_resize), never whole; the same bits as
    # fit_to_input of the image. Where fit_to_input resizes by torch (enlarging) or does not
    # resize, so does render_fitted.
    from gep_model.events import polarity_rgb
    from gep_model.events.fit import compiled_resize
    spy = _Calls(polarity_rgb.kernels, 'draw_resize')
    monkeypatch.setattr(polarity_rgb, 'kernels', spy)
    rep = make_representation('polarity_rgb', percentile=90.0, channel_order=order)
    cases = [((260, 346), 30_000, (252, 350)), ((480, 640), 20_000, (476, 644)),
             ((100, 120), 3, (56, 84)), ((100, 120), 0, (56, 84)),
             ((HEIGHT, WIDTH), 400, (HEIGHT, WIDTH)), ((HEIGHT, WIDTH), 400, (28, 28))]
    for seed, ((height, width), n, size) in enumerate(cases):
        raw = random_events(seed, n=max(n, 3), height=height, width=width,
                            hot=seed % 2 == 0)[:n]
        compiled = compiled_resize(height, width, *size) is not None
        for t0, t1 in ((T0, T1), (T0 + 0.5, T1 - 0.25)):
            image = rep.render(window_events(raw, t0, t1, height, width), t0, t1)
            calls = spy.calls
            got = rep.render_fitted(raw, t0, t1, height, width, size)
            assert spy.calls == calls + compiled, (height, width, size)
            assert torch.equal(_bits(got), _bits(fit_to_input(image, size))), (seed, t0)
    if platform.machine() in ('x86_64', 'aarch64'):  # the robots' CPUs take the compiled path
        assert spy.calls > 0
    raw = random_events(9, n=900, hot=True)
    tensors = window_events(raw, T0, T1, HEIGHT, WIDTH)  # not records: rendered, then resized
    assert torch.equal(rep.render_fitted(tensors, T0, T1, HEIGHT, WIDTH, (8, 10)),
                       fit_to_input(rep(tensors, T0, T1, HEIGHT, WIDTH), (8, 10)))
    assert torch.equal(rep.render_fitted(raw[::2], T0, T1, HEIGHT, WIDTH, (8, 10)),
                       fit_to_input(rep(raw[::2], T0, T1, HEIGHT, WIDTH), (8, 10)))


@pytest.mark.parametrize('name, params', [
    ('polarity_rgb', {}), ('histogram', {}), ('voxel_grid', {'bins': 5}),
    ('stacked_histogram', {'bins': 10, 'count_cutoff': 3})])
def test_records_on_a_large_sensor_give_the_image_of_the_window(name, params):
    # Outputs past a core's cache prefetch each record's cell ahead (record_counts, and the
    # queue of record_stack / record_voxels): the same image; the last records, with
    # nothing ahead of them, included.
    rep = make_representation(name, **params)
    raw = random_events(7, n=5000, height=480, width=640, spill=40)
    want = rep.render(window_events(raw, T0, T1, 480, 640), T0, T1)
    assert torch.equal(_bits(rep(raw, T0, T1, 480, 640)), _bits(want))


RECORD_CASES = [('histogram', {}), ('histogram', {'count_cutoff': 2}),
                ('stacked_histogram', {'bins': 10, 'count_cutoff': 3}),
                ('stacked_histogram', {'bins': 7, 'count_cutoff': None,
                                       'channel_order': 'polarity_major'}),
                ('stacked_histogram', {'bins': 1}), ('voxel_grid', {'bins': 5}),
                ('voxel_grid', {'bins': 1}), ('voxel_grid', {'bins': 9})]


@pytest.mark.parametrize('name, params', RECORD_CASES)
def test_counts_and_voxels_from_records_are_those_of_the_window(name, params):
    # The histograms and the voxel grid of records (the pipeline's windows) are rendered by
    # one compiled pass, with the bits of the tensors' render of the window: times binned as
    # time_bins / bin_positions do, floats added in bincount's order. Integer windows must
    # take the compiled pass (the tensors' way would give the same bits and hide its loss);
    # fractional bounds bin in float64, by the tensors, except for the histogram.
    rep = make_representation(name, **params)
    for seed in range(5):
        raw = random_events(seed, n=[3, 70, 5000, 900, 20_000][seed], hot=seed % 2 == 0)
        # Events on the bin centres of a 392 ns window, where tau is a whole number: times
        # a reciprocal of the span instead of a division would put some just below it.
        centres = random_events(seed, n=9)
        centres['t'] = T0 + 3 + 49 * np.arange(9)
        raw = np.concatenate([raw, centres])
        for t0, t1 in ((T0, T1), (T0 + 3, T0 + 3 + 392), (T1, T1), (T0 + 0.5, T1 - 0.25),
                       (np.int64(T0), np.int64(T1))):
            want = rep.render(window_events(raw, t0, t1, HEIGHT, WIDTH), t0, t1)
            got = rep(raw, t0, t1, HEIGHT, WIDTH)
            assert got.dtype == want.dtype and got.shape == want.shape
            assert torch.equal(_bits(got), _bits(want)), (seed, t0, t1)
            integer = not isinstance(t0, float)
            direct = rep.render_records(raw, t0, t1, HEIGHT, WIDTH)
            assert (direct is not None) == (integer or name == 'histogram'), (t0, t1)
    with pytest.raises(ValueError, match='window ends before it starts'):
        rep(raw, T1, T0, HEIGHT, WIDTH)


def test_counts_that_float32_might_not_hold_take_the_tensors_way(monkeypatch):
    # Counts are kept in float32, exact up to 2^24: a window whose counts might pass that
    # (more records than that, no cutoff below it) is counted by the tensors, in int32.
    from gep_model.events import records
    monkeypatch.setattr(records, 'FLOAT_COUNTS', 50)
    raw = random_events(1, n=400, hot=True)
    for params, compiled in (({}, False), ({'count_cutoff': 60}, False),
                             ({'count_cutoff': 50}, True)):
        rep = make_representation('histogram', **params)
        assert (rep.render_records(raw, T0, T1, HEIGHT, WIDTH) is not None) == compiled
        want = rep.render(window_events(raw, T0, T1, HEIGHT, WIDTH), T0, T1)
        assert torch.equal(rep(raw, T0, T1, HEIGHT, WIDTH), want)


def test_record_kernels_refuse_what_would_overrun():
    from gep_model.events.kernels import kernels
    records = random_events(0, n=10)
    with pytest.raises(ValueError, match='mismatched'):
        kernels.record_stack(records, T0, T1, WIDTH, HEIGHT, T0, SPAN, 3,
                             np.empty(2 * 3 * HEIGHT * WIDTH - 1, np.float32), False, 5)
    with pytest.raises(ValueError, match='cutoff outside'):  # float32 counts one by one
        kernels.record_stack(records, T0, T1, WIDTH, HEIGHT, T0, SPAN, 3,
                             np.empty(2 * 3 * HEIGHT * WIDTH, np.float32), False, 2**24 + 1)
    with pytest.raises(ValueError, match='out of range'):  # span * bins past int64
        kernels.record_voxels(records, T0, T1, WIDTH, HEIGHT, T0, 2**62, 5,
                              np.empty(5 * HEIGHT * WIDTH, np.float32))
    for lo, hi in ((T0 - 1, T1), (T0, T1 + 1)):  # a window past the binned span
        with pytest.raises(ValueError, match='out of range'):
            kernels.record_voxels(records, lo, hi, WIDTH, HEIGHT, T0, SPAN, 5,
                                  np.empty(5 * HEIGHT * WIDTH, np.float32))
        with pytest.raises(ValueError, match='out of range'):
            kernels.record_stack(records, lo, hi, WIDTH, HEIGHT, T0, SPAN, 3,
                                 np.empty(2 * 3 * HEIGHT * WIDTH, np.float32), False, 5)
    with pytest.raises(TypeError, match='records must be'):
        kernels.record_voxels(memoryview(b'x' * 16)[::2], T0, T1, WIDTH, HEIGHT, T0, SPAN, 5,
                              np.empty(5 * HEIGHT * WIDTH, np.float32))


def test_polarity_kernels_refuse_what_would_overrun():
    from gep_model.events.kernels import kernels
    counts = np.zeros(2 * 6, np.int32)
    counts[3] = 5
    image = np.empty(3 * 6, np.float32)
    with pytest.raises(ValueError, match='at or above bins'):
        kernels.draw_polarity(counts, 6, 5, 2.0, 1.0, image)
    with pytest.raises(ValueError, match='mismatched'):
        kernels.draw_polarity(counts, 7, 6, 2.0, 1.0, image)
    # Planes long enough for the vector loop, which checks eight pixels a step.
    for at, value in ((3, 5), (20 + 9, 7), (20 + 17, -1)):
        long_counts = np.zeros(2 * 20, np.int32)
        long_counts[at] = value
        with pytest.raises(ValueError, match='at or above bins'):
            kernels.draw_polarity(long_counts, 20, 5, 2.0, 1.0, np.empty(3 * 20, np.float32))
    records = random_events(0, n=10)
    thresholds = np.empty(2, np.float32)
    with pytest.raises(ValueError, match='mismatched'):
        kernels.record_polarity(records, T0, T1, 3, 2, 90.0, counts[:-1], thresholds)
    for pct in (-1.0, 100.5, float('nan')):
        with pytest.raises(ValueError, match='percentile outside'):
            kernels.record_polarity(records, T0, T1, 3, 2, pct, counts, thresholds)
    out, args = resize_call(3, 2, 3, 1, 2, False)
    with pytest.raises(ValueError, match='at or above bins'):
        kernels.draw_resize(counts, 5, 2.0, 1.0, False, *args)
    kernels.draw_resize(counts, 6, 2.0, 1.0, False, *args)
    _, ones = resize_call(1, 2, 3, 1, 2, False)
    with pytest.raises(ValueError, match='mismatched'):  # one channel: no polarity image
        kernels.draw_resize(counts[:6], 6, 2.0, 1.0, False, *ones)
    x, y = np.array([1, 20], np.int64), np.array([0, 0], np.int64)
    p = np.zeros(2, np.uint8)
    with pytest.raises(ValueError, match='outside the counts'):
        kernels.polarity_counts(x, y, p, 3, 6, counts, np.empty(2, np.int32))
    for at, value in ((3, 9), (6 + 5, -1)):  # plane 6: one step of four and a tail of two
        bad = np.zeros(2 * 6, np.int32)
        bad[at] = value
        with pytest.raises(ValueError, match='at or above bins'):
            kernels.pixel_histogram(bad, 9, np.zeros(2 * 9, np.int64))
    with pytest.raises(ValueError, match='mismatched'):
        kernels.pixel_histogram(np.zeros(12, np.int32), 9, np.zeros(9, np.int64))


@pytest.mark.parametrize('height, width, n', [(12, 16, 40), (12, 16, 3000), (5, 7, 300)])
def test_pixel_and_event_histograms_of_the_counts_agree(height, width, n):
    # Dense windows take the counts' histogram over the pixels, sparse ones over the events'
    # own counts (polarity_rgb.PIXEL_PASS_ABOVE): the same histogram, planes of any length.
    from gep_model.events.kernels import kernels
    rng = np.random.default_rng(n)
    plane = height * width
    x, y = rng.integers(0, width, n), rng.integers(0, height, n)
    p = rng.integers(0, 2, n).astype(np.uint8)
    counts, index = np.empty(2 * plane, np.int32), np.empty(n, np.int32)
    bins = kernels.polarity_counts(x, y, p, width, plane, counts, index) + 1
    seen = np.zeros(2 * bins, np.int64)
    kernels.count_histogram(index, p, counts, bins, seen)
    by_events = seen.reshape(2, bins) // np.maximum(np.arange(bins), 1)
    by_pixels = np.zeros(2 * bins, np.int64)
    kernels.pixel_histogram(counts, bins, by_pixels)
    by_pixels = by_pixels.reshape(2, bins)
    assert by_pixels[:, 0].sum() == 2 * plane - np.count_nonzero(counts)
    assert np.array_equal(by_pixels[:, 1:], by_events[:, 1:]) and not by_events[:, 0].any()
