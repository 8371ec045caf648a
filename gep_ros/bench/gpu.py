"""`gep bench gpu`: the prepared check to run whenever a GPU machine is at hand.

Five parts, each guarded: a part (or one configuration of it) that fails becomes a row with
status `error` and the error's text, and the others still run. Every part has a time budget;
configurations left when it is spent become `skipped` rows, and none starts after 7 minutes
(one started runs to its end, so a GPU finishes well within 10).

* `runtime`: the `cuda` backend (gep_model.runtime.make_runtime, CUDA graphs) at fp32, fp16
  and bf16 for each variant at the input sizes of a 346x260 and a 640x480 sensor
  (gep_ros.bench.model.SENSORS), batches 1, 4 and 8: p50 / p95 ms of `Runtime.infer` (host
  tensors in, numpy out, as the node calls it) and windows/s = batch / p50.
* `events`: each representation of gep_model.events on the device (30k random events at
  346x260, 300k at 640x480, as `gep bench events`), from event tensors already there and
  from host numpy: p50 / p95 ms, that the output stays on the device, and its largest
  difference from the CPU rendering of the same window (an error past 1e-4 relative).
* `train`: optimiser steps of each stage (align, generative, finetune from training.stages)
  as the training engine takes them (autocast, bf16 by default; a GradScaler for fp16;
  gradient clipping at 1; AdamW; no checkpoints), on small synthetic bags built in a
  temporary folder, at the first sensor's input size and batch max(2, largest batch):
  p50 / p95 ms a step and samples/s. The windows cache and the generative stage's token
  cache are built before the clock starts.
* `ddp`: `torchrun --standalone --nproc_per_node 1 -m gep_ros.bench.ddp_smoke`, with a
  timeout: NCCL process group, all_reduce, one DistributedDataParallel step.
* `tensorrt`: the `tensorrt` backend (fp16; the engine build time too) at the runtime
  part's configurations where torch_tensorrt imports; a row saying why not where it does
  not.

With `--device cpu` the same parts run on the CPU (the `cpu` backend at fp32 for `runtime`,
gloo for `ddp`, training in fp32 as the engine runs it there), so the plumbing can be tested
without a GPU; the numbers then say nothing about a GPU. Every row carries the device's
name, the torch and the CUDA versions; one JSON holds them all and a table is printed.
"""

import contextlib
import json
import os
from pathlib import Path
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

import torch

from .common import machine
from .model import latencies, p95, SENSORS

PARTS = ('runtime', 'events', 'train', 'ddp', 'tensorrt')
CONFIGS = Path(__file__).resolve().parents[2] / 'training' / 'configs'  # the shipped recipes
PRECISIONS = ('fp32', 'fp16', 'bf16')
BATCHES = (1, 4, 8)
VARIANTS = ('gep_tiny', 'gep_small')
STAGES = ('align', 'generative', 'finetune')
REPRESENTATIONS = (('polarity_rgb', {}), ('voxel_grid', {'bins': 5}), ('histogram', {}),
                   ('stacked_histogram', {'bins': 10, 'count_cutoff': 10}))
EVENT_COUNTS = {'346x260': 30_000, '640x480': 300_000}  # as gep bench events
SPAN_NS = 50_000_000
# Seconds each part may take (quick mode: a fifth, but for the torchrun smoke's timeout), and
# the repeats of one measurement.
BUDGET_S = {'runtime': 150, 'events': 20, 'train': 90, 'ddp': 60, 'tensorrt': 120}
TOTAL_BUDGET_S = 420  # and all parts together (a configuration started runs to its end)
REPEATS = 20
DDP_MARK = 'GEP_DDP_SMOKE'


class GpuCheckError(ValueError):
    """Settings the check cannot run with; the message names the setting."""


def environment(device):
    """Return the device's name and the versions every row carries."""
    env = {'device': 'cpu', 'torch': torch.__version__, 'cuda': torch.version.cuda}
    if device.type == 'cuda':
        props = torch.cuda.get_device_properties(device)
        env.update(device=torch.cuda.get_device_name(device),
                   capability=f'{props.major}.{props.minor}',
                   memory_gib=round(props.total_memory / 2**30, 1),
                   cudnn=torch.backends.cudnn.version(),
                   tf32_matmul=torch.backends.cuda.matmul.allow_tf32)
    else:
        env['device'] = f'cpu: {machine().get("cpu", "unknown")}'
    return env


