"""What the stages share: the model from a config, initial weights, teacher, parameter groups."""

from pathlib import Path

from safetensors.torch import load_file
import timm
import torch

from gep_model.config import config_from_dict
from gep_model.model import GEPModel
from gep_model.registry import variant_config

from ..engine.checkpoint import checkpoint_file, load_checkpoint


class ConfigError(ValueError):
    """A training config that cannot work; the message names the key."""


def model_config(config):
    """Return the GEPConfig of a training config: a variant plus `model:` overrides."""
    if 'model_config' in config:  # carried by a checkpoint: rebuild exactly
        return config_from_dict(config['model_config'])
    overrides = dict(config.get('model') or {})
    if 'input_size' in overrides:
        overrides['input_size'] = tuple(overrides['input_size'])
    cfg = variant_config(config.get('variant', 'gep_tiny'),
                         **{k: v for k, v in overrides.items() if k == 'input_size'})
    for section in ('encoder', 'temporal', 'heads'):
        for key, value in (overrides.get(section) or {}).items():
            if not hasattr(getattr(cfg, section), key):
                raise ConfigError(f'model.{section}.{key}: no such model setting')
            setattr(getattr(cfg, section), key, tuple(value) if isinstance(value, list)
                    else value)
    return cfg


NORMALISATION = ('mean', 'std', 'frame_mean', 'frame_std')


def build_model(config):
    """Build the GEPModel and load `init` (a previous stage's checkpoint) when given.

    The encoders' input normalisation comes with `init` unless this config sets its own
    (the weights were trained on inputs normalised so); it is written into `config['model']`,
    so that the run's config and checkpoint carry it on to the next stage and the export.
    """
    init = config.get('init')
    if not init:
        return GEPModel(model_config(config))
    path = checkpoint_file(init)
    if not path.exists():
        raise ConfigError(f'init: no checkpoint at {path}')
    ckpt = load_checkpoint(path)
    parent = ((ckpt.get('config') or {}).get('model_config') or {}).get('encoder') or {}
    inherited = {k: list(parent[k]) for k in NORMALISATION if parent.get(k) is not None}
    if inherited and 'model_config' not in config:
        model = dict(config.get('model') or {})
        encoder = dict(model.get('encoder') or {})
        for key, value in inherited.items():
            encoder.setdefault(key, value)
        config['model'] = dict(model, encoder=encoder)
    model = GEPModel(model_config(config))
    # Stage checkpoints hold the objective module, the GEP model under `gep.`.
    state = {k[len('gep.'):]: v for k, v in ckpt['model'].items() if k.startswith('gep.')}
    mine = model.state_dict()
    usable = {k: v for k, v in state.items() if k in mine and v.shape == mine[k].shape}
    # A trained temporal backbone (stage 2 on) must load whole; stage 1 leaves it random.
    trained = (ckpt.get('config') or {}).get('stage') != 'align'
    for key, value in state.items():
        if trained and key.startswith('temporal.') and key in mine and key not in usable:
            raise ConfigError(f'init: {path} has {key} of shape {tuple(value.shape)}, this model '
                              f'{tuple(mine[key].shape)}; set model.temporal (pool_grid, '
                              'max_windows, ...) as the run it comes from')
    if not usable:
        raise ConfigError(f'init: {path} holds no weights of this model '
                          f'({model.config.variant} at {model.config.input_size})')
    model.load_state_dict(usable, strict=False)
    return model


def read_state_dict(path):
    """Read a teacher state dict from .safetensors or a weights-only torch file."""
    path = Path(path)
    if path.suffix == '.safetensors':
        return load_file(path)
    state = torch.load(path, map_location='cpu', weights_only=True)
    for key in ('model', 'state_dict', 'teacher'):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    return state


def load_teacher(model, spec):
    """Put frozen teacher weights into `model.image_encoder` and return it.

    spec: a local weights file (.safetensors, .pt, .pth: a timm ViT state dict), or
    'timm:<name>' to download the pretrained weights through timm (needs the network and
    the hub), or 'none' to keep the random initialisation (tests only).
    """
    teacher = model.image_encoder
    if teacher is None:
        raise ConfigError('teacher: this model has no image encoder (temporal.image_tokens off)')
    if spec and spec != 'none':
        if spec.startswith('timm:'):
            src = timm.create_model(spec[5:], pretrained=True, num_classes=0,
                                    img_size=tuple(model.config.input_size))
            state = src.state_dict()
        else:
            if not Path(spec).exists():
                raise ConfigError(f'teacher: no such weights file {spec}')
            state = read_state_dict(spec)
        # timm resamples position embeddings to this input size.
        from timm.models.vision_transformer import checkpoint_filter_fn
        state = checkpoint_filter_fn(state, teacher.vit)
        missing, unexpected = teacher.load_teacher(state)
        real_missing = [k for k in missing if not k.startswith('head')]
        if real_missing:
            raise ConfigError(f'teacher: weights lack {real_missing[0]} '
                              f'({len(real_missing)} missing); is it a '
                              f'{model.config.encoder.arch or "matching"} ViT?')
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def init_student_from_teacher(model):
    """Copy the teacher ViT into the event encoder (GEP initialises the student so)."""
    model.encoder.vit.load_state_dict(model.image_encoder.vit.state_dict())


def freeze(module, frozen=True):
    for p in module.parameters():
        p.requires_grad_(not frozen)


def param_groups(model, weight_decay=0.05, scales=None, no_decay=()):
    """Return AdamW groups: no decay on norms, biases, embeddings; lr scales by prefix.

    scales: {module name prefix: lr multiplier}, e.g. {'encoder.': 0.1}; no_decay: name
    prefixes whose parameters never decay (GEP's transformer in stage 2).
    """
    scales = scales or {}
    groups = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = (p.ndim >= 2 and 'embed' not in name and 'token' not in name
                 and not name.startswith(tuple(no_decay)) and weight_decay > 0)
        scale = next((s for prefix, s in scales.items() if name.startswith(prefix)), 1.0)
        key = (decay, scale)
        groups.setdefault(key, {'params': [], 'weight_decay': weight_decay if decay else 0.0,
                                'lr_scale': scale})['params'].append(p)
    return list(groups.values())
