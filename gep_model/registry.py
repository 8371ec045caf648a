"""Named model variants, registered as short functions (the timm convention)."""

from .config import EncoderConfig, GEPConfig, HeadsConfig, quarter_blocks, TemporalConfig

_VARIANTS = {}


def register(fn):
    _VARIANTS[fn.__name__] = fn
    return fn


def variants():
    """Names of the registered variants."""
    return sorted(_VARIANTS)


def variant_config(name, **overrides):
    """Return the GEPConfig of a registered variant; `overrides` replace top-level fields."""
    if name not in _VARIANTS:
        raise KeyError(f'unknown model variant {name!r} (known: {", ".join(variants())})')
    config = _VARIANTS[name]()
    for key, value in overrides.items():
        if not hasattr(config, key):
            raise KeyError(f'GEPConfig has no field {key!r}')
        setattr(config, key, value)
    config.__post_init__()
    return config


@register
def gep_tiny():
    """Return the tiny variant (about half a million parameters): tests and the CPU demo."""
    return GEPConfig(
        variant='gep_tiny', input_size=(252, 350),
        encoder=EncoderConfig(arch='', embed_dim=48, depth=4, num_heads=2,
                              feature_blocks=quarter_blocks(4)),
        temporal=TemporalConfig(dim=48, depth=2, num_heads=2, max_windows=8, pool_grid=(3, 4)),
        heads=HeadsConfig(width=16))


@register
def gep_small():
    """Return GEP's own setup: DINOv2 ViT-S/14 with 4 registers, a 12 x 384 temporal model."""
    return GEPConfig(
        variant='gep_small', input_size=(252, 350),
        encoder=EncoderConfig(arch='vit_small_patch14_reg4_dinov2', embed_dim=384, depth=12,
                              num_heads=6, feature_blocks=quarter_blocks(12)),
        temporal=TemporalConfig(dim=384, depth=12, num_heads=6, max_windows=16),
        heads=HeadsConfig(width=128))


@register
def gep_base():
    """ViT-B/14 (DINOv2 with registers) encoder and a 12 x 768 temporal backbone."""
    return GEPConfig(
        variant='gep_base', input_size=(252, 350),
        encoder=EncoderConfig(arch='vit_base_patch14_reg4_dinov2', embed_dim=768, depth=12,
                              num_heads=12, feature_blocks=quarter_blocks(12)),
        temporal=TemporalConfig(dim=768, depth=12, num_heads=12, max_windows=16),
        heads=HeadsConfig(width=192))
