"""`gep train`: run a stage from a YAML config with key=value overrides, and export.

The config (see training/configs/) names the stage's data, model variant, initial weights
and loop settings; `key=value` arguments override any entry by dotted path
(`loop.steps=200 data.sources=[a.mcap,b.mcap]`, values parsed as YAML). A run directory holds
`last.pt` (resumed automatically), `config.yaml` (what ran) and TensorBoard logs (`tb/`).
Launch with torchrun for several GPUs or nodes; rank 0 alone logs and saves.
"""

from dataclasses import fields
import json
from pathlib import Path
import subprocess

import yaml

from .engine.trainer import LoopConfig


class TrainError(Exception):
    """A training run that cannot start or go on; the message says why."""


def load_config(path, overrides=()):
    """Read a stage config and apply `key.path=value` overrides."""
    try:
        config = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise TrainError(f'{path}: cannot read the config ({exc})') from None
    if not isinstance(config, dict):
        raise TrainError(f'{path}: expected a mapping at the top level')
    for item in overrides:
        key, sep, text = item.partition('=')
        if not sep or not key:
            raise TrainError(f'override {item!r}: expected key=value')
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise TrainError(f'override {item!r}: {exc}') from None
        node = config
        parts = key.split('.')
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise TrainError(f'override {item!r}: {part} is not a section')
        node[parts[-1]] = value
    return config


def loop_config(config):
    known = {f.name for f in fields(LoopConfig)}
    loop = config.get('loop') or {}
    unknown = sorted(set(loop) - known - {'lr_scales'})
    if unknown:
        raise TrainError(f'loop.{unknown[0]}: no such loop setting ({", ".join(sorted(known))})')
    return LoopConfig(**{k: v for k, v in loop.items() if k in known})


def git_commit():
    try:
        out = subprocess.run(['git', 'rev-parse', 'HEAD'], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def train(stage_name, config, out_dir, progress=True):
    """Run (or resume) a stage; return the final metrics."""
    import torch
    from torch.utils.tensorboard import SummaryWriter

    from .engine.distributed import cleanup, init_distributed
    from .engine.trainer import Trainer
    from .stages import make_stage
    from .stages.common import ConfigError, model_config
    out_dir = Path(out_dir)
    dist = init_distributed(config.get('device'))
    loop = loop_config(config)
    torch.manual_seed(loop.seed + dist.rank)
    try:
        stage = make_stage(stage_name, config, dist.device)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        cleanup()
        raise TrainError(str(exc)) from None
    config = dict(config, stage=stage_name,
                  model_config=model_config(config).to_dict(),
                  provenance={'commit': git_commit()})
    writer = None
    if dist.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / 'config.yaml').write_text(yaml.safe_dump(config, sort_keys=False))
        writer = SummaryWriter(str(out_dir / 'tb'))
    trainer = Trainer(stage, loop, out_dir, dist, writer, progress, config)
    resumed = trainer.resume()
    if resumed and dist.is_main:
        print(f'resuming {stage_name} at step {trainer.step} from {out_dir / "last.pt"}')
    try:
        metrics = trainer.train()
    finally:
        if writer is not None:
            writer.close()
        cleanup()
    if dist.is_main and metrics:
        (out_dir / 'metrics.json').write_text(json.dumps(metrics, indent=2) + '\n')
    return metrics


def export(checkpoint, out_dir):
    """Write the deployed artifact from a training checkpoint, with provenance."""
    from gep_model.artifact import save_artifact
    from gep_model.config import config_from_dict
    from gep_model.model import GEPModel

    from .engine.checkpoint import checkpoint_file, load_checkpoint
    path = checkpoint_file(checkpoint)
    if not path.exists():
        raise TrainError(f'{path}: no such checkpoint')
    ckpt = load_checkpoint(path)
    config = ckpt.get('config') or {}
    if 'model_config' not in config:
        raise TrainError(f'{path}: not a gep training checkpoint (no model config)')
    model = GEPModel(config_from_dict(config['model_config']))
    state = {k[len('gep.'):]: v for k, v in ckpt['model'].items() if k.startswith('gep.')}
    model.load_state_dict(state, strict=True)
    data = config.get('data') or {}
    provenance = {'stages': _stages(config), 'data': [str(s) for s in data.get('sources', [])],
                  'step': ckpt['step'], 'commit': (config.get('provenance') or {}).get('commit'),
                  'checkpoint': str(path)}
    window = {'align': 'image', **(data.get('window') or {'duration_ms': 50.0})}
    return save_artifact(model, out_dir, representation=data.get('representation'),
                         window=window, provenance=provenance)


def _stages(config):
    """Return the chain of stages that led to this checkpoint, oldest first."""
    chain = [config.get('stage')]
    init = config.get('init')
    seen = 0
    while init and seen < 8:
        path = Path(init) / 'config.yaml' if Path(init).is_dir() else \
            Path(init).parent / 'config.yaml'
        if not path.exists():
            break
        parent = yaml.safe_load(path.read_text()) or {}
        chain.insert(0, parent.get('stage'))
        init = parent.get('init')
        seen += 1
    return [s for s in chain if s]
