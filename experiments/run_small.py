"""Run the small GEP experiment on the CPU: what pretraining buys at each label budget.

`make experiment` (or `python -m experiments.run_small`) runs, on synthetic bags with
gep_tiny at a small input size:

1. synthesis: training bags, teacher bags and held-apart evaluation bags, every one a
   different scene (its own seed);
2. the teacher: a gep_tiny ViT trained as a masked autoencoder on the teacher bags' frames,
   never shown a label (training.stages.teacher), then frozen;
3. for each seed, the pretraining, shared by every label budget: align (stage 1, to the
   teacher) on the unlabelled training bags, then generative (stage 2) from it;
4. for each seed and label budget (data.max_labelled labelled sequences, a subset drawn from
   the seed, so every arm of a seed and budget sees the same labels and the smaller budgets'
   subsets lie inside the larger ones), four fine-tuning runs with the same config and
   budget, all event-only (`frames: false`, `model.temporal.image_tokens: false`):
   - gep: from the generative run (stage 1 + 2);
   - stage1: from the align run;
   - scratch: from random weights;
   - teacher_frames: the reference line, the frozen teacher's weights as the encoder of a
     model that sees the frame instead of the events (FrameFinetuneStage);
5. each fine-tuned model scored on every evaluation bag (FinetuneStage.evaluate: depth
   AbsRel, segmentation mIoU; the teacher_frames model on the bags' frames).

The fine-tuning recipe is whatever the stage's config (training/configs/finetune_tiny_cpu.yaml)
says, its CPU-budget rates, warm-up share and flip-only augmentation included; this script
sets only data, model size, event-only, steps (warm-up in the config's proportion), batch and
seed. The scratch, stage-1 and GEP arms share that budget and those rules.

Results: experiments/results/small.json (`results`: one row per arm, seed, label budget and
evaluation bag; `summary`: mean and 95% t-interval over seeds per arm and budget; `paired`:
GEP - scratch and GEP - stage1 differences, same seed and labelled subset, with their 95%
t-interval; budgets and the wall time of every part) and small.md (the tables). `--quick`
runs the whole chain at toy size in seconds into out/experiment/quick/ (the test's mode).
"""

import argparse
from concurrent.futures import ProcessPoolExecutor
import json
import math
import multiprocessing
import os
from pathlib import Path
import shutil
import statistics
import sys
import time

import torch

from gep_model.metrics import DepthMetrics, SegmentationMetrics
from gep_model.registry import variant_config
from training.data.cache import build_cache
from training.data.dataset import WindowDataset
from training.run import export, load_config, train
from training.stages.data import datasets
from training.stages.finetune import FinetuneStage
from training.stages.teacher import (FrameFinetuneStage, FramesAsEvents, teacher_checkpoint,
                                     train_frame_reference, train_teacher)
from training.synthetic.bag import write_synth_bag
from training.synthetic.layout import SceneConfig

from .stats import mean_ci, paired_ci

CONFIGS = Path(__file__).resolve().parent.parent / 'training' / 'configs'
REPRESENTATION = {'name': 'polarity_rgb', 'percentile': 90.0}
WINDOW = {'duration_ms': 50.0}
ARMS = ('gep', 'stage1', 'scratch', 'teacher_frames')
EVENT_ARMS = ('gep', 'stage1', 'scratch')
NAMES = {'gep': 'GEP: align, generative, finetune', 'stage1': 'stage 1: align, finetune',
         'scratch': 'scratch: finetune', 'teacher_frames': 'teacher on frames (reference)'}
PAIRS = (('gep', 'scratch'), ('gep', 'stage1'))
METRICS = ('abs_rel', 'miou')

