"""The small experiment's chain at toy size, its statistics, and its self-supervised teacher.

The quick mode runs every part (bags, MAE teacher, align, generative, four fine-tuned arms
per seed and label budget, scoring on every evaluation bag) and writes the JSON the issue
asks for. The teacher is trained twice on the same frames, once with the depth and labels
of the cache replaced by noise, and must come out bit-identical: no label reaches it.
"""

import json
import math

from experiments import run_small
from experiments.stats import mean_ci, paired_ci, t_quantile
import pytest
from safetensors.torch import load_file, save_file
import torch

from training.data.cache import build_cache
from training.stages.mae import MaskedAutoencoder
from training.stages.teacher import FramesAsEvents, teacher_encoder, train_teacher
from training.synthetic.bag import write_synth_bag
from training.synthetic.layout import SceneConfig

SIZE = (42, 56)


@pytest.fixture(scope='module')
def quick(tmp_path_factory):
    root = tmp_path_factory.mktemp('experiment')
    report = run_small.run_experiment('quick', root / 'work', root / 'results', 'quick',
                                      workers=1, quiet=True)
    return root, report


def test_quick_run_writes_every_run_with_the_fields(quick):
    root, report = quick
    written = json.loads((root / 'results' / 'quick.json').read_text())
    assert written['results'] == report['results']
    budget = run_small.BUDGETS['quick']
    rows = written['results']
    keys = {(r['arm'], r['seed'], r['labels'], r['eval_bag']) for r in rows}
    assert len(keys) == len(rows) == (len(run_small.ARMS) * len(budget['seeds'])
                                      * len(budget['labels']) * budget['eval_bags'])
    assert {r['eval_bag'] for r in rows} == {f'eval_{run_small.EVAL_SEED0 + i}'
                                             for i in range(budget['eval_bags'])}
    for r in rows:
        assert 0.0 < r['abs_rel'] < 50.0 and 0.0 <= r['miou'] <= 1.0, r
        assert r['event_only'] == (r['arm'] != 'teacher_frames')
    # Every scene apart: training, teacher and evaluation bags never share a seed.
    seeds = written['bag_seeds']
    assert not set(seeds['eval']) & (set(seeds['train']) | set(seeds['teacher']))
    assert written['teacher']['method'] == 'masked autoencoder'
    assert [p['eval_bag'] for p in written['priors']] == sorted({r['eval_bag'] for r in rows})
    assert all(0.0 < p['abs_rel'] < 50.0 and 0.0 <= p['miou'] <= 1.0 for p in written['priors'])
    summary = {(s['labels'], s['arm']): s for s in written['summary']}
    assert set(summary) == {(n, a) for n in budget['labels'] for a in run_small.ARMS}
    assert all(s['abs_rel']['n'] == len(budget['seeds']) for s in summary.values())
    pairs = {(p['labels'], p['pair']) for p in written['paired']}
    assert pairs == {(n, f'{a}-{b}') for n in budget['labels'] for a, b in run_small.PAIRS}
    table = (root / 'results' / 'quick.md').read_text()
    assert 'gep − scratch' in table and 'teacher on frames (reference)' in table


def test_fine_tuned_arms_are_event_only_and_share_the_labelled_subset(quick):
    root, _ = quick
    from training.engine.checkpoint import load_checkpoint
    subsets, rules = {}, {}
    for arm in run_small.EVENT_ARMS:
        ckpt = load_checkpoint(root / 'work' / 'runs' / 'seed1' / 'labels2' / arm / 'last.pt')
        assert ckpt['config']['model_config']['temporal']['image_tokens'] is False
        assert not any(k.startswith('gep.image_encoder.') for k in ckpt['model'])
        subsets[arm] = ckpt['config']['data']['max_labelled']
        config = ckpt['config']
        rules[arm] = json.dumps([config['loop'], config['augment'], config['losses']],
                                sort_keys=True)
    assert set(subsets.values()) == {2}
    # One fine-tuning budget and one set of rules for every event arm, the config's own.
    assert len(set(rules.values())) == 1
    loop, augment, _ = json.loads(rules['gep'])
    tiny = run_small.load_config(run_small.CONFIGS / 'finetune_tiny_cpu.yaml', [])
    assert (loop['lr'], loop['lr_scales'], augment) == (
        tiny['loop']['lr'], tiny['loop']['lr_scales'], tiny['augment'])
    assert loop['steps'] == run_small.BUDGETS['quick']['finetune']['steps']


