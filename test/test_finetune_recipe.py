"""The authors' fine-tuning recipe, held in place: each test fails if a part of it drifts.

Layer-wise learning rates per group, the auxiliary head's weight, the ViT blocks feeding
UPerNet, event-only by default, and one geometric transform shared by events and labels.
"""

from pathlib import Path

import pytest
import torch
import yaml

from gep_model.config import quarter_blocks
from gep_model.model import GEPModel
from gep_model.registry import variant_config
from training.stages.common import ConfigError, model_config
from training.stages.finetune import (apply_frames, AUX_LEVEL, FinetuneObjective, FinetuneStage,
                                      layerwise_groups, lr_scales, recognition_hits)
from training.stages.finetune_augment import SequenceAugment

SIZE = (56, 84)
CONFIGS = Path(__file__).resolve().parents[1] / 'training' / 'configs'


def tiny(frames=False, max_windows=8, **heads):
    config = {'model': {'input_size': list(SIZE), 'heads': heads,
                        'temporal': {'max_windows': max_windows}}, 'frames': frames}
    apply_frames(config)
    return GEPModel(model_config(config))


def batch(b=2, t=2, classes=11):
    torch.manual_seed(0)
    depth = torch.rand(b, t, *SIZE) * 20 + 2
    return {'events': torch.rand(b, t, 3, *SIZE), 'images': torch.rand(b, t, 3, *SIZE),
            'has_image': torch.ones(b, t, dtype=torch.bool), 'depth': depth,
            'labels': torch.randint(0, classes, (b, t, *SIZE)),
            'has_depth': torch.ones(b, t, dtype=torch.bool),
            'has_labels': torch.ones(b, t, dtype=torch.bool)}


def test_layerwise_learning_rates_per_group():
    objective = FinetuneObjective(tiny())
    groups = layerwise_groups(objective, lr_scales({'init': 'runs/gen'}), 1e-5)
    by_name = {g['name']: g for g in groups}
    assert {n: g['lr_scale'] for n, g in by_name.items()} == {
        'encoder': 0.01, 'temporal': 0.1, 'heads_decay': 1.0, 'heads_no_decay': 1.0}
    assert {n: g['weight_decay'] for n, g in by_name.items()} == {
        'encoder': 0.0, 'temporal': 0.0, 'heads_decay': 1e-5, 'heads_no_decay': 0.0}
    ids = {n: {id(p) for p in g['params']} for n, g in by_name.items()}
    gep = objective.gep
    assert {id(p) for p in gep.encoder.parameters()} == ids['encoder']
    assert {id(p) for p in gep.temporal.parameters()} == ids['temporal']
    heads = [gep.seg_head, gep.depth_head, gep.context_proj, objective.aux_head]
    assert {id(p) for m in heads for p in m.parameters()} == ids['heads_decay'] | ids[
        'heads_no_decay']
    # A random encoder learns at the scratch rate; config values replace the defaults.
    assert lr_scales({})['encoder'] == 0.1
    assert lr_scales({'init': 'x', 'loop': {'lr_scales': {'temporal': 0.05}}})['temporal'] == 0.05
    with pytest.raises(ConfigError, match='loop.lr_scales.encodr'):
        lr_scales({'loop': {'lr_scales': {'encodr': 0.1}}})


def test_auxiliary_head_counts_0_4_and_only_in_training():
    objective = FinetuneObjective(tiny()).train()
    total, terms, out = objective(batch())
    assert objective.weights['seg_aux'] == 0.4 and AUX_LEVEL == 2
    expected = terms['depth'] + terms['segmentation'] + 0.4 * terms['seg_aux']
    torch.testing.assert_close(total, expected)
    assert 'features' not in out
    objective.eval()
    with torch.no_grad():
        _, terms, _ = objective(batch())
    assert 'seg_aux' not in terms
    # The deployed model does not carry it: it belongs to the training objective.
    assert not any('aux' in k for k in objective.gep.state_dict())