def error_text(exc):
    """Return the error's type, message and where it was raised (the innermost frame)."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f' (at {Path(frames[-1].filename).name}:{frames[-1].lineno})' if frames else ''
    text = f'{type(exc).__name__}: {exc}'.strip()
    return (text[:2000] + where) if len(text) > 2000 else text + where


class Rows:
    """The check's rows; `guard` turns an exception into an error row of its part."""

    def __init__(self, env, quick=False):
        self.env = env
        self.quick = quick
        self.rows = []
        self.started = {}
        self.start = time.perf_counter()

    def add(self, part, name, status='ok', **fields):
        row = {'part': part, 'name': name, 'status': status, **fields, **self.env}
        self.rows.append(row)
        note = fields.get('error') or fields.get('reason') or ''
        print(f'  [{part}] {name}: {status}{" - " + note if note else ""}', flush=True)
        return row

    def budget(self, part):
        # The torchrun smoke's budget is its timeout: a slow start is not a failure.
        return BUDGET_S[part] / (5 if self.quick and part != 'ddp' else 1)

    def left(self, part):
        """Seconds left of the part's budget (the clock starts at the part's first call)."""
        now = time.perf_counter()
        start = self.started.setdefault(part, now)
        total = TOTAL_BUDGET_S / (5 if self.quick else 1) - (now - self.start)
        return min(self.budget(part) - (now - start), total)

    def over(self, part, name):
        """Return True, after adding a skipped row, when the part's budget is spent."""
        if self.left(part) > 0:
            return False
        total = TOTAL_BUDGET_S / (5 if self.quick else 1)
        self.add(part, name, 'skipped', reason=f"the part's time budget of "
                 f"{self.budget(part):.0f} s or the check's of {total:.0f} s was spent")
        return True

    @contextlib.contextmanager
    def guard(self, part, name):
        try:
            yield
        except Exception as exc:  # noqa: B902 - any failure is a result of the check
            self.add(part, name, 'error', error=error_text(exc))
            if torch.cuda.is_available():
                with contextlib.suppress(Exception):
                    torch.cuda.empty_cache()


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def timed(fn, device, repeat, budget_s, warmup=2):
    """Per-call seconds of fn() (synchronised), `repeat` times or fewer past the budget."""
    for _ in range(warmup):
        fn()
    sync(device)
    times, start = [], time.perf_counter()
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
        if len(times) >= 3 and time.perf_counter() - start > budget_s:
            break
    return times


# -- runtime --------------------------------------------------------------------------------
def artifact(tmp, variant, sensor, size):
    """Random weights of the variant at `size`, saved and loaded as deployed."""
    from gep_model.artifact import load_artifact, save_artifact
    from gep_model.model import GEPModel
    from gep_model.registry import variant_config
    folder = Path(tmp) / f'{variant}_{sensor}_{size[0]}x{size[1]}'
    if not folder.exists():
        torch.manual_seed(0)
        save_artifact(GEPModel(variant_config(variant, input_size=tuple(size))), folder)
    return load_artifact(folder)


def latency_rows(rows, part, runtime, label, batches, size, repeat, **fields):
    for batch in batches:
        name = f'{label}_b{batch}'
        if rows.over(part, name):
            continue
        with rows.guard(part, name):
            times = latencies(runtime, batch, size, repeat,
                              budget_s=min(10.0, max(rows.left(part), 1.0)))
            p50 = statistics.median(times)
            rows.add(part, name, batch=batch, p50_ms=p50 * 1e3, p95_ms=p95(times) * 1e3,
                     rate=batch / p50, rate_unit='windows/s', runs=len(times), **fields)


