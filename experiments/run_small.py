"""Run a small GEP experiment on the CPU: pretraining against scratch with few labels.

`make experiment` (or `python -m experiments.run_small`) runs, on synthetic bags with
gep_tiny at a small input size:

1. synthesis: a few training bags, separate teacher bags and a held-apart evaluation bag,
   every one from its own seed;
2. the teacher: no foundation model can be downloaded, so a gep_tiny ViT is trained on the
   teacher bags' frames with full depth and label supervision (training.stages.teacher);
3. for each seed, three arms, all fine-tuned with the same few labelled sequences
   (data.max_labelled, a subset drawn from the seed) and the same fine-tuning budget:
   - gep: align (to the teacher) -> generative -> finetune;
   - scratch: finetune from random initialisation;
   - stage1: align -> finetune (no generative stage);
   the align run of a seed serves both gep and stage1;
4. evaluation of every fine-tuned model on the validation windows of the held-apart bag
   (FinetuneStage.evaluate: depth AbsRel, segmentation mIoU, gep_model.metrics).

Results: experiments/results/small.json (per arm and seed, plus the budgets and the wall
time of every part) and small.md (mean and standard deviation per arm). `--smoke` runs the
same with one seed and tiny budgets (about two minutes) into out/experiment/smoke/.
"""

import argparse
import json
import math
from pathlib import Path
import shutil
import statistics
import sys
import time

import torch

from training.data.cache import build_cache
from training.run import export, load_config, train
from training.stages.finetune import FinetuneStage
from training.stages.teacher import train_teacher
from training.synthetic.bag import write_synth_bag

CONFIGS = Path(__file__).resolve().parent.parent / 'training' / 'configs'
REPRESENTATION = {'name': 'polarity_rgb', 'percentile': 90.0}
WINDOW = {'duration_ms': 50.0}
ARMS = ('gep', 'scratch', 'stage1')

BUDGETS = {
    'full': {
        'seeds': [0, 1, 2],
        'input_size': [126, 168],
        'train_bags': 4, 'train_seconds': 4.0,   # 80 windows (frames at 20 Hz) per bag
        'teacher_bags': 2, 'teacher_seconds': 4.0,
        'eval_seconds': 6.0, 'eval_val_fraction': 0.5,  # scored on its last 3 s
        'teacher': {'steps': 800, 'batch_size': 8, 'lr': 1e-3},
        'align': {'steps': 600, 'batch_size': 8},
        'generative': {'steps': 600, 'batch_size': 8, 'sequence_length': 8},
        'finetune': {'steps': 300, 'batch_size': 4, 'sequence_length': 2, 'max_labelled': 8,
                     'unfreeze': 'all'},
    },
    'demo': {  # the weights `make demo` replays with: the GEP arm once, a few minutes
        'seeds': [0],
        'input_size': [126, 168],
        'train_bags': 2, 'train_seconds': 4.0,
        'teacher_bags': 1, 'teacher_seconds': 4.0,
        'eval_seconds': 1.0, 'eval_val_fraction': 0.5,
        'teacher': {'steps': 300, 'batch_size': 8, 'lr': 1e-3},
        'align': {'steps': 200, 'batch_size': 8},
        'generative': {'steps': 200, 'batch_size': 8, 'sequence_length': 8},
        'finetune': {'steps': 300, 'batch_size': 4, 'sequence_length': 2, 'max_labelled': None,
                     'unfreeze': 'all'},
    },
    'smoke': {
        'seeds': [0],
        'input_size': [126, 168],
        'train_bags': 2, 'train_seconds': 1.0,
        'teacher_bags': 1, 'teacher_seconds': 1.0,
        'eval_seconds': 1.5, 'eval_val_fraction': 0.5,
        'teacher': {'steps': 4, 'batch_size': 4, 'lr': 1e-3},
        'align': {'steps': 3, 'batch_size': 4},
        'generative': {'steps': 3, 'batch_size': 4, 'sequence_length': 4},
        'finetune': {'steps': 4, 'batch_size': 2, 'sequence_length': 2, 'max_labelled': 4,
                     'unfreeze': 'all'},
    },
}