def test_upernet_reads_the_normed_outputs_of_the_last_block_of_each_quarter():
    assert variant_config('gep_small').encoder.feature_blocks == (2, 5, 8, 11)
    assert variant_config('gep_base').encoder.feature_blocks == (2, 5, 8, 11)
    assert variant_config('gep_tiny').encoder.feature_blocks == (0, 1, 2, 3)
    assert quarter_blocks(8) == (1, 3, 5, 7) and quarter_blocks(24) == (5, 11, 17, 23)
    cfg = variant_config('gep_tiny', input_size=SIZE)
    cfg.encoder.depth, cfg.encoder.feature_blocks = 8, quarter_blocks(8)
    model = GEPModel(cfg).eval()
    vit = model.encoder.vit
    outputs, seen = {}, {}
    for i, block in enumerate(vit.blocks):
        block.register_forward_hook(lambda m, a, y, i=i: outputs.__setitem__(i, y))
    model.seg_head.register_forward_pre_hook(
        lambda m, args: seen.__setitem__('features', args[0]))
    with torch.no_grad():
        model(torch.rand(1, 1, 3, *SIZE))
        h, w = cfg.grid
        for level, index in zip(seen['features'], (1, 3, 5, 7)):
            normed = vit.norm(outputs[index])[:, vit.num_prefix_tokens:]
            expected = normed.transpose(1, 2).reshape(1, -1, h, w)
            # context_proj starts at zero, so the heads read exactly the encoder's levels
            torch.testing.assert_close(level, expected)
        raw = outputs[7][:, vit.num_prefix_tokens:].transpose(1, 2).reshape(1, -1, h, w)
        assert not torch.allclose(seen['features'][3], raw)  # normed, not raw


def test_event_only_by_default_never_reads_frames():
    config = {}
    apply_frames(config)
    assert config['model']['temporal']['image_tokens'] is False
    objective = FinetuneObjective(tiny()).eval()
    assert objective.gep.image_encoder is None
    b = batch()
    with torch.no_grad():
        clean = objective.predict(b)['seg_logits']
        b['images'] = torch.full_like(b['images'], float('nan'))
        torch.testing.assert_close(objective.predict(b)['seg_logits'], clean)
    with_frames = FinetuneObjective(tiny(frames=True))
    assert with_frames.gep.image_encoder is not None
    with pytest.raises(ConfigError, match='contradicts frames'):
        apply_frames({'frames': True, 'model': {'temporal': {'image_tokens': False}}})
    for path in sorted(CONFIGS.glob('finetune_*.yaml')):
        assert yaml.safe_load(path.read_text())['frames'] is False, path.name