def run_runtime(rows, device, tmp, variants, sensors, batches, precisions, repeat,
                input_size=None):
    from gep_model.runtime import make_runtime
    part = 'runtime'
    backend = 'cuda' if device.type == 'cuda' else 'cpu'
    if backend == 'cpu':
        precisions = ['fp32']  # the cpu backend runs in float32 only
    for variant in variants:
        for sensor in sensors:
            label = f'{variant}_{sensor}'
            if rows.over(part, label):
                return
            with rows.guard(part, f'{label} (model)'):
                size = input_size or SENSORS[sensor]
                model = artifact(tmp, variant, sensor, size)
                for precision in precisions:
                    name = f'{label}_{backend}_{precision}'
                    if rows.over(part, name):
                        break
                    with rows.guard(part, name):
                        options = {'precision': precision} if backend == 'cuda' else {}
                        runtime = make_runtime(model, backend, max_batch=max(batches),
                                               **options)
                        latency_rows(rows, part, runtime, name, batches, size, repeat,
                                     backend=backend, precision=precision, variant=variant,
                                     sensor=sensor, input_size=list(size))
                        del runtime


# -- events ---------------------------------------------------------------------------------
def run_events(rows, device, sensors, repeat):
    import numpy as np

    from gep_model.events import make_representation
    from .events import window
    part = 'events'
    for sensor in sensors:
        width, height = map(int, sensor.split('x'))
        n = EVENT_COUNTS[sensor]
        host = window(width, height, n)
        fields = {name: torch.from_numpy(np.ascontiguousarray(host[name]).astype(np.int64))
                  for name in ('x', 'y', 't', 'p')}
        on_device = {name: value.to(device) for name, value in fields.items()}
        for rep_name, params in REPRESENTATIONS:
            name = f'{rep_name}_{sensor}_{n // 1000}k'
            if rows.over(part, name):
                return
            with rows.guard(part, name):
                rep = make_representation(rep_name, **params)
                expected = rep(host, 0, SPAN_NS, height, width)  # the CPU rendering
                out = rep(on_device, 0, SPAN_NS, height, width)
                stays = out.device.type == device.type
                diff = float((out.cpu() - expected).abs().max()) if out.numel() else 0.0
                budget = min(5.0, max(rows.left(part), 0.5))
                times = timed(lambda: rep(on_device, 0, SPAN_NS, height, width), device,
                              repeat, budget)
                host_times = timed(lambda: rep(host, 0, SPAN_NS, height, width,
                                               device=device), device, repeat, budget)
                p50 = statistics.median(times)
                result = {'events': n, 'p50_ms': p50 * 1e3, 'p95_ms': p95(times) * 1e3,
                          'rate': n / p50, 'rate_unit': 'events/s', 'runs': len(times),
                          'from_host_p50_ms': statistics.median(host_times) * 1e3,
                          'output_device': str(out.device), 'max_abs_diff_vs_cpu': diff,
                          'exact_vs_cpu': bool(torch.equal(out.cpu(), expected))}
                if not stays:
                    rows.add(part, name, 'error', error=f'the output left the device: it is '
                             f'on {out.device}, the events on {device}', **result)
                elif diff > 1e-4 * max(1.0, float(expected.abs().max())):
                    rows.add(part, name, 'error', error=f'differs from the CPU rendering by '
                             f'up to {diff:.3g}', **result)
                else:
                    rows.add(part, name, **result)


# -- train ----------------------------------------------------------------------------------
def training_world(tmp, variant, size, quick=False):
    """Synthetic bags and a random teacher, as test/test_training_stages.py builds them.

    Two bags of 1 s; in quick mode one of 0.4 s (8 windows of 50 ms, enough for the
    generative stage's sequences of 3) of a 112x84 scene simulated in 2 ms steps.
    """
    from safetensors.torch import save_file

    from gep_model.model import GEPModel
    from gep_model.registry import variant_config
    from training.synthetic.bag import write_synth_bag
    from training.synthetic.esim import SensorConfig
    from training.synthetic.layout import SceneConfig
    root = Path(tmp) / 'train'
    bags = [root / 'a'] if quick else [root / 'a', root / 'b']
    for seed, bag in enumerate(bags, 1):
        if not bag.exists():
            if quick:
                write_synth_bag(bag, seconds=0.4, seed=seed, sensor=SensorConfig(step_us=2000),
                                config=SceneConfig(width=112, height=84))
            else:
                write_synth_bag(bag, seconds=1.0, seed=seed)
    teacher = root / f'teacher_{variant}_{size[0]}x{size[1]}.safetensors'
    if not teacher.exists():
        torch.manual_seed(0)
        vit = GEPModel(variant_config(variant, input_size=tuple(size))).image_encoder.vit
        save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, teacher)
    return bags, teacher


