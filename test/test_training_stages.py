"""The GEP stages from the command line on a synthetic bag.

Align, generative and finetune each run a few steps, resume, export, and the exported
weights run in the runtime.
"""

import json

import numpy as np
import pytest
from safetensors.torch import save_file
import torch
import yaml

from gep_model.artifact import load_artifact
from gep_model.model import GEPModel
from gep_model.registry import variant_config
from gep_model.runtime import make_runtime
from gep_ros.cli.main import main
from training.engine.checkpoint import load_checkpoint
from training.run import load_config
from training.stages.common import build_model
from training.stages.data import datasets
from training.synthetic.bag import write_synth_bag

SIZE = [126, 168]


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp('train')
    write_synth_bag(root / 'a', seconds=1.0, seed=1)
    write_synth_bag(root / 'b', seconds=1.0, seed=2)
    torch.manual_seed(0)
    teacher = GEPModel(variant_config('gep_tiny', input_size=tuple(SIZE))).image_encoder.vit
    save_file({k: v.contiguous() for k, v in teacher.state_dict().items()},
              root / 'teacher.safetensors')
    return root


def args(world, stage, out, *extra):
    return ['train', stage, '--config', f'training/configs/{stage}_tiny_cpu.yaml',
            '--out', str(out), f'data.sources=[{world / "a"}, {world / "b"}]',
            f'data.cache={world / "cache"}', f'model={{input_size: {SIZE}}}', '--no-progress',
            *extra]


@pytest.fixture(scope='module')
def runs(world):
    align = world / 'align'
    assert main(args(world, 'align', align, f'teacher={world / "teacher.safetensors"}',
                     'loop.steps=3', 'loop.batch_size=2')) == 0
    gen = world / 'gen'
    assert main(args(world, 'generative', gen, f'init={align}', 'loop.steps=3',
                     'loop.batch_size=2', 'data.sequence_length=3')) == 0
    ft = world / 'ft'
    assert main(args(world, 'finetune', ft, f'init={gen}', 'loop.steps=3',
                     'loop.batch_size=2')) == 0
    return align, gen, ft


def test_each_stage_writes_a_checkpoint(runs):
    for run in runs:
        ckpt = load_checkpoint(run / 'last.pt')
        assert ckpt['step'] == 3 and (run / 'config.yaml').exists()
        assert any(p.name.startswith('events.out.tfevents') for p in (run / 'tb').iterdir())


def test_student_starts_from_the_teacher_and_moves(runs, world):
    from safetensors.torch import load_file
    teacher = load_file(world / 'teacher.safetensors')
    state = load_checkpoint(runs[0] / 'last.pt')['model']
    frozen = state['gep.image_encoder.vit.blocks.0.attn.qkv.weight']
    torch.testing.assert_close(frozen, teacher['blocks.0.attn.qkv.weight'])
    student = state['gep.encoder.vit.blocks.0.attn.qkv.weight']
    assert not torch.equal(student, teacher['blocks.0.attn.qkv.weight'])  # it trained
    assert (student - teacher['blocks.0.attn.qkv.weight']).abs().max() < 0.05  # from there


def test_generative_trains_only_the_temporal_backbone(runs):
    before = load_checkpoint(runs[0] / 'last.pt')['model']
    after = load_checkpoint(runs[1] / 'last.pt')['model']
    assert torch.equal(before['gep.encoder.vit.blocks.0.attn.qkv.weight'],
                       after['gep.encoder.vit.blocks.0.attn.qkv.weight'])
    changed = [k for k in after if k.startswith('gep.temporal.')
               and not torch.equal(after[k], GEPModel(variant_config(
                   'gep_tiny', input_size=tuple(SIZE))).state_dict()[k[4:]])]
    assert changed


def test_interrupted_stage_resumes_the_same_run(world, runs):
    whole = world / 'whole'
    assert main(args(world, 'finetune', whole, f'init={runs[1]}', 'loop.steps=4',
                     'loop.batch_size=2', 'loop.ckpt_every=2')) == 0
    part = world / 'part'
    assert main(args(world, 'finetune', part, f'init={runs[1]}', 'loop.steps=2',
                     'loop.batch_size=2', 'loop.ckpt_every=2')) == 0
    assert main(args(world, 'finetune', part, f'init={runs[1]}', 'loop.steps=4',
                     'loop.batch_size=2', 'loop.ckpt_every=2')) == 0
    a = load_checkpoint(whole / 'last.pt')['history']
    b = load_checkpoint(part / 'last.pt')['history']
    np.testing.assert_allclose([x[1] for x in b], [x[1] for x in a], rtol=1e-5)


