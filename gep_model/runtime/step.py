"""The exported inference step: one window per stream, temporal state in and out.

This is the graph every compiled backend runs (torch.export, ONNX, TensorRT). Inputs and
outputs are plain tensors with the batch on a fixed axis, so one dynamic batch dimension
covers 1..max_batch streams. The event representation is computed before it (it depends on
the event count, which no static graph can take), and a context re-base is done outside it.
"""

import torch
from torch import nn
from torch.export import Dim

INPUTS = ('event', 'image', 'has_image', 'keys', 'values', 'valid', 'tokens', 'window')
STATE = ('keys', 'values', 'valid', 'tokens', 'window')
STATE_BATCH_AXIS = {'keys': 1, 'values': 1, 'valid': 0, 'tokens': 0, 'window': 0}


class InferenceStep(nn.Module):
    """Wrap a GEPModel: returns head outputs (depth in metres, class labels) then the state."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        heads = model.config.heads
        self.output_names = ((['depth'] if heads.depth else [])
                             + (['labels'] if heads.num_classes else [])
                             + (['class_logits'] if heads.num_categories else [])
                             + [f'{name}_out' for name in STATE])

    def forward(self, event, image, has_image, keys, values, valid, tokens, window):
        out, state = self.model.step_exportable(event, image, has_image, keys, values, valid,
                                                tokens, window)
        heads = []
        if 'depth' in out:
            heads.append(out['depth'][:, 0])  # (B, H, W) metres
        if 'seg_logits' in out:
            heads.append(out['seg_logits'].argmax(dim=1).to(torch.uint8))  # (B, H, W)
        if 'class_logits' in out:
            heads.append(out['class_logits'])
        return (*heads, *state)


def example_inputs(model, batch, device='cpu', dtype=torch.float32):
    """Return inputs of the step for `batch` fresh streams (the state of init_state)."""
    h, w = model.config.input_size
    state = model.init_state(batch, device, dtype)
    c = model.config.encoder.in_chans
    return (torch.zeros(batch, c, h, w, device=device, dtype=dtype),
            torch.zeros(batch, 3, h, w, device=device, dtype=dtype),
            torch.zeros(batch, dtype=torch.bool, device=device),
            *(state[name] for name in STATE))


def dynamic_shapes(max_batch):
    """torch.export dynamic shapes: the batch axis of every input, 1..max_batch."""
    batch = Dim('batch', min=1, max=max(max_batch, 2))
    axes = (0, 0, 0) + tuple(STATE_BATCH_AXIS[name] for name in STATE)
    return tuple({axis: batch} for axis in axes)


def export_program(model, max_batch, device='cpu', dtype=torch.float32):
    """torch.export the whole inference step with a dynamic batch of 1..max_batch."""
    step = InferenceStep(model).eval()
    example = example_inputs(model, min(2, max(max_batch, 2)), device, dtype)
    return torch.export.export(step, example, dynamic_shapes=dynamic_shapes(max_batch))