def stage_config(bags, teacher, stage, variant, size, batch):
    """Return the stage's shipped config (gep_tiny: its CPU twin, others: the GPU one) on bags.

    So that the check trains what the recipe trains: stage 2's token scheme, the fine-tune's
    learning-rate groups and augmentation, the slots the model keeps.
    """
    import yaml
    twin = 'tiny_cpu' if variant == 'gep_tiny' else 'small_gpu'
    config = yaml.safe_load((CONFIGS / f'{stage}_{twin}.yaml').read_text())
    config['variant'] = variant
    config['init'] = None
    config.setdefault('model', {})['input_size'] = list(size)
    config['data'] = {**(config.get('data') or {}),
                      'sources': [str(bag) for bag in bags],
                      'cache': str(bags[0].parent / 'cache'), 'val_fraction': 0.2}
    config['loop'] = {**(config.get('loop') or {}), 'batch_size': batch}
    if stage == 'align':
        config['teacher'] = str(teacher)
    else:
        config['data']['sequence_length'] = 3 if stage == 'generative' else 2
    return config


def run_train(rows, device, tmp, variants, size, batch, amp, repeat, quick=False):
    from training.engine.trainer import batch_indices
    from training.stages import make_stage
    part = 'train'
    enabled = device.type == 'cuda' and amp != 'none'
    dtype = torch.float16 if amp == 'fp16' else torch.bfloat16
    for variant in variants:
        world = None
        for stage_name in STAGES:
            name = f'{stage_name}_{variant}_{size[0]}x{size[1]}_b{batch}'
            if rows.over(part, name):
                return
            with rows.guard(part, name):
                if world is None:
                    world = training_world(tmp, variant, size, quick)
                torch.manual_seed(0)
                stage = make_stage(stage_name, stage_config(*world, stage_name, variant, size,
                                                            batch), device)
                model = stage.model.to(device)
                model.train()
                optimizer = torch.optim.AdamW(stage.param_groups(model), lr=1e-4)
                scaler = torch.amp.GradScaler(enabled=enabled and amp == 'fp16')
                losses = []
                step = [0]

                def one_step(stage=stage, model=model, optimizer=optimizer, scaler=scaler,
                             losses=losses, step=step):
                    indices = batch_indices(stage.num_samples, batch, 0, step[0])
                    step[0] += 1
                    data = stage.batch(indices)
                    with torch.autocast(device.type, dtype=dtype, enabled=enabled):
                        loss, _ = stage.loss(model, data)
                    scaler.scale(loss).backward()
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    scaler.step(optimizer)
                    scaler.update()
                    optimizer.zero_grad(set_to_none=True)
                    losses.append(float(loss.detach()))
                times = timed(one_step, device, repeat,
                              min(15.0, max(rows.left(part), 1.0)), warmup=1)
                bad = [x for x in losses if x != x or abs(x) == float('inf')]
                p50 = statistics.median(times)
                result = {'stage': stage_name, 'variant': variant, 'batch': batch,
                          'amp': amp if enabled else 'none (fp32)', 'p50_ms': p50 * 1e3,
                          'p95_ms': p95(times) * 1e3, 'rate': batch / p50,
                          'rate_unit': 'samples/s', 'runs': len(times),
                          'last_loss': losses[-1]}
                if bad:
                    rows.add(part, name, 'error', error=f'non-finite loss {bad[0]}', **result)
                else:
                    rows.add(part, name, **result)
                del stage, model, optimizer


# -- ddp ------------------------------------------------------------------------------------
def start_ddp(device, timeout_s):
    """Start the torchrun smoke; return what `finish_ddp` needs."""
    command = [sys.executable, '-m', 'torch.distributed.run', '--standalone',
               '--nproc_per_node', '1', '-m', 'gep_ros.bench.ddp_smoke', '--device', device.type]
    env = dict(os.environ, OMP_NUM_THREADS='1')
    root = str(Path(__file__).resolve().parents[2])  # the checkout, where -m finds gep_ros
    env['PYTHONPATH'] = os.pathsep.join(p for p in (root, env.get('PYTHONPATH')) if p)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=env)
    return process, time.perf_counter(), timeout_s, command