BUDGETS = {
    'full': {
        'seeds': [0, 1, 2, 3, 4],
        'labels': [2, 8, 32],
        'input_size': [84, 112],
        'camera': None,  # the synthetic default, 346x260
        'train_bags': 4, 'train_seconds': 3.0,   # 60 windows (frames at 20 Hz) per bag
        'teacher_bags': 3, 'teacher_seconds': 3.0,
        'eval_bags': 3, 'eval_seconds': 2.5, 'eval_val_fraction': 0.8,  # the last 2 s
        'teacher': {'steps': 400, 'batch_size': 16, 'lr': 1e-3},
        'align': {'steps': 200, 'batch_size': 8},
        'generative': {'steps': 200, 'batch_size': 8, 'sequence_length': 8},
        'finetune': {'steps': 100, 'batch_size': 4, 'sequence_length': 2},
    },
    'demo': {  # the weights `make demo` replays with: the GEP chain once, a few minutes
        'seeds': [0],
        'labels': [None],
        'input_size': [126, 168],
        'camera': None,
        'train_bags': 2, 'train_seconds': 4.0,
        'teacher_bags': 1, 'teacher_seconds': 4.0,
        'eval_bags': 0, 'eval_seconds': 1.0, 'eval_val_fraction': 0.5,
        'teacher': {'steps': 300, 'batch_size': 16, 'lr': 1e-3},
        'align': {'steps': 200, 'batch_size': 8},
        'generative': {'steps': 200, 'batch_size': 8, 'sequence_length': 8},
        'finetune': {'steps': 300, 'batch_size': 4, 'sequence_length': 2},
    },
    'quick': {  # the whole chain at toy size: checks the flow, measures nothing
        'seeds': [0, 1],
        'labels': [2, 4],
        'input_size': [42, 56],
        'camera': [64, 48],
        'train_bags': 2, 'train_seconds': 0.5,
        'teacher_bags': 1, 'teacher_seconds': 0.5,
        'eval_bags': 2, 'eval_seconds': 0.5, 'eval_val_fraction': 0.8,
        'teacher': {'steps': 3, 'batch_size': 4, 'lr': 1e-3},
        'align': {'steps': 2, 'batch_size': 4},
        'generative': {'steps': 2, 'batch_size': 4, 'sequence_length': 4},
        'finetune': {'steps': 2, 'batch_size': 2, 'sequence_length': 2},
    },
}

TRAIN_SEED0, TEACHER_SEED0, EVAL_SEED0 = 1, 101, 1001  # disjoint scenes


class Clock:
    """Measure and print the wall time of each part of the experiment."""

    def __init__(self, quiet=False):
        self.start = time.perf_counter()
        self.parts = {}
        self.quiet = quiet

    def part(self, name, fn, *args, **kwargs):
        began = time.perf_counter()
        result = fn(*args, **kwargs)
        took = time.perf_counter() - began
        self.parts[name] = round(took, 2)
        if not self.quiet:
            print(f'[{self.total():7.1f} s] {name}: {took:.1f} s', flush=True)
        return result

    def total(self):
        return time.perf_counter() - self.start


class Inline:
    """The executor of a one-worker run: jobs run here, one after the other."""

    def map(self, fn, *iterables):  # noqa: A003 (the Executor interface)
        return [fn(*args) for args in zip(*iterables)]

    def shutdown(self):
        pass


def _worker_init():
    torch.set_num_threads(1)


def executor(workers):
    """Return an executor of `workers` processes with one torch thread each (Inline for 1).

    Small models on small inputs use a second core better as a second process than as a
    second intra-op thread, and much better on a machine that others load too (measured
    there: 20 fine-tuning steps in 6.8 s on one thread against 38 s on two).
    """
    if workers < 1:
        raise ValueError(f'--workers: {workers} must be at least 1')
    if workers == 1:
        return Inline()
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context('spawn'),
                               initializer=_worker_init)


def model_overrides(budget, event_only):
    """Return the `model:` override: the input size and, downstream, no frame encoder."""
    size = budget['input_size']
    if event_only:
        return f'model={{input_size: {size}, temporal: {{image_tokens: false}}}}'
    return f'model={{input_size: {size}}}'


