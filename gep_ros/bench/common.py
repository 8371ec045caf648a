"""Timing, machine description and table/JSON output shared by the benchmarks."""

import json
import os
import platform
import statistics
import time


def median_seconds(fn, repeat=7, warmup=1, budget_s=None):
    """Median wall time of `fn()` over `repeat` runs (fewer if `budget_s` is exceeded)."""
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if budget_s is not None and time.perf_counter() - start > budget_s and len(times) >= 3:
            break
    return statistics.median(times)


def row(name, unit, ours, baseline, baseline_name):
    """One benchmark result; `ratio` is ours / baseline (higher is better for rates)."""
    return {'name': name, 'unit': unit, 'ours': ours, 'baseline': baseline,
            'ratio': ours / baseline if baseline else None, 'baseline_name': baseline_name}


def machine():
    import numpy
    info = {'platform': platform.platform(), 'python': platform.python_version(),
            'cpus': os.cpu_count(), 'numpy': numpy.__version__}
    try:
        with open('/proc/cpuinfo') as f:
            names = [line.split(':', 1)[1].strip() for line in f if line.startswith('model name')]
        if names:
            info['cpu'] = names[0]
    except OSError:
        pass
    return info


def print_table(title, rows):
    print(f'\n{title}')
    width = max([34] + [len(r['name']) for r in rows])
    header = f'{"benchmark":<{width}} {"unit":<9} {"ours":>12} {"baseline":>12} {"ratio":>9}'
    print(header)
    print('-' * len(header))
    for r in rows:
        ratio = f'{r["ratio"]:.2f}x' if r['ratio'] else '-'
        print(f'{r["name"]:<{width}} {r["unit"]:<9} {r["ours"]:>12.3f} {r["baseline"]:>12.3f} '
              f'{ratio:>9}')
    print(f'(baseline: {", ".join(sorted({r["baseline_name"] for r in rows}))})')


def write_json(path, suite, rows, command):
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {'suite': suite, 'command': command, 'machine': machine(),
               'time': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()), 'rows': rows}
    path.write_text(json.dumps(payload, indent=2) + '\n')