TRAIN_SEED0, TEACHER_SEED0, EVAL_SEED = 1, 101, 1001  # disjoint scenes


class Clock:
    """Measure and print the wall time of each part of the experiment."""

    def __init__(self):
        self.start = time.perf_counter()
        self.parts = {}

    def part(self, name, fn, *args, **kwargs):
        began = time.perf_counter()
        result = fn(*args, **kwargs)
        took = time.perf_counter() - began
        self.parts[name] = round(took, 2)
        print(f'[{self.total():7.1f} s] {name}: {took:.1f} s', flush=True)
        return result

    def total(self):
        return time.perf_counter() - self.start


def stage_config(stage, budget, sources, cache, seed, **extra):
    """Load the stage's tiny CPU config with this experiment's data, model and loop."""
    loop = budget[stage]
    overrides = [f'data.sources={json.dumps([str(s) for s in sources])}',
                 f'data.cache={cache}', f'model={{input_size: {budget["input_size"]}}}',
                 f'loop.steps={loop["steps"]}', f'loop.batch_size={loop["batch_size"]}',
                 f'loop.seed={seed}', f'loop.ckpt_every={loop["steps"]}', 'loop.eval_every=0',
                 f'loop.warmup_steps={max(loop["steps"] // 10, 1)}']
    if 'sequence_length' in loop:
        overrides.append(f'data.sequence_length={loop["sequence_length"]}')
    if loop.get('max_labelled') is not None:
        overrides.append(f'data.max_labelled={loop["max_labelled"]}')
    if 'unfreeze' in loop:
        overrides.append(f'unfreeze={loop["unfreeze"]}')
    overrides += [f'{k}={v}' for k, v in extra.items()]
    return load_config(CONFIGS / f'{stage}_tiny_cpu.yaml', overrides)


def evaluate(run, budget, eval_bag, cache):
    """Score a fine-tuned run on the held-apart bag's validation windows."""
    loop = budget['finetune']
    config = stage_config('finetune', budget, [eval_bag], cache, 0, init=str(run),
                          **{'data.val_fraction': budget['eval_val_fraction'],
                             'data.max_labelled': 'null'})
    stage = FinetuneStage(config, torch.device('cpu'))
    stage.model.eval()
    with torch.no_grad():
        metrics = stage.evaluate(stage.model)
    return {'abs_rel': metrics.get('depth_abs_rel', math.nan),
            'miou': metrics.get('seg_miou', math.nan),
            'delta1': metrics.get('depth_delta1', math.nan),
            'pixel_acc': metrics.get('seg_pixel_acc', math.nan),
            'val_items': len(stage.val_set), 'sequence_length': loop['sequence_length']}


def synthesise(work, budget):
    bags = {'train': [], 'teacher': []}
    for i in range(budget['train_bags']):
        path = work / 'bags' / f'train_{i}'
        write_synth_bag(path, seconds=budget['train_seconds'], seed=TRAIN_SEED0 + i)
        bags['train'].append(path)
    for i in range(budget['teacher_bags']):
        path = work / 'bags' / f'teacher_{i}'
        write_synth_bag(path, seconds=budget['teacher_seconds'], seed=TEACHER_SEED0 + i)
        bags['teacher'].append(path)
    bags['eval'] = work / 'bags' / 'eval'
    write_synth_bag(bags['eval'], seconds=budget['eval_seconds'], seed=EVAL_SEED)
    return bags


def build_caches(bags, budget, cache):
    size = tuple(budget['input_size'])
    build_cache(bags['train'], cache, REPRESENTATION, size, WINDOW)
    build_cache([bags['eval']], cache, REPRESENTATION, size, WINDOW,
                val_fraction=budget['eval_val_fraction'])


