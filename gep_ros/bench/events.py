"""`gep bench events`: event representations against the code they replaced, in the same run.

Rows (p50 milliseconds a window, lower is better; ratio = baseline / ours, the speed-up):
GEP's polarity image, the voxel grid (5 bins), the histogram and the stacked histogram (10
bins, cutoff 10) of a 50 ms window of random events (sorted times), at 346x260 with 30k events
(a DAVIS346) and 640x480 with 300k, on the CPU. Ours is the representation called as the
pipeline calls it (numpy events in, sensor and window checks included); the baseline is
`gep_model.events.reference`, the code before the fast paths, on the same windows,
interleaved call by call. Both run on one torch thread (the previous voxel grid is only
deterministic there), with glibc keeping freed memory as `gep` and the node set it.

`fit_<sensor>_to_<input>` rows: the polarity image brought to the model's input size
(`fit_to_input`, the compiled resize where it gives torch's bits) against torch's
`F.interpolate(antialias=True)` on the same image. `polarity_rgb_fitted_<sensor>_<k>k` rows:
the model's input from the window in one call, as the pipeline makes it
(`PolarityRGB.render_fitted`, which draws the image row by row into the resize), against
rendering the image and then `fit_to_input` (the same bits).
"""

import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the conventional alias)

from gep_model.events import fit_to_input, make_representation, reference
from .common import print_table, row, write_json
from .model import SENSORS
from ..wire.events import EVENT_DTYPE

SPAN_NS = 50_000_000
CASES = ((346, 260, 30_000), (640, 480, 300_000))
REPRESENTATIONS = (('polarity_rgb', {}), ('voxel_grid', {'bins': 5}), ('histogram', {}),
                   ('stacked_histogram', {'bins': 10, 'count_cutoff': 10}))
BASELINE = 'gep_model.events.reference (the code before the fast paths), same windows'


def window(width, height, n, seed=0):
    """Return n random EVENT_DTYPE events of a width x height sensor in [0, SPAN_NS]."""
    rng = np.random.default_rng(seed)
    events = np.empty(n, EVENT_DTYPE)
    events['x'] = rng.integers(0, width, n)
    events['y'] = rng.integers(0, height, n)
    events['t'] = np.sort(rng.integers(0, SPAN_NS, n, endpoint=True))
    events['p'] = rng.integers(0, 2, n)
    return events


def p50_ms(ours, baseline, repeat, warmup=3):
    """Median wall times (ms) of two calls, run alternately `repeat` times after a warm-up."""
    for _ in range(warmup):
        ours()
        baseline()
    times = ([], [])
    for _ in range(repeat):
        for fn, out in zip((ours, baseline), times):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return tuple(statistics.median(t) * 1e3 for t in times)


def run(json_path=None, quick=False, command='gep bench events'):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows = []
    try:
        for width, height, n in CASES:
            events = window(width, height, n)
            repeat = (15 if quick else 51) if n < 100_000 else (5 if quick else 15)
            for name, params in REPRESENTATIONS:
                rep = make_representation(name, **params)
                ours, base = p50_ms(
                    lambda: rep(events, 0, SPAN_NS, height, width),
                    lambda: reference.render(name, params, events, 0, SPAN_NS, height, width),
                    repeat)
                label = f'{name}_{width}x{height}_{n // 1000}k'
                r = row(label, 'ms p50', ours, base, BASELINE)
                r['ratio'] = base / ours
                r['torch_threads'] = 1
                rows.append(r)
            image = make_representation('polarity_rgb')(events, 0, SPAN_NS, height, width)
            size = SENSORS[f'{width}x{height}']  # the model's input, as `gep bench model`
            ours, base = p50_ms(
                lambda: fit_to_input(image, size),
                lambda: F.interpolate(image[None], size=size, mode='bilinear',
                                      align_corners=False, antialias=True),
                repeat)
            r = row(f'fit_{width}x{height}_to_{size[1]}x{size[0]}', 'ms p50', ours, base,
                    'torch F.interpolate(bilinear, antialias), same image')
            r['ratio'] = base / ours
            r['torch_threads'] = 1
            rows.append(r)
            rep = make_representation('polarity_rgb')
            ours, base = p50_ms(
                lambda: rep.render_fitted(events, 0, SPAN_NS, height, width, size),
                lambda: fit_to_input(rep(events, 0, SPAN_NS, height, width), size), repeat)
            r = row(f'polarity_rgb_fitted_{width}x{height}_{n // 1000}k', 'ms p50', ours, base,
                    'the polarity image, then fit_to_input (same bits)')
            r['ratio'] = base / ours
            r['torch_threads'] = 1
            rows.append(r)
    finally:
        torch.set_num_threads(threads)
    print_table('event representations (p50 ms a window; ratio = baseline / ours)', rows)
    write_json(json_path, 'events', rows, command)
    return rows
