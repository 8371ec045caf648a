"""The training stages: `align` (GEP stage 1), `generative` (stage 2), `finetune` (heads)."""

STAGES = ('align', 'generative', 'finetune')


def make_stage(name, config, device):
    """Build the stage object the training engine runs."""
    if name == 'align':
        from .align import AlignStage
        return AlignStage(config, device)
    if name == 'generative':
        from .generative import GenerativeStage
        return GenerativeStage(config, device)
    if name == 'finetune':
        from .finetune import FinetuneStage
        return FinetuneStage(config, device)
    raise ValueError(f'unknown stage {name!r} (choose from {", ".join(STAGES)})')