def finite(value):
    """Return value with NaN and infinities as None (strict JSON), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def summarise(results):
    """Return {arm: {metric: (mean, std, n)}} over the seeds."""
    table = {}
    for arm in ARMS:
        rows = [r for r in results if r['arm'] == arm]
        table[arm] = {}
        for metric in ('abs_rel', 'miou'):
            values = [r[metric] for r in rows if math.isfinite(r[metric])]
            mean = statistics.fmean(values) if values else math.nan
            std = statistics.stdev(values) if len(values) > 1 else math.nan
            table[arm][metric] = (mean, std, len(values))
    return table


def markdown(summary, report, command):
    budget = report['budget']
    lines = [
        f'# Small GEP experiment ({report["mode"]})', '',
        f'gep_tiny at {budget["input_size"][0]}x{budget["input_size"][1]}, synthetic bags; '
        f'{len(budget["seeds"])} seed(s); fine-tuned on {budget["finetune"]["max_labelled"]} '
        f'labelled sequences of {budget["finetune"]["sequence_length"]} windows for '
        f'{budget["finetune"]["steps"]} steps (unfreeze: {budget["finetune"]["unfreeze"]}); '
        'scored on the validation windows of a held-apart bag.', '',
        '| arm | depth AbsRel (lower is better) | segmentation mIoU (higher is better) | n |',
        '|---|---|---|---|',
    ]
    names = {'gep': 'GEP: align -> generative -> finetune', 'scratch': 'scratch: finetune',
             'stage1': 'stage 1: align -> finetune'}
    for arm, row in summary.items():
        (ar, ar_sd, n), (mi, mi_sd, _) = row['abs_rel'], row['miou']
        lines.append(f'| {names[arm]} | {ar:.4f} ± {ar_sd:.4f} | {mi:.4f} ± {mi_sd:.4f} | '
                     f'{n} |')
    steps = {s: budget[s]['steps'] for s in ('teacher', 'align', 'generative', 'finetune')}
    lines += [
        '', 'Mean ± sample standard deviation over seeds (NaN with a single seed).', '',
        f'Steps: {steps}. Teacher: a gep_tiny ViT trained on the frames (depth and labels) '
        f'of {budget["teacher_bags"]} bags of other scenes. Wall time: '
        f'{report["wall_s"]:.0f} s on {torch.get_num_threads()} CPU thread(s).', '',
        'Reproduce with:', '', '```', command, '```', '']
    return '\n'.join(lines)


def demo_weights(out, work):
    """Train teacher, align, generative and finetune on synthetic bags; export to `out`."""
    budget = BUDGETS['demo']
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cache = work / 'cache'
    clock = Clock()
    bags = clock.part('synthesise bags', synthesise, work, budget)
    clock.part('window caches', build_caches, bags, budget, cache)
    teacher = clock.part('teacher', train_teacher, bags['teacher'], work / 'teacher.safetensors',
                         budget['input_size'], budget['teacher']['steps'], seed=0, cache=cache,
                         batch_size=budget['teacher']['batch_size'], lr=budget['teacher']['lr'])
    runs = {}
    for stage, extra in (('align', {'teacher': teacher['file']}),
                         ('generative', {'init': 'align'}), ('finetune', {'init': 'generative'})):
        if 'init' in extra:
            extra = {'init': str(runs[extra['init']])}
        runs[stage] = work / stage
        clock.part(stage, train, stage, stage_config(stage, budget, bags['train'], cache, 0,
                                                     **extra), runs[stage], False)
    export(runs['finetune'], out)
    print(f'wrote {out} in {clock.total():.0f} s')
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--smoke', action='store_true',
                        help='one seed and tiny budgets (about two minutes): checks the flow')
    parser.add_argument('--work', type=Path, default=None,
                        help='bags, caches and runs (out/experiment/<mode>; emptied first)')
    parser.add_argument('--results', type=Path, default=None,
                        help='where the JSON and Markdown go (experiments/results; '
                             'out/experiment/smoke with --smoke)')
    parser.add_argument('--demo-weights', type=Path, default=None,
                        help='only train the GEP chain once (demo budget) and export the '
                             'artifact here, for make demo')
    args = parser.parse_args(argv)
    if args.demo_weights is not None:
        return demo_weights(args.demo_weights, args.work or Path('out/experiment/demo'))
    mode = 'smoke' if args.smoke else 'full'
    budget = BUDGETS[mode]
    work = args.work or Path('out/experiment') / mode
    results_dir = args.results or (Path('out/experiment/smoke') if args.smoke
                                   else Path('experiments/results'))
    name = 'smoke' if args.smoke else 'small'
    shutil.rmtree(work, ignore_errors=True)  # runs resume: start from nothing
    work.mkdir(parents=True)
    cache = work / 'cache'
    clock = Clock()
    print(f'{mode} experiment in {work}, {torch.get_num_threads()} CPU thread(s)', flush=True)

    bags = clock.part('synthesise bags', synthesise, work, budget)
    clock.part('window caches', build_caches, bags, budget, cache)
    teacher = clock.part('teacher', train_teacher, bags['teacher'], work / 'teacher.safetensors',
                         budget['input_size'], budget['teacher']['steps'], seed=0, cache=cache,
                         batch_size=budget['teacher']['batch_size'], lr=budget['teacher']['lr'])
    print(f'  teacher: train loss {teacher["train_loss"]:.4f}, '
          f'val loss {teacher["val_loss"]:.4f}', flush=True)

    results = []
    for seed in budget['seeds']:
        runs = work / 'runs' / f'seed{seed}'
        align = runs / 'align'
        clock.part(f'seed {seed} align', train, 'align', stage_config(
            'align', budget, bags['train'], cache, seed, teacher=teacher['file']), align, False)
        gen = runs / 'generative'
        clock.part(f'seed {seed} generative', train, 'generative', stage_config(
            'generative', budget, bags['train'], cache, seed, init=str(align)), gen, False)
        inits = {'gep': gen, 'scratch': None, 'stage1': align}
        for arm in ARMS:
            run = runs / f'finetune_{arm}'
            extra = {'init': str(inits[arm])} if inits[arm] else {}
            began = time.perf_counter()
            own = clock.part(f'seed {seed} {arm} finetune', train, 'finetune', stage_config(
                'finetune', budget, bags['train'], cache, seed, **extra), run, False)
            scores = clock.part(f'seed {seed} {arm} evaluate', evaluate, run, budget,
                                bags['eval'], cache)
            results.append({'arm': arm, 'seed': seed, **scores,
                            'train_val_abs_rel': own.get('depth_abs_rel', math.nan),
                            'train_val_miou': own.get('seg_miou', math.nan),
                            'finetune_wall_s': round(time.perf_counter() - began, 2)})
            print(f'  {arm} seed {seed}: AbsRel {scores["abs_rel"]:.4f}, '
                  f'mIoU {scores["miou"]:.4f}', flush=True)

    summary = summarise(results)
    command = 'make experiment' if not args.smoke else \
        'PYTHONPATH=. .venv/bin/python -m experiments.run_small --smoke'
    report = {'mode': mode, 'command': command, 'budget': budget,
              'seeds': {'train_bags': [TRAIN_SEED0 + i for i in range(budget['train_bags'])],
                        'teacher_bags': [TEACHER_SEED0 + i
                                         for i in range(budget['teacher_bags'])],
                        'eval_bag': EVAL_SEED},
              'representation': REPRESENTATION, 'window': WINDOW, 'variant': 'gep_tiny',
              'teacher': teacher, 'results': results,
              'summary': {arm: {m: {'mean': v[0], 'std': v[1], 'n': v[2]}
                                for m, v in row.items()} for arm, row in summary.items()},
              'wall_s': round(clock.total(), 1), 'parts_s': clock.parts,
              'threads': torch.get_num_threads()}
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f'{name}.json').write_text(json.dumps(finite(report), indent=2) + '\n')
    (results_dir / f'{name}.md').write_text(markdown(summary, report, command))
    print((results_dir / f'{name}.md').read_text())
    print(f'total wall time {clock.total():.1f} s; wrote {results_dir / name}.json and .md')
    return 0


if __name__ == '__main__':
    sys.exit(main())