def test_event_only_stream_past_its_context_equals_the_full_forward():
    model = tiny(max_windows=4).eval()
    w = model.config.temporal.max_windows
    events = torch.rand(1, w + 2, 3, *SIZE)
    with torch.no_grad():
        state = None
        for i in range(w + 2):
            out, state = model.step(events[:, i], torch.rand(1, 3, *SIZE), state=state)
        reference = model(events[:, w - w // 2:])['depth'][:, -1]
    torch.testing.assert_close(out['depth'], reference, rtol=1e-5, atol=1e-5)


def test_flip_tta_predicts_the_mirror_of_a_mirrored_input():
    stage = object.__new__(FinetuneStage)  # the prediction needs no data
    stage.tta_flip = True
    objective = FinetuneObjective(tiny()).eval()
    b = batch(b=1)
    mirrored = dict(b, events=b['events'].flip(-1))
    with torch.no_grad():
        out, out_m = stage.predict(objective, b), stage.predict(objective, mirrored)
        plain = objective.predict(b)
    for key in ('seg_logits', 'log_depth'):
        torch.testing.assert_close(out_m[key], out[key].flip(-1), rtol=1e-4, atol=1e-4)
        assert not torch.allclose(out[key], plain[key])  # the mirrored run counts
    torch.testing.assert_close(out['depth'], torch.exp(out['log_depth']))


def blocks_scene(t=2):
    """Return a sequence whose events, frames, depth and labels encode one class map."""
    ys, xs = torch.meshgrid(torch.arange(SIZE[0]), torch.arange(SIZE[1]), indexing='ij')
    classes = (ys // 14) * 6 + xs // 14  # 4 x 6 blocks, ids 0..23
    events = (classes.float() / 32)[None, None].expand(t, 3, -1, -1).clone()
    return {'events': events[None], 'images': events[None].clone(),
            'depth': (classes.float() + 1)[None, None].expand(1, t, -1, -1).clone(),
            'labels': classes[None, None].expand(1, t, -1, -1).clone()}


@pytest.mark.parametrize('spec', [
    {'kind': 'scale_crop', 'cat_max_ratio': 1.0},
    {'kind': 'resized_crop'},
])
def test_augmentation_moves_events_and_labels_together(spec):
    augment = SequenceAugment(spec, event_fill=1.0)
    torch.manual_seed(1)
    changed = 0
    for _ in range(8):
        item = augment(blocks_scene())
        labels, depth, events = item['labels'][0], item['depth'][0], item['events'][0]
        assert labels.shape == (2, *SIZE) and events.shape == (2, 3, *SIZE)
        # One transform for every window of the sequence.
        assert torch.equal(labels[0], labels[1]) and torch.equal(events[0], events[1])
        known = labels != 255
        torch.testing.assert_close(depth[known], labels[known].float() + 1)  # both nearest
        assert torch.isnan(depth[~known]).all()
        # Events resample bilinearly: away from block edges they carry the label's class.
        agree = (events[:, 0] * 32).round().long() == labels
        assert agree[known].float().mean() > 0.8
        known3 = known[:, None].expand_as(events)  # frames pad with 0, events with no events
        torch.testing.assert_close(item['images'][0][known3], events[known3])
        changed += not torch.equal(labels, blocks_scene()['labels'][0])
    assert changed >= 6


def test_bad_augmentation_settings_name_the_key():
    with pytest.raises(ValueError, match='augment.scale'):
        SequenceAugment({'kind': 'scale_crop', 'scale': [2.0, 0.5]})
    with pytest.raises(ValueError, match='augment.kind'):
        SequenceAugment({'kind': 'mixup'})
    with pytest.raises(ValueError, match='augment.ratio: no such setting'):
        SequenceAugment({'kind': 'scale_crop', 'ratio': [1, 1]})


@pytest.mark.parametrize('task, percentile, temporal, aux', [
    ('dsec_seg', 90.0, 0.1, 0.4), ('ddd17_seg', 95.0, 0.1, 0.4),
    ('mvsec_depth', 95.0, 0.05, None), ('nimagenet_cls', 99.0, 0.01, None)])
def test_task_configs_hold_the_authors_settings(task, percentile, temporal, aux):
    for variant in ('small_gpu', 'tiny_cpu'):
        config = yaml.safe_load((CONFIGS / f'finetune_{task}_{variant}.yaml').read_text())
        assert config['data']['representation']['percentile'] == percentile
        assert config['loop']['lr_scales']['encoder'] == 0.01
        assert config['loop']['lr_scales']['temporal'] == temporal
        assert config['losses'].get('seg_aux') == aux
        assert config['unfreeze'] == 'all'
        apply_frames(config)
        cfg = model_config(config)  # builds: sizes are multiples of the patch size
        assert cfg.variant == ('gep_small' if variant == 'small_gpu' else 'gep_tiny')
    mvsec = yaml.safe_load((CONFIGS / 'finetune_mvsec_depth_small_gpu.yaml').read_text())
    assert (mvsec['model']['heads']['min_depth'], mvsec['model']['heads']['max_depth']) == (
        0.1, 30.0)


def test_recognition_scores_top1_and_top5_over_windows_with_a_category():
    logits = torch.tensor([[0.0, 1, 2, 3, 4, 5, 6],    # ranks 6, 5, 4, 3, 2 first
                           [6.0, 5, 4, 3, 2, 1, 0],
                           [0.0, 5, 5, 5, 5, 9, 1],
                           [9.0, 0, 0, 0, 0, 0, 0]])
    category = torch.tensor([6, 2, 0, -1])  # top-1 hit, top-5 hit, miss, not scored
    assert recognition_hits(logits, category) == (1, 2, 3)
    # Fewer than 5 categories: top-5 is top-3 here.
    assert recognition_hits(logits[:, :3], torch.tensor([2, 1, -1, 1])) == (1, 3, 3)