def warmup_steps(stage, steps):
    """Return the warm-up of `steps` steps of a stage.

    Fine-tuning keeps its config's share of warm-up steps (a quarter in
    finetune_tiny_cpu.yaml, part of its CPU-budget recipe); the pretraining stages warm up
    over a tenth.
    """
    if stage != 'finetune':
        return max(steps // 10, 1)
    loop = load_config(CONFIGS / 'finetune_tiny_cpu.yaml', [])['loop']
    return max(round(steps * loop['warmup_steps'] / loop['steps']), 1)


def stage_config(stage, budget, sources, cache, seed, labels=None, **extra):
    """Load the stage's tiny CPU config with this experiment's data, model and loop.

    Fine-tuning is event-only (`frames: false` and no image tokens in the model), as the
    paper's downstream models; everything else of its recipe comes from the config file.
    """
    loop = budget[stage]
    overrides = [f'data.sources={json.dumps([str(s) for s in sources])}',
                 f'data.cache={cache}', model_overrides(budget, stage == 'finetune'),
                 f'loop.steps={loop["steps"]}', f'loop.batch_size={loop["batch_size"]}',
                 f'loop.seed={seed}', f'loop.ckpt_every={loop["steps"]}', 'loop.eval_every=0',
                 f'loop.warmup_steps={warmup_steps(stage, loop["steps"])}']
    if 'sequence_length' in loop:
        overrides.append(f'data.sequence_length={loop["sequence_length"]}')
    if stage == 'finetune':
        overrides += ['frames=false', 'unfreeze=all',
                      f'data.max_labelled={"null" if labels is None else int(labels)}']
    overrides += [f'{k}={v}' for k, v in extra.items()]
    return load_config(CONFIGS / f'{stage}_tiny_cpu.yaml', overrides)


def evaluate(run, budget, eval_bags, cache, frames=False):
    """Score a fine-tuned run on each evaluation bag's validation windows (frames: its frames).

    The run is loaded once; each bag's validation windows then take the stage's val_set in
    turn. Returns one dict of scores per bag.
    """
    stage, scores = None, []
    for bag in eval_bags:
        config = stage_config('finetune', budget, [bag], cache, 0, init=str(run),
                              **{'data.val_fraction': budget['eval_val_fraction']})
        if stage is None:
            stage = (FrameFinetuneStage if frames else FinetuneStage)(config, torch.device('cpu'))
            stage.model.eval()
        else:
            val_set = datasets(config, budget['finetune']['sequence_length'])[1]
            stage.val_set = FramesAsEvents(val_set) if frames else val_set
        with torch.no_grad():
            metrics = stage.evaluate(stage.model)
        scores.append({'eval_bag': bag.name,
                       'abs_rel': metrics.get('depth_abs_rel', math.nan),
                       'miou': metrics.get('seg_miou', math.nan),
                       'delta1': metrics.get('depth_delta1', math.nan),
                       'pixel_acc': metrics.get('seg_pixel_acc', math.nan),
                       'val_items': len(stage.val_set)})
    return scores


def bag_plan(work, budget):
    """Every bag of the experiment: {'train', 'teacher', 'eval': [(path, seconds, seed)]}."""
    plan = (('train', budget['train_bags'], budget['train_seconds'], TRAIN_SEED0),
            ('teacher', budget['teacher_bags'], budget['teacher_seconds'], TEACHER_SEED0),
            ('eval', budget['eval_bags'], budget['eval_seconds'], EVAL_SEED0))
    return {kind: [(work / 'bags' / f'{kind}_{seed0 + i}', seconds, seed0 + i)
                   for i in range(count)]
            for kind, count, seconds, seed0 in plan}


def write_bag(path, seconds, seed, camera):
    """Simulate one synthetic scene into a bag (camera: (width, height) or None)."""
    config = SceneConfig(width=camera[0], height=camera[1]) if camera else None
    write_synth_bag(path, seconds=seconds, seed=seed, config=config)
    return path


def priors(bags, budget, cache):
    """Score two predictions that ignore the input, fitted on the training bags' labels.

    Depth: the median log depth of each image row; segmentation: the most frequent class of
    each pixel. Scored like `evaluate` (each sequence's newest window of an evaluation bag's
    validation split), they show how much of a score the scenes' layout alone gives.
    Returns [{'eval_bag', 'abs_rel', 'miou'}].
    """
    size = tuple(budget['input_size'])
    heads = variant_config('gep_tiny').heads
    train_set = WindowDataset(build_cache(bags['train'], cache, REPRESENTATION, size, WINDOW),
                              'train', 1)
    log_depth, counts = [], torch.zeros(heads.num_classes, *size)
    for first in range(0, len(train_set), 64):
        b = train_set.batch(range(first, min(first + 64, len(train_set))))
        depth, labels = b['depth'][:, 0], b['labels'][:, 0]  # (B, H, W)
        ok = torch.isfinite(depth) & (depth > 0) & b['has_depth'][:, 0, None, None]
        log_depth.append(torch.where(ok, depth.clamp_min(1e-6).log(), math.nan))
        labels = labels[b['has_labels'][:, 0]]
        for c in range(heads.num_classes):
            counts[c] += (labels == c).sum(0)
    rows = torch.cat(log_depth).permute(1, 0, 2).flatten(1)  # (H, N * W)
    depth = rows.nanmedian(dim=1).values.exp()[:, None].expand(size).contiguous()
    classes = counts.argmax(0)  # (H, W)
    scores = []
    length = budget['finetune']['sequence_length']
    for bag in bags['eval']:
        val = WindowDataset(build_cache([bag], cache, REPRESENTATION, size, WINDOW,
                                        val_fraction=budget['eval_val_fraction']), 'val', length)
        dm = DepthMetrics(min_depth=heads.min_depth, max_depth=heads.max_depth)
        sm = SegmentationMetrics(heads.num_classes)
        for item in range(len(val)):
            b = val[item]
            if bool(b['has_depth'][-1]):
                dm.update(depth[None], b['depth'][-1:])
            if bool(b['has_labels'][-1]):
                sm.update(classes[None], b['labels'][-1:])
        scores.append({'eval_bag': bag.name, 'abs_rel': dm.compute()['abs_rel'],
                       'miou': sm.compute()['miou']})
    return scores


def synthesise(work, budget, pool):
    """Write every bag of the experiment; return {'train', 'teacher', 'eval': [paths]}."""
    plan = bag_plan(work, budget)
    jobs = [job for kind in plan for job in plan[kind]]
    list(pool.map(write_bag, [j[0] for j in jobs], [j[1] for j in jobs], [j[2] for j in jobs],
                  [budget.get('camera')] * len(jobs)))
    return {kind: [job[0] for job in jobs] for kind, jobs in plan.items()}


def build_one_cache(sources, budget, cache, val_fraction):
    build_cache(sources, cache, REPRESENTATION, tuple(budget['input_size']), WINDOW,
                val_fraction=val_fraction)


def build_caches(bags, budget, cache, pool):
    """Render the training and evaluation bags' windows once, as the stages will ask."""
    sets = [(bags['train'], 0.2)] + [([bag], budget['eval_val_fraction'])
                                     for bag in bags['eval']]
    list(pool.map(build_one_cache, [s[0] for s in sets], [budget] * len(sets),
                  [cache] * len(sets), [s[1] for s in sets]))


def finite(value):
    """Return value with NaN and infinities as None (strict JSON), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def per_seed(results, arm, labels, metric):
    """{seed: the metric's mean over the evaluation bags} of one arm and label budget."""
    by_seed = {}
    for r in results:
        if r['arm'] == arm and r['labels'] == labels and r[metric] is not None \
                and math.isfinite(r[metric]):
            by_seed.setdefault(r['seed'], []).append(r[metric])
    return {seed: statistics.fmean(v) for seed, v in by_seed.items()}


def summarise(results, labels_list):
    """Return (summary, paired): per budget and arm, and per budget and pair, per metric.

    The unit is the seed: a seed's score is its mean over the evaluation bags (the bags
    score the same model), and intervals are two-sided 95% t-intervals over the seeds.
    Paired differences subtract the same seed's second arm (same labelled subset).
    """
    summary, paired = [], []
    for labels in labels_list:
        for arm in ARMS:
            row = {'labels': labels, 'arm': arm}
            for metric in METRICS:
                mean, half, n = mean_ci(per_seed(results, arm, labels, metric).values())
                row[metric] = {'mean': mean, 'ci95': half, 'n': n}
            summary.append(row)
        for first, second in PAIRS:
            row = {'labels': labels, 'pair': f'{first}-{second}'}
            for metric in METRICS:
                mean, half, n = paired_ci(per_seed(results, first, labels, metric),
                                          per_seed(results, second, labels, metric))
                row[metric] = {'mean': mean, 'ci95': half, 'n': n,
                               'excludes_zero': bool(n > 1 and math.isfinite(half)
                                                     and abs(mean) > half)}
            paired.append(row)
    return summary, paired


def _fmt(cell, digits=3):
    mean, half = cell['mean'], cell['ci95']
    if mean is None or not math.isfinite(mean):
        return 'n/a'
    if half is None or not math.isfinite(half):
        return f'{mean:.{digits}f}'
    return f'{mean:.{digits}f} ± {half:.{digits}f}'


def markdown(report):
    """Return the tables of small.md."""
    budget = report['budget']
    ft = budget['finetune']
    lines = [
        f'# Small GEP experiment ({report["mode"]})', '',
        f'gep_tiny at {budget["input_size"][0]}x{budget["input_size"][1]} on synthetic bags; '
        f'{len(budget["seeds"])} seeds; every arm fine-tuned event-only for {ft["steps"]} steps '
        f'(batch {ft["batch_size"]}, sequences of {ft["sequence_length"]} windows) on the same '
        f'labelled sequences per seed; scored on {budget["eval_bags"]} held-apart bags of '
        'other scenes. Teacher: a gep_tiny ViT trained as a masked autoencoder on frames of '
        f'{budget["teacher_bags"]} other scenes, never shown a label.', '',
        'Mean ± half-width of the 95% t-interval over seeds (a seed scores the mean over the '
        'evaluation bags).', '',
        '| labelled sequences | arm | depth AbsRel (lower is better) | '
        'segmentation mIoU (higher is better) | seeds |',
        '|---|---|---|---|---|',
    ]
    for row in report['summary']:
        lines.append(f'| {row["labels"]} | {NAMES[row["arm"]]} | {_fmt(row["abs_rel"])} | '
                     f'{_fmt(row["miou"])} | {row["abs_rel"]["n"]} |')
    prior = report['priors']
    lines += [
        '', "Input-free priors, fitted on the training bags' labels and scored the same way "
        '(mean over the evaluation bags): depth AbsRel '
        f'{statistics.fmean(p["abs_rel"] for p in prior):.3f} from the median depth of each '
        f'image row, mIoU {statistics.fmean(p["miou"] for p in prior):.3f} from the most '
        'frequent class of each pixel.',
        '', '## Paired differences (same seed, same labelled subset)', '',
        'AbsRel: negative favours GEP; mIoU: positive favours GEP. * marks a 95% interval '
        'that excludes zero.', '',
        '| labelled sequences | difference | AbsRel | mIoU | pairs |',
        '|---|---|---|---|---|',
    ]
    for row in report['paired']:
        cells = [_fmt(row[m]) + (' *' if row[m]['excludes_zero'] else '') for m in METRICS]
        lines.append(f'| {row["labels"]} | {row["pair"].replace("-", " − ")} | {cells[0]} | '
                     f'{cells[1]} | {row["abs_rel"]["n"]} |')
    teacher = report['teacher']
    steps = {s: budget[s]['steps'] for s in ('teacher', 'align', 'generative', 'finetune')}
    lines += [
        '', f'Steps: {steps}. Teacher reconstruction loss (hidden patches, per-patch '
        f'normalised pixels): {teacher["first_loss"]:.3f} at the start, '
        f'{teacher["train_loss"]:.3f} at the end, {teacher["val_loss"]:.3f} on held-out '
        f'frames. Wall time: {report["wall_s"]:.0f} s in {report["workers"]} process(es) of '
        f'{report["threads_per_worker"]} torch thread(s).',
        '', 'Reproduce with:', '', '```', report['command'], '```', '']
    return '\n'.join(lines)


def pretrain(seed, budget, bags, cache, teacher, runs, clock=None):
    """Align, then generative, for one seed; return (align run, generative run, parts)."""
    clock = clock or Clock()
    align, gen = runs / 'align', runs / 'generative'
    clock.part(f'seed {seed} align', train, 'align', stage_config(
        'align', budget, bags['train'], cache, seed, teacher=teacher), align, False)
    clock.part(f'seed {seed} generative', train, 'generative', stage_config(
        'generative', budget, bags['train'], cache, seed, init=str(align)), gen, False)
    return align, gen, clock.parts


def finetune_arm(arm, init, budget, bags, cache, seed, labels, run):
    """Fine-tune one arm; return its own validation metrics (on the training bags)."""
    config = stage_config('finetune', budget, bags['train'], cache, seed, labels,
                          **({'init': str(init)} if init else {}))
    if arm == 'teacher_frames':
        return train_frame_reference(config, run)
    return train('finetune', config, run, False)


def finetune_and_score(seed, labels, budget, bags, cache, inits, runs, quiet=False):
    """Fine-tune every arm of one seed and label budget and score each on every eval bag.

    Returns (result rows, wall times of the parts).
    """
    clock = Clock(quiet)
    rows = []
    for arm in ARMS:
        run = runs / f'labels{labels}' / arm
        tag = f'seed {seed} labels {labels} {arm}'
        began = time.perf_counter()
        own = clock.part(f'{tag} finetune', finetune_arm, arm, inits[arm], budget, bags, cache,
                         seed, labels, run)
        wall = round(time.perf_counter() - began, 2)
        scores = clock.part(f'{tag} evaluate', evaluate, run, budget, bags['eval'], cache,
                            arm == 'teacher_frames')
        mine = [{'arm': arm, 'seed': seed, 'labels': labels, **score,
                 'event_only': arm != 'teacher_frames',
                 'train_val_abs_rel': own.get('depth_abs_rel', math.nan),
                 'train_val_miou': own.get('seg_miou', math.nan), 'finetune_wall_s': wall}
                for score in scores]
        if not quiet:
            print(f'  {tag}: AbsRel {statistics.fmean(r["abs_rel"] for r in mine):.4f}, '
                  f'mIoU {statistics.fmean(r["miou"] for r in mine):.4f}', flush=True)
        rows += mine
    return rows, clock.parts


def seed_inits(seed, budget, bags, cache, teacher_file, align, gen, runs):
    """Return the initial weights of each arm for one seed (writes teacher_frames' one)."""
    # The reference: the teacher as the encoder of an event-only model, the rest drawn from
    # the seed as for scratch.
    torch.manual_seed(seed)
    teacher_init = runs / 'teacher_init'
    teacher_checkpoint(teacher_file, stage_config('finetune', budget, bags['train'], cache,
                                                  seed), teacher_init)
    return {'gep': gen, 'stage1': align, 'scratch': None, 'teacher_frames': teacher_init}


def run_experiment(mode, work, results_dir, name, workers=1, quiet=False):
    """Run the experiment of BUDGETS[mode] in `work`; write name.json and name.md.

    Every process, this one included, runs torch on one thread (see `executor`).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run_experiment(mode, work, results_dir, name, workers, quiet)
    finally:
        torch.set_num_threads(previous)


def _run_experiment(mode, work, results_dir, name, workers, quiet):
    budget = BUDGETS[mode]
    shutil.rmtree(work, ignore_errors=True)  # runs resume: start from nothing
    work.mkdir(parents=True)
    cache = work / 'cache'
    clock = Clock(quiet)
    threads = torch.get_num_threads()
    load_before = os.getloadavg()
    if not quiet:
        print(f'{mode} experiment in {work}: {workers} process(es) of {threads} torch '
              f'thread(s)', flush=True)
    pool = executor(workers)
    try:
        bags = clock.part('synthesise bags', synthesise, work, budget, pool)
        clock.part('window caches', build_caches, bags, budget, cache, pool)
        prior = clock.part('input-free priors', priors, bags, budget, cache)
        teacher = clock.part('teacher', train_teacher, bags['teacher'],
                             work / 'teacher.safetensors', budget['input_size'],
                             budget['teacher']['steps'], seed=0, cache=cache,
                             batch_size=budget['teacher']['batch_size'],
                             lr=budget['teacher']['lr'])
        if not quiet:
            print(f'  teacher (MAE): loss {teacher["first_loss"]:.4f} -> '
                  f'{teacher["train_loss"]:.4f}, held-out frames {teacher["val_loss"]:.4f}',
                  flush=True)
        seeds = budget['seeds']
        runs = [work / 'runs' / f'seed{seed}' for seed in seeds]
        n = len(seeds)
        pre = clock.part('pretraining', lambda: list(pool.map(
            pretrain, seeds, [budget] * n, [bags] * n, [cache] * n, [teacher['file']] * n,
            runs)))
        inits = {}
        for seed, run, (align, gen, parts) in zip(seeds, runs, pre):
            clock.parts.update(parts)
            inits[seed] = seed_inits(seed, budget, bags, cache, teacher['file'], align, gen,
                                     run)
        jobs = [(seed, run, labels) for seed, run in zip(seeds, runs)
                for labels in budget['labels']]
        m = len(jobs)
        done = clock.part('fine-tuning and scoring', lambda: list(pool.map(
            finetune_and_score, [j[0] for j in jobs], [j[2] for j in jobs], [budget] * m,
            [bags] * m, [cache] * m, [inits[j[0]] for j in jobs], [j[1] for j in jobs],
            [quiet] * m)))
    finally:
        pool.shutdown()
    results = []
    for rows, parts in done:
        results += rows
        clock.parts.update(parts)
    summary, paired = summarise(results, budget['labels'])
    command = 'make experiment' if mode == 'full' else \
        f'.venv/bin/python -m experiments.run_small --{mode}'
    report = {'mode': mode, 'command': command, 'budget': budget, 'arms': list(ARMS),
              'bag_seeds': {kind: [int(p.name.rsplit('_', 1)[1]) for p in paths]
                            for kind, paths in bags.items()},
              'representation': REPRESENTATION, 'window': WINDOW, 'variant': 'gep_tiny',
              'teacher': teacher, 'results': results, 'summary': summary, 'paired': paired,
              'priors': prior,
              'statistics': 'per seed: mean over the evaluation bags; mean and two-sided 95% '
                            'Student-t interval over seeds; paired: same seed and subset',
              'wall_s': round(clock.total(), 1), 'parts_s': clock.parts,
              'workers': workers, 'threads_per_worker': threads,
              # Others may share the machine: its 1/5/15-minute load at the start and end.
              'load_average': {'start': [round(x, 2) for x in load_before],
                               'end': [round(x, 2) for x in os.getloadavg()]},
              'cpus': os.cpu_count()}
    report = finite(report)
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f'{name}.json').write_text(json.dumps(report, indent=2) + '\n')
    (results_dir / f'{name}.md').write_text(markdown(report))
    if not quiet:
        print((results_dir / f'{name}.md').read_text())
        print(f'total wall time {clock.total():.1f} s; wrote {results_dir / name}.json and .md')
    return report


def demo_weights(out, work):
    """Train the GEP chain (teacher, align, generative, finetune) once; export it to `out`."""
    budget = BUDGETS['demo']
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cache = work / 'cache'
    clock = Clock()
    bags = clock.part('synthesise bags', synthesise, work, budget, Inline())
    teacher = clock.part('teacher', train_teacher, bags['teacher'], work / 'teacher.safetensors',
                         budget['input_size'], budget['teacher']['steps'], seed=0, cache=cache,
                         batch_size=budget['teacher']['batch_size'], lr=budget['teacher']['lr'])
    _, gen, _ = pretrain(0, budget, bags, cache, teacher['file'], work, clock)
    run = work / 'finetune'
    clock.part('finetune', finetune_arm, 'gep', gen, budget, bags, cache, 0, None, run)
    export(run, out)
    print(f'wrote {out} in {clock.total():.0f} s')
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true',
                        help='the whole chain at toy size (seconds): checks the flow')
    parser.add_argument('--work', type=Path, default=None,
                        help='bags, caches and runs (out/experiment/<mode>; emptied first)')
    parser.add_argument('--results', type=Path, default=None,
                        help='where the JSON and Markdown go (experiments/results; '
                             'out/experiment/quick with --quick)')
    parser.add_argument('--workers', type=int, default=None,
                        help='processes of one torch thread each (2 by default; 1 with '
                             '--quick: everything in this process)')
    parser.add_argument('--demo-weights', type=Path, default=None,
                        help='only train the GEP chain once (demo budget) and export the '
                             'artifact here, for make demo')
    args = parser.parse_args(argv)
    if args.demo_weights is not None:
        return demo_weights(args.demo_weights, args.work or Path('out/experiment/demo'))
    mode = 'quick' if args.quick else 'full'
    work = args.work or Path('out/experiment') / mode
    results_dir = args.results or (Path('out/experiment/quick') if args.quick
                                   else Path('experiments/results'))
    workers = args.workers if args.workers is not None else 1 if args.quick else 2
    if workers < 1:
        parser.error(f'--workers: {workers} must be at least 1')
    run_experiment(mode, work, results_dir, 'quick' if args.quick else 'small', workers)
    return 0


if __name__ == '__main__':
    sys.exit(main())
