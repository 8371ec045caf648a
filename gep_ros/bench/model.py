"""`gep bench model`: step latency of every available backend against eager PyTorch on the CPU.

For gep_tiny and gep_small, at the input sizes of a 346x260 and a 640x480 sensor, batches of
1, 4 and 8 streams (each window with a frame, so both encoders run): p50 and p95 latency of
`Runtime.infer` for one window per stream, after warm-up. The baseline of every row is the
`cpu` backend (eager PyTorch) on the same configuration in the same run; `ratio` is
baseline / ours, so above 1 means faster. The `cuda` rows run where a GPU is present.
"""

import statistics
import tempfile
import time

import torch

from .common import print_table, row, write_json

SENSORS = {'346x260': (252, 350), '640x480': (476, 644)}  # input sizes, multiples of 14
BATCHES = (1, 4, 8)


def latencies(runtime, batch, size, repeat, budget_s):
    """Per-call seconds of `repeat` infer calls (at least 3, fewer past the time budget)."""
    events = torch.rand(batch, 3, *size)
    images = torch.rand(batch, 3, *size)
    streams = list(range(batch))
    runtime.infer(events, images, streams=streams)  # warm-up (allocations, graph capture)
    times, start = [], time.perf_counter()
    for _ in range(repeat):
        t0 = time.perf_counter()
        runtime.infer(events, images, streams=streams)
        times.append(time.perf_counter() - t0)
        if len(times) >= 3 and time.perf_counter() - start > budget_s:
            break
    return times


def p95(times):
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def run(json_path=None, quick=False, variants=('gep_tiny', 'gep_small'), command=''):
    from gep_model.artifact import load_artifact, save_artifact
    from gep_model.model import GEPModel
    from gep_model.registry import variant_config
    from gep_model.runtime import available_backends, make_runtime
    backends = [b for b in ('cpu', 'onnxruntime', 'cuda', 'tensorrt')
                if available_backends()[b][0]]
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu only'
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for variant in variants:
            for sensor, size in SENSORS.items():
                torch.manual_seed(0)
                folder = save_artifact(GEPModel(variant_config(variant, input_size=size)),
                                       f'{tmp}/{variant}_{sensor}')
                artifact = load_artifact(folder)
                p50s = {}
                for backend in backends:
                    runtime = make_runtime(artifact, backend, max_batch=max(BATCHES),
                                           cache_dir=f'{tmp}/engines')
                    for batch in BATCHES:
                        times = latencies(runtime, batch, size, 5 if quick else 20,
                                          budget_s=10 if quick else 30)
                        p50 = statistics.median(times) * 1e3
                        p50s.setdefault(batch, {})[backend] = p50
                        r = row(f'{variant}_{sensor}_b{batch}_{backend}', 'ms', p50,
                                p50s[batch]['cpu'], 'cpu (eager PyTorch)')
                        r['ratio'] = p50s[batch]['cpu'] / p50  # speed-up: >1 is faster
                        r.update(p95_ms=p95(times) * 1e3, runs=len(times), backend=backend,
                                 batch=batch, variant=variant, sensor=sensor,
                                 device=device if backend in ('cuda', 'tensorrt') else 'cpu')
                        rows.append(r)
                        print(f'  {r["name"]:<40} p50 {p50:9.1f} ms  p95 {r["p95_ms"]:9.1f} ms',
                              flush=True)
    print_table('model step latency (ms; ratio = cpu p50 / backend p50)', rows)
    write_json(json_path, 'model', rows, command)
    return rows