def test_fine_tuning_warms_up_over_the_configs_share_of_the_steps():
    loop = run_small.load_config(run_small.CONFIGS / 'finetune_tiny_cpu.yaml', [])['loop']
    share = loop['warmup_steps'] / loop['steps']
    assert run_small.warmup_steps('finetune', 100) == round(100 * share)
    assert run_small.warmup_steps('finetune', 1) == 1
    assert run_small.warmup_steps('align', 200) == 20


def test_paired_statistics_match_hand_computation():
    assert t_quantile(0.975, 4) == pytest.approx(2.7764451, abs=1e-6)
    assert t_quantile(0.975, 1) == pytest.approx(12.7062047, abs=1e-5)
    mean, half, n = mean_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (mean, n) == (3.0, 5) and half == pytest.approx(2.7764451 * math.sqrt(2.5 / 5))
    # Pairs by key: seed 3 has no partner and is left out.
    mean, half, n = paired_ci({0: 1.0, 1: 2.0, 2: 4.0, 3: 9.0}, {0: 0.5, 1: 1.0, 2: 3.0})
    assert n == 3 and mean == pytest.approx((0.5 + 1.0 + 1.0) / 3)
    assert math.isnan(mean_ci([1.0])[1])


def test_mae_hides_three_quarters_and_learns_on_frames():
    torch.manual_seed(0)
    mae = MaskedAutoencoder(teacher_encoder(SIZE))
    ys, xs = torch.meshgrid(torch.linspace(0, 1, SIZE[0]), torch.linspace(0, 1, SIZE[1]),
                            indexing='ij')
    images = torch.stack([(torch.sin(6 * xs + k) * torch.cos(4 * ys - k) + 1) / 2
                          for k in range(4)])[:, None].expand(-1, 3, -1, -1)
    g = torch.Generator().manual_seed(0)
    optimizer = torch.optim.AdamW(mae.parameters(), lr=2e-3)
    losses = []
    for _ in range(25):
        loss, pred, mask = mae(images, g)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
    assert pred.shape == (4, 12, 14 * 14 * 3)
    assert mask.sum(1).tolist() == [9.0] * 4  # 12 patches, 3 visible
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5


def test_teacher_never_reads_labels(tmp_path):
    bag = tmp_path / 'teacher_bag'
    write_synth_bag(bag, seconds=0.5, seed=7, config=SceneConfig(width=96, height=72))
    rep = {'name': 'polarity_rgb', 'percentile': 90.0}
    kwargs = {'input_size': SIZE, 'steps': 4, 'seed': 3, 'cache': tmp_path / 'cache',
              'batch_size': 4, 'representation': rep}
    first = train_teacher([bag], tmp_path / 'a.safetensors', **kwargs)
    folder = build_cache([bag], tmp_path / 'cache', rep, SIZE, {'duration_ms': 50.0})
    g = torch.Generator().manual_seed(1)
    for shard in folder.glob('*.safetensors'):
        rows = load_file(shard)
        rows['depth'] = torch.rand(rows['depth'].shape, generator=g) * 80
        rows['labels'] = torch.randint(0, 11, rows['labels'].shape, generator=g).to(
            rows['labels'].dtype)
        save_file(rows, shard)
    second = train_teacher([bag], tmp_path / 'b.safetensors', **kwargs)
    a, b = load_file(first['file']), load_file(second['file'])
    assert a.keys() == b.keys() and 'blocks.0.attn.qkv.weight' in a
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert first['train_loss'] == second['train_loss']


def test_frame_reference_feeds_frames_as_events():
    class Items:

        def batch(self, indices):
            return {'events': torch.zeros(len(indices), 2, 3, 4, 4),
                    'images': torch.ones(len(indices), 2, 3, 4, 4)}

        def labelled_items(self):
            return [0, 1]

    view = FramesAsEvents(Items())
    assert torch.equal(view.batch([0, 1])['events'], torch.ones(2, 2, 3, 4, 4))
    assert view.labelled_items() == [0, 1]


def test_bad_budget_values_are_refused(tmp_path):
    with pytest.raises(ValueError, match='teacher steps'):
        train_teacher([tmp_path / 'none'], tmp_path / 't.safetensors', SIZE, 0)
    with pytest.raises(ValueError, match='--workers'):
        run_small.executor(0)