def test_export_gives_an_artifact_the_runtime_runs(runs, world, capsys):
    out = world / 'artifact'
    assert main(['train', 'export', str(runs[2]), '--out', str(out)]) == 0
    artifact = load_artifact(out)
    assert artifact.meta['provenance']['stages'] == ['align', 'generative', 'finetune']
    assert artifact.meta['provenance']['step'] == 3
    runtime = make_runtime(artifact, 'cpu')
    (result,) = runtime.infer(torch.rand(1, 3, *SIZE))
    assert result.depth.shape == tuple(SIZE) and np.isfinite(result.depth).all()
    # And it replays a bag, as the robot would run it.
    report = world / 'replay' / 'report.json'
    assert main(['replay', str(world / 'b'), '--weights', str(out), '--out',
                 str(world / 'replay' / 'out.mcap'), '--report', str(report), '--backend',
                 'cpu', '--panels', '0']) == 0
    assert json.loads(report.read_text())['outputs']['/dvs/depth/image'] == 20


def test_bad_configs_are_one_line_errors(world, capsys):
    assert main(args(world, 'align', world / 'x', 'teacher=/no/such/file')) == 2
    assert main(args(world, 'finetune', world / 'y', 'loop.stepz=3')) == 2
    assert main(['train', 'export', str(world / 'nothing'), '--out', str(world / 'z')]) == 2
    assert main(args(world, 'finetune', world / 'w', 'loop.batch_size=1',
                     'data.sequence_length=1')) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith('gep: error: ') for line in err)
    assert 'no such weights file' in err[0] and 'loop.stepz' in err[1]
    assert 'loop.batch_size 1 x data.sequence_length 1' in err[3]


def test_stats_command_writes_the_data_statistics(world, tmp_path, capsys):
    out = tmp_path / 'align_stats.yaml'
    assert main(['train', 'stats', '--config', 'training/configs/align_tiny_cpu.yaml',
                 f'data.sources=[{world / "a"}, {world / "b"}]', f'data.cache={world / "cache"}',
                 f'model={{input_size: {SIZE}}}', '--write', str(out)]) == 0
    encoder = yaml.safe_load(out.read_text())['model']['encoder']
    config = load_config(out)
    train_set = datasets(config, sequence_length=1)[0]
    events = torch.stack([train_set[i]['events'][0] for i in range(len(train_set))]).double()
    images = torch.stack([train_set[i]['images'][0] for i in range(len(train_set))]).double()
    np.testing.assert_allclose(encoder['mean'], events.mean(dim=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(encoder['frame_std'], images.std(dim=(0, 2, 3), correction=0),
                               rtol=1e-5)
    assert 'frame_mean' in capsys.readouterr().out


def test_next_stage_inherits_the_input_statistics(runs, tmp_path):
    ckpt = load_checkpoint(runs[0] / 'last.pt')
    ckpt['config']['model_config']['encoder'].update(mean=[0.9, 0.8, 0.9], std=[0.2, 0.3, 0.2])
    torch.save(ckpt, tmp_path / 'align.pt')
    config = {'variant': 'gep_tiny', 'init': str(tmp_path / 'align.pt'),
              'model': {'input_size': SIZE}}
    gep = build_model(config)
    assert gep.encoder.mean.flatten().tolist() == pytest.approx([0.9, 0.8, 0.9])
    assert config['model']['encoder']['std'] == [0.2, 0.3, 0.2]  # carried on to the export
    assert gep.image_encoder.mean.flatten().tolist() == pytest.approx([0.485, 0.456, 0.406])


def test_generative_runs_gep_patch_scheme_and_finetune_must_match(runs, world, capsys):
    gen = world / 'gen_patches'
    assert main(args(world, 'generative', gen, f'init={runs[0]}', 'loop.steps=2',
                     'loop.batch_size=2', 'data.sequence_length=3', 'tokens.scheme=patches',
                     f'model={{input_size: {SIZE}, temporal: {{pool_grid: null}}}}')) == 0
    ckpt = load_checkpoint(gen / 'last.pt')
    assert ckpt['step'] == 2 and ckpt['config']['tokens'] == {'scheme': 'patches'}
    assert main(args(world, 'finetune', world / 'ft_mismatch', f'init={gen}',
                     'loop.steps=1')) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'slot_embed' in err[0] and 'pool_grid' in err[0]
