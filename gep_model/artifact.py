"""The deployed model: a folder with `model.safetensors` and `model.json`.

`model.json` holds everything needed to rebuild and use the network: format version,
variant and full config, the event representation and window parameters, the input size,
class names and palette, the depth range, and provenance (how the weights were made).
Loading parses JSON and reads safetensors: nothing in an artifact is ever executed. An
artifact of another format version, with a missing, unexpected or misshaped tensor, or
with non-finite weights, is refused with a message naming the problem.
"""

from dataclasses import dataclass
import hashlib
import json
import os
from pathlib import Path
import tempfile
import time

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
import torch

from .classes import default_classes
from .config import config_from_dict
from .errors import ArtifactError
from .events import make_representation
from .model import GEPModel

FORMAT = 'gep-model'
# 2: UPerNet segmentation head and normed feature levels (version 1 had an FPN head on
# un-normed levels): version 1 weights do not fit and are refused by version.
FORMAT_VERSION = 2
WEIGHTS = 'model.safetensors'
META = 'model.json'
DEFAULT_REPRESENTATION = {'name': 'polarity_rgb', 'percentile': 90.0}  # GEP's rendering
DEFAULT_WINDOW = {'align': 'image', 'duration_ms': 50.0, 'rate_hz': 20.0}


@dataclass
class Artifact:
    model: GEPModel
    meta: dict  # the parsed model.json
    path: Path

    @property
    def config(self):
        return self.model.config

    @property
    def digest(self):
        return self.meta.get('digest', '')


def _digest(folder):
    """Return the SHA-256 of the weights, the identity of an artifact's weights.

    Over the safetensors header with its keys sorted, then the tensor data: safetensors
    writes the header's maps in no fixed order, so the same weights saved twice need not
    give the same file, and a hash of the file's bytes would send engine caches (keyed by
    the digest) to build again.
    """
    h = hashlib.sha256()
    with open(folder / WEIGHTS, 'rb') as f:
        size = f.read(8)
        header = json.loads(f.read(int.from_bytes(size, 'little')))
        canonical = json.dumps(header, sort_keys=True, separators=(',', ':')).encode()
        h.update(len(canonical).to_bytes(8, 'little'))
        h.update(canonical)
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def save_artifact(model, folder, representation=None, window=None, class_names=None,
                  palette=None, provenance=None):
    """Write `model` as an artifact folder (created; an existing one is replaced atomically)."""
    folder = Path(folder)
    cfg = model.config
    representation = representation_of(representation or DEFAULT_REPRESENTATION,
                                       f'{folder}: ')
    if cfg.encoder.in_chans != representation.channels:
        raise ArtifactError(f'{folder}: the encoder takes {cfg.encoder.in_chans} channels, '
                            f'{representation.params()} makes {representation.channels}')
    names, colours = default_classes(cfg.heads.num_classes)
    meta = {
        'format': FORMAT,
        'format_version': FORMAT_VERSION,
        'variant': cfg.variant,
        'config': cfg.to_dict(),
        'representation': representation.params(),
        'window': window or dict(DEFAULT_WINDOW),
        'input_size': list(cfg.input_size),
        'class_names': list(class_names or cfg.heads.class_names or names),
        'palette': [list(c) for c in (palette or colours)],
        'depth_range': [cfg.heads.min_depth, cfg.heads.max_depth],
        'provenance': {'created': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
                       **(provenance or {})},
    }
    if len(meta['class_names']) != cfg.heads.num_classes or \
            len(meta['palette']) != cfg.heads.num_classes:
        raise ArtifactError(f'{folder}: {cfg.heads.num_classes} classes but '
                            f'{len(meta["class_names"])} names and {len(meta["palette"])} colours')
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f'.{folder.name}.', dir=folder.parent))
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(tensors, staging / WEIGHTS, metadata={'format': FORMAT,
                                                    'format_version': str(FORMAT_VERSION)})
    meta['digest'] = _digest(staging)
    (staging / META).write_text(json.dumps(meta, indent=2) + '\n')
    if folder.exists():
        old = folder.with_name(f'.{folder.name}.old')
        os.replace(folder, old)
        os.replace(staging, folder)
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    else:
        os.replace(staging, folder)
    return folder