def finish_ddp(rows, handle):
    process, start, timeout_s, command = handle
    part, name = 'ddp', 'torchrun_nproc1'
    with rows.guard(part, name):
        try:
            output, _ = process.communicate(
                timeout=max(1.0, timeout_s - (time.perf_counter() - start)))
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
            raise RuntimeError(f'torchrun did not finish within {timeout_s:.0f} s; its last '
                               f'output: {output[-800:]}') from None
        wall = time.perf_counter() - start
        lines = [line for line in output.splitlines() if line.startswith(DDP_MARK)]
        if process.returncode != 0 or not lines:
            raise RuntimeError(f'torchrun exited with status {process.returncode}; its last '
                               f'output: {output.strip()[-1500:]}')
        result = json.loads(lines[-1][len(DDP_MARK):])
        rows.add(part, name, wall_s=wall, command=' '.join(command[1:]), **result)


# -- tensorrt -------------------------------------------------------------------------------
def run_tensorrt(rows, device, tmp, variants, sensors, batches, repeat, input_size=None):
    from gep_model.runtime import make_runtime
    part = 'tensorrt'
    if device.type != 'cuda':
        rows.add(part, 'tensorrt', 'unavailable', reason='the tensorrt backend needs a CUDA '
                 'GPU; not run on the CPU')
        return
    try:
        import torch_tensorrt
    except Exception as exc:  # noqa: B902 - any import failure means: not here
        rows.add(part, 'tensorrt', 'unavailable',
                 reason=f'torch_tensorrt does not import here ({error_text(exc)}); the '
                 f'tensorrt backend was not measured')
        return
    for variant in variants:
        for sensor in sensors:
            name = f'{variant}_{sensor}_tensorrt_fp16'
            if rows.over(part, name):
                return
            with rows.guard(part, name):
                size = input_size or SENSORS[sensor]
                model = artifact(tmp, variant, sensor, size)
                t0 = time.perf_counter()
                runtime = make_runtime(model, 'tensorrt', max_batch=max(batches),
                                       precision='fp16', cache_dir=f'{tmp}/engines')
                build_s = time.perf_counter() - t0
                latency_rows(rows, part, runtime, name, batches, size, repeat,
                             backend='tensorrt', precision='fp16', variant=variant,
                             sensor=sensor, input_size=list(size), build_s=build_s,
                             torch_tensorrt=torch_tensorrt.__version__)
                del runtime


# -- the check ------------------------------------------------------------------------------
def check_choices(option, values, allowed):
    values = list(values)
    if not values:
        raise GpuCheckError(f'{option}: give at least one value')
    for value in values:
        if value not in allowed:
            raise GpuCheckError(f'{option}: unknown value {value!r} (choose from '
                                f'{", ".join(map(str, allowed))})')
    return values


def run(json_path=None, device='cuda', quick=False, variants=VARIANTS,
        sensors=tuple(SENSORS), batches=BATCHES, precisions=PRECISIONS, parts=PARTS,
        train_amp='bf16', input_size=None, command='gep bench gpu'):
    """Run the parts; print the table, write the JSON; return the rows.

    input_size: (H, W) for the model of the runtime, train and tensorrt parts in place of the
    sensors' input sizes (multiples of 14), for a quick check of the plumbing.
    """
    from gep_model.registry import variants as known_variants
    variants = check_choices('--variants', variants, known_variants())
    sensors = check_choices('--sensors', sensors, tuple(SENSORS))
    batches = check_choices('--batches', batches, BATCHES)
    precisions = check_choices('--precisions', precisions, PRECISIONS)
    parts = check_choices('--parts', parts, PARTS)
    check_choices('--train-amp', [train_amp], ('bf16', 'fp16', 'none'))
    if input_size is not None:
        input_size = tuple(input_size)
        if len(input_size) != 2 or any(not isinstance(v, int) or v < 14 or v % 14
                                       for v in input_size):
            raise GpuCheckError(f'--input-size: expected two multiples of 14 (H W), got '
                                f'{" ".join(map(str, input_size))}')
    if device not in ('cuda', 'cpu'):
        raise GpuCheckError(f'--device: {device!r} is not cuda or cpu')
    if device == 'cuda' and not torch.cuda.is_available():
        raise GpuCheckError('--device cuda: no CUDA GPU here (torch '
                            f'{torch.__version__}, built for CUDA {torch.version.cuda}); '
                            'run with --device cpu to check the plumbing')
    dev = torch.device(device)
    rows = Rows(environment(dev), quick)
    print(f'gep bench gpu on {rows.env["device"]} (torch {rows.env["torch"]}, CUDA '
          f'{rows.env["cuda"]})', flush=True)
    threads = torch.get_num_threads()
    if device == 'cpu':
        torch.set_num_threads(1)  # beside the torchrun smoke; CPU numbers prove plumbing only
    try:
        return check(rows, dev, quick, variants, sensors, batches, precisions, parts, train_amp,
                     input_size, json_path, command)
    finally:
        torch.set_num_threads(threads)


