"""The shared training engine: resume, atomic checkpoints, DDP, non-finite stop.

A resumed run repeats the uninterrupted loss sequence, a kill while writing never replaces
the last good checkpoint, 2-process DDP keeps ranks identical, and a non-finite loss stops
cleanly.
"""

import json
import subprocess
import sys

from conftest import REPO
from helpers.toy_stage import ToyStage
import pytest
import torch

from training.engine.checkpoint import LAST, load_checkpoint
from training.engine.distributed import DistInfo
from training.engine.schedule import cosine_lr
from training.engine.trainer import batch_indices, LoopConfig, NonFiniteLoss, Trainer

LOOP = LoopConfig(steps=12, batch_size=8, grad_accum=2, warmup_steps=3, ckpt_every=4, lr=1e-2)


def run(out, stop_after=None, loop=LOOP, stage=None):
    trainer = Trainer(stage or ToyStage(), loop, out, DistInfo(), progress=False)
    trainer.resume()
    trainer.train(stop_after=stop_after)
    return trainer


def test_resumed_run_repeats_the_uninterrupted_loss_sequence(tmp_path):
    whole = run(tmp_path / 'whole')
    part = run(tmp_path / 'part', stop_after=5)  # "interrupted" after step 5
    assert part.step == 5
    resumed = run(tmp_path / 'part')  # a new process would do the same: a fresh stage
    assert resumed.step == 12
    a = [loss for _, loss in whole.history]
    b = [loss for _, loss in resumed.history]
    assert len(a) == len(b) == 12
    torch.testing.assert_close(torch.tensor(b), torch.tensor(a), rtol=1e-6, atol=1e-7)
    for p, q in zip(whole.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_checkpoint_loads_without_executing_code_and_carries_the_run(tmp_path):
    run(tmp_path)
    ckpt = load_checkpoint(tmp_path / LAST)  # weights_only=True inside
    assert ckpt['step'] == 12 and ckpt['loop']['grad_accum'] == 2
    assert set(ckpt) >= {'model', 'optimizer', 'rng', 'history'}


def test_a_kill_while_writing_never_replaces_the_last_good_checkpoint(tmp_path):
    run(tmp_path, stop_after=4)
    good = load_checkpoint(tmp_path / LAST)['step']
    script = f"""
import os, sys, torch
sys.path[:0] = [{str(REPO)!r}, {str(REPO / 'test')!r}]
from helpers.toy_stage import ToyStage
from training.engine.distributed import DistInfo
from training.engine.trainer import LoopConfig, Trainer
real_save = torch.save
def dying_save(obj, f):
    f.write(b'half a checkpoint')
    f.flush()
    os._exit(9)  # killed mid-write
torch.save = dying_save
loop = LoopConfig(steps=12, batch_size=8, grad_accum=2, warmup_steps=3, ckpt_every=4, lr=1e-2)
t = Trainer(ToyStage(), loop, {str(tmp_path)!r}, DistInfo(), progress=False)
t.resume()
t.train()
"""
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True)
    assert result.returncode == 9, result.stderr
    assert load_checkpoint(tmp_path / LAST)['step'] == good
    # The half-written temporary file is cleared by the next save.
    assert [p.name for p in tmp_path.iterdir() if p.name != LAST]
    run(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [LAST]


def test_non_finite_loss_stops_with_a_clear_message(tmp_path):
    loop = LoopConfig(steps=12, batch_size=8, grad_accum=2, ckpt_every=2, lr=1e-2)
    with pytest.raises(NonFiniteLoss, match='non-finite at step 3'):
        run(tmp_path, loop=loop, stage=ToyStage(poison_step=5))  # micro-step 5 is in step 3
    assert load_checkpoint(tmp_path / LAST)['step'] == 2  # the last good one stays


def test_two_process_ddp_keeps_identical_parameters(tmp_path):
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
           '--master_port', '29517', str(REPO / 'test' / 'helpers' / 'toy_stage.py'),
           str(tmp_path)]
    env = {'PYTHONPATH': f'{REPO}:{REPO / "test"}', 'PATH': '/usr/bin:/bin',
           'OMP_NUM_THREADS': '1'}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    ranks = [json.loads((tmp_path / f'rank{r}.json').read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1]
    alone = json.loads(json.dumps(ranks[0]))
    assert any(abs(v) > 0 for v in alone)


def test_batches_are_a_pure_function_of_position():
    a = [batch_indices(50, 4, 7, i) for i in range(30)]
    assert a == [batch_indices(50, 4, 7, i) for i in range(30)]
    r0 = batch_indices(50, 4, 7, 3, rank=0, world=2)
    r1 = batch_indices(50, 4, 7, 3, rank=1, world=2)
    assert not set(r0) & set(r1)


def test_cosine_schedule():
    assert cosine_lr(0, 1.0, 10, 100) == pytest.approx(0.1)
    assert cosine_lr(9, 1.0, 10, 100) == pytest.approx(1.0)
    assert cosine_lr(55, 1.0, 10, 100) == pytest.approx(0.5)
    assert cosine_lr(100, 1.0, 10, 100, min_lr=0.01) == 0.01