def representation_of(meta_or_params, where=''):
    """Build the event representation an artifact names (its `representation` entry)."""
    params = meta_or_params.get('representation', meta_or_params)
    try:
        return make_representation(**params)
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f'{where}representation {params}: {exc}') from None


def read_meta(folder):
    """Parse and check model.json of an artifact folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ArtifactError(f'{folder}: no such artifact folder')
    for name in (META, WEIGHTS):
        if not (folder / name).is_file():
            raise ArtifactError(f'{folder}: {name} is missing')
    try:
        meta = json.loads((folder / META).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f'{folder / META}: not readable JSON ({exc})') from None
    if not isinstance(meta, dict) or meta.get('format') != FORMAT:
        raise ArtifactError(f'{folder / META}: not a {FORMAT} file')
    version = meta.get('format_version')
    if version != FORMAT_VERSION:
        raise ArtifactError(f'{folder / META}: format version {version}, this gep_ros reads '
                            f'version {FORMAT_VERSION}; export the weights again with a '
                            f'matching version')
    return meta


def load_artifact(folder, device='cpu'):
    """Load an artifact folder into an eval-mode GEPModel on `device`."""
    folder = Path(folder)
    meta = read_meta(folder)
    try:
        config = config_from_dict(meta['config'])
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f'{folder / META}: bad config ({exc})') from None
    try:
        tensors = load_file(folder / WEIGHTS)
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f'{folder / WEIGHTS}: not a readable safetensors file ({exc})') \
            from None
    model = GEPModel(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing:
        raise ArtifactError(f'{folder / WEIGHTS}: tensor {missing[0]} is missing '
                            f'({len(missing)} missing in all)')
    if unexpected:
        raise ArtifactError(f'{folder / WEIGHTS}: unexpected tensor {unexpected[0]} '
                            f'({len(unexpected)} unexpected in all)')
    for name, value in tensors.items():
        want = tuple(expected[name].shape)
        if tuple(value.shape) != want:
            raise ArtifactError(f'{folder / WEIGHTS}: tensor {name} has shape '
                                f'{tuple(value.shape)}, the config needs {want}')
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ArtifactError(f'{folder / WEIGHTS}: tensor {name} has non-finite values')
    representation = representation_of(meta, f'{folder / META}: ')
    if representation.channels != config.encoder.in_chans:
        raise ArtifactError(f'{folder / META}: {representation.params()} makes '
                            f'{representation.channels} channels, the encoder takes '
                            f'{config.encoder.in_chans}')
    model.load_state_dict(tensors, strict=True)
    return Artifact(model.to(device).eval(), meta, folder)


def describe(meta):
    """Human-readable summary lines of an artifact's model.json."""
    cfg = meta['config']
    enc, tmp = cfg['encoder'], cfg['temporal']
    lines = [
        f'variant        {meta["variant"]} (format {meta["format"]} v{meta["format_version"]})',
        f'input          {meta["input_size"][1]}x{meta["input_size"][0]} (W x H)',
        f'encoder        {enc["arch"] or "custom ViT"}: {enc["depth"]} x {enc["embed_dim"]}, '
        f'patch {enc["patch_size"]}, {enc["in_chans"]} input channels',
        f'temporal       {tmp["depth"]} x {tmp["dim"]}, {tmp["num_heads"]} heads, context '
        f'{tmp["max_windows"]} windows, image tokens {"on" if tmp["image_tokens"] else "off"}',
        f'representation {json.dumps(meta["representation"])}',
        f'window         {json.dumps(meta["window"])}',
        f'depth range    {meta["depth_range"][0]} to {meta["depth_range"][1]} m',
        f'classes        {len(meta["class_names"])}: {", ".join(meta["class_names"])}',
        f'provenance     {json.dumps(meta["provenance"])}',
        f'digest         {meta.get("digest", "")[:16]}',
    ]
    return lines
