"""Model configuration: `@dataclass` configs that fully describe a GEP network.

A config round-trips through plain JSON (`to_dict` / `config_from_dict`), which is how the
deployed artifact stores it, so an artifact rebuilds the exact network without code from
the file.
"""

from dataclasses import asdict, dataclass, field, fields
from typing import Optional, Tuple


def quarter_blocks(depth):
    """Return the ViT blocks whose (normed) outputs feed the heads: the last of each quarter.

    The authors tap blocks 2, 5, 8, 11 of their 12-block ViTs (src/config.py:215,
    out_indices); the same rule gives 0, 1, 2, 3 for a 4-block ViT and 5, 11, 17, 23 for 24.
    """
    if depth < 4:
        raise ValueError(f'a ViT of depth {depth} has fewer than the 4 blocks the heads tap')
    return tuple((k + 1) * depth // 4 - 1 for k in range(4))


@dataclass
class EncoderConfig:
    """The event encoder: a ViT with the image teacher's architecture (timm)."""

    arch: str = 'vit_small_patch14_reg4_dinov2'  # timm name, or '' for the dims below
    embed_dim: int = 384
    depth: int = 12
    num_heads: int = 6
    patch_size: int = 14
    reg_tokens: int = 4
    in_chans: int = 3  # representation channels; other than 3 adds a 1x1 input adapter
    # Blocks whose outputs, after the ViT's final norm, feed the heads (quarter_blocks(depth)).
    feature_blocks: Tuple[int, ...] = (2, 5, 8, 11)
    # Input normalisation (per channel) of the event representation and of the frames; None:
    # ImageNet's for 3 channels, none for others. GEP uses per-data-set statistics
    # (`gep train stats`), stored here so that the robot normalises as training did.
    mean: Optional[Tuple[float, ...]] = None
    std: Optional[Tuple[float, ...]] = None
    frame_mean: Optional[Tuple[float, ...]] = None
    frame_std: Optional[Tuple[float, ...]] = None


@dataclass
class TemporalConfig:
    """The causal transformer over per-window tokens (GEP stage 2)."""

    dim: int = 384
    depth: int = 12
    num_heads: int = 6
    max_windows: int = 16  # temporal positions; the streaming context holds this many
    pool_grid: Optional[Tuple[int, int]] = (4, 4)  # per-window pooling; None: all patches
    image_tokens: bool = True  # frames enter the sequence as tokens of a second encoder
    mlp_ratio: float = 4.0


@dataclass
class HeadsConfig:
    """Task heads: depth in metres within [min_depth, max_depth], segmentation, class."""

    width: int = 64  # channels inside the dense decoders
    depth: bool = True
    min_depth: float = 1.0
    max_depth: float = 80.0
    num_classes: int = 11  # segmentation classes (UPerNet); 0 disables the head
    class_names: Tuple[str, ...] = ()
    num_categories: int = 0  # recognition classes; 0 disables the linear classifier


@dataclass
class GEPConfig:
    variant: str
    input_size: Tuple[int, int] = (252, 350)  # (H, W), multiples of the patch size
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    temporal: TemporalConfig = field(default_factory=TemporalConfig)
    heads: HeadsConfig = field(default_factory=HeadsConfig)

    def __post_init__(self):
        p = self.encoder.patch_size
        if any(s % p for s in self.input_size):
            raise ValueError(f'input_size {tuple(self.input_size)} must be multiples of the '
                             f'patch size {p}')

    @property
    def grid(self):
        """Return the size of the encoder's patch grid at the input size: (rows, columns)."""
        return tuple(s // self.encoder.patch_size for s in self.input_size)

    def to_dict(self):
        return asdict(self)


def _tuples(cls, data):
    """Build a dataclass from a dict, turning JSON lists back into tuples; unknown keys fail."""
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f'{cls.__name__}: unknown keys {sorted(unknown)}')
    out = {}
    for key, value in data.items():
        out[key] = tuple(value) if isinstance(value, list) else value
    return cls(**out)


def config_from_dict(data):
    """Rebuild a GEPConfig from `to_dict()` output (as read from JSON)."""
    data = dict(data)
    sections = {'encoder': EncoderConfig, 'temporal': TemporalConfig, 'heads': HeadsConfig}
    for key, cls in sections.items():
        data[key] = _tuples(cls, data.get(key, {}))
    return _tuples(GEPConfig, data)