def check(rows, dev, quick, variants, sensors, batches, precisions, parts, train_amp,
          input_size, json_path, command):
    device = dev.type
    repeat = 5 if quick else REPEATS
    start = time.perf_counter()
    ddp = None
    seconds = {}

    @contextlib.contextmanager
    def part(name):
        t0 = time.perf_counter()
        yield
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        if 'ddp' in parts and device == 'cpu':
            # On the CPU the smoke mostly waits for imports: run it beside the other parts.
            with rows.guard('ddp', 'torchrun_nproc1'):
                ddp = start_ddp(dev, rows.budget('ddp'))
        if 'runtime' in parts:
            with part('runtime'):
                run_runtime(rows, dev, tmp, variants, sensors, batches, precisions, repeat,
                            input_size)
        if 'events' in parts:
            with part('events'), rows.guard('events', 'events'):
                run_events(rows, dev, sensors, repeat if quick else repeat * 2)
        if 'train' in parts:
            with part('train'):
                run_train(rows, dev, tmp, variants, input_size or SENSORS[sensors[0]],
                          max(2, max(batches)), train_amp, 2 if quick else 10, quick)
        if 'ddp' in parts:
            with part('ddp'):
                if device != 'cpu':
                    with rows.guard('ddp', 'torchrun_nproc1'):
                        ddp = start_ddp(dev, rows.budget('ddp'))
                if ddp is not None:
                    finish_ddp(rows, ddp)
        if 'tensorrt' in parts:
            with part('tensorrt'):
                run_tensorrt(rows, dev, tmp, variants, sensors, batches, repeat, input_size)
    total = time.perf_counter() - start
    print_table(rows.rows, rows.env, total)
    write(json_path, rows, command, total, seconds)
    return rows.rows


def print_table(rows, env, total_s):
    print(f'\ngep bench gpu: {env["device"]}, torch {env["torch"]}, CUDA {env["cuda"]} '
          f'({total_s:.0f} s)')
    header = (f'{"part":<9} {"name":<40} {"status":<11} {"p50 ms":>9} {"p95 ms":>9} '
              f'{"rate":>12} {"unit":<10}')
    print(header)
    print('-' * len(header))
    for r in rows:
        def num(key, fmt='.2f'):
            return format(r[key], fmt) if isinstance(r.get(key), (int, float)) else '-'
        print(f'{r["part"]:<9} {r["name"]:<40} {r["status"]:<11} {num("p50_ms"):>9} '
              f'{num("p95_ms"):>9} {num("rate", ".1f"):>12} {r.get("rate_unit", ""):<10}')
        note = r.get('error') or r.get('reason')
        if note:
            print(f'{"":<9} {note[:300]}')
    counts = {s: sum(r['status'] == s for r in rows) for s in
              ('ok', 'error', 'skipped', 'unavailable')}
    print(', '.join(f'{n} {s}' for s, n in counts.items() if n))


def write(path, rows, command, total_s, part_s):
    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {'suite': 'gpu', 'command': command, 'machine': machine(), **rows.env,
               'quick': rows.quick, 'total_s': total_s, 'part_s': part_s,
               'time': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
               'parts': list(PARTS), 'rows': rows.rows}
    path.write_text(json.dumps(payload, indent=2) + '\n')
