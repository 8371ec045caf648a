"""GEP networks: variants, gradients, streaming against the full forward, export.

Every variant builds and runs, gradients reach every parameter, streaming with the
key/value cache equals the full-sequence forward, and the step exports with a dynamic batch.
"""

import json

import pytest
import torch
from torch.export import Dim

from gep_model.config import config_from_dict, HeadsConfig
from gep_model.model import GEPModel
from gep_model.registry import variant_config, variants


def tiny(**overrides):
    torch.manual_seed(0)
    return GEPModel(variant_config('gep_tiny', **overrides)).eval()


def check_outputs(out, batch, size, num_classes):
    depth = out['depth']
    assert depth.shape[0] == batch and depth.shape[-2:] == size
    cfg = variant_config('gep_tiny').heads
    assert torch.isfinite(depth).all()
    assert depth.min() >= cfg.min_depth * 0.999 and depth.max() <= cfg.max_depth * 1.001
    assert out['seg_logits'].shape[-3:] == (num_classes, *size)
    assert torch.isfinite(out['seg_logits']).all()


@pytest.mark.parametrize('size', [(252, 350), (476, 644)])  # 346x260 and 640x480 sensors
def test_tiny_runs_at_real_input_sizes(size):
    model = tiny(input_size=size)
    with torch.no_grad():
        out, state = model.step(torch.randn(2, 3, *size))
    check_outputs(out, 2, size, 11)
    assert state['window'].tolist() == [1, 1]


@pytest.mark.parametrize('name', ['gep_small', 'gep_base'])
def test_large_variants_build_and_run_one_small_forward(name):
    torch.manual_seed(0)
    model = GEPModel(variant_config(name, input_size=(56, 84))).eval()
    assert model.encoder.vit.embed_dim == model.config.encoder.embed_dim
    assert len(model.temporal.blocks) == 12
    with torch.no_grad():
        out = model(torch.randn(1, 2, 3, 56, 84))
    assert out['depth'].shape == (1, 2, 1, 56, 84)
    assert torch.isfinite(out['depth']).all() and torch.isfinite(out['seg_logits']).all()


def test_registry_lists_the_variants_and_refuses_unknown_names():
    assert {'gep_tiny', 'gep_small', 'gep_base'} <= set(variants())
    assert variant_config('gep_small').encoder.arch == 'vit_small_patch14_reg4_dinov2'
    with pytest.raises(KeyError, match='unknown model variant'):
        variant_config('gep_huge')
    with pytest.raises(ValueError, match='multiples of the patch size'):
        variant_config('gep_tiny', input_size=(250, 350))


def test_tiny_has_a_few_hundred_thousand_parameters():
    assert 2e5 < tiny().num_parameters() < 1e6


def test_gradients_reach_every_trainable_parameter():
    cfg = variant_config('gep_tiny', input_size=(56, 84))
    cfg.heads = HeadsConfig(width=16, num_classes=5, num_categories=3)
    torch.manual_seed(0)
    model = GEPModel(cfg).train()
    for conv in model.context_proj:  # zero-initialised: let the context path carry gradient
        torch.nn.init.normal_(conv.weight, std=0.01)
    out = model(torch.randn(2, 3, 3, *cfg.input_size), torch.randn(2, 3, 3, *cfg.input_size))
    pred = model.temporal.predict_next(out['hidden'])
    next_token = (pred[:, :-1] - out['tokens'][:, 1:]).square().mean()
    loss = (out['log_depth'].mean() + out['seg_logits'].square().mean()
            + out['class_logits'].square().mean() + next_token)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad
               and (p.grad is None or not torch.any(p.grad != 0))]
    assert not missing


def test_streaming_with_the_cache_equals_the_full_forward():
    model = tiny(input_size=(56, 84))
    b, t = 2, 5
    size = model.config.input_size
    events, images = torch.randn(b, t, 3, *size), torch.randn(b, t, 3, *size)
    has_image = torch.tensor([[True, False, True, True, False], [False, False, True, False, True]])
    with torch.no_grad():
        full = model(events, images, has_image)
        state = None
        for i in range(t):
            out, state = model.step(events[:, i], images[:, i], has_image[:, i], state)
            for key in ('depth', 'seg_logits'):
                torch.testing.assert_close(out[key], full[key][:, i], rtol=1e-5, atol=1e-5)


def test_full_context_rebases_on_the_latest_windows():
    model = tiny(input_size=(56, 84))
    w = model.config.temporal.max_windows
    keep = w // 2
    size = model.config.input_size
    events = torch.randn(1, w + 2, 3, *size)
    with torch.no_grad():
        state, outs = None, []
        for i in range(w + 2):
            out, state = model.step(events[:, i], state=state)
            outs.append(out['depth'])
        assert state['window'].item() == keep + 2
        # After the rebase, the step equals a full forward over the kept windows and the new.
        reference = model(events[:, w - keep:])['depth'][:, -1]
    torch.testing.assert_close(outs[-1], reference, rtol=1e-5, atol=1e-5)


def test_config_round_trips_through_json():
    cfg = variant_config('gep_small')
    again = config_from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    with pytest.raises(ValueError, match='unknown keys'):
        config_from_dict({**cfg.to_dict(), 'surprise': 1})


class Step(torch.nn.Module):
    """The exported inference step: one window per stream, state in and out."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, event, image, has_image, keys, values, valid, tokens, window):
        out, state = self.model.step_exportable(event, image, has_image, keys, values, valid,
                                                tokens, window)
        return (out['depth'], out['seg_logits'], *state)


def test_torch_export_of_the_step_with_dynamic_batch_matches_eager():
    model = tiny(input_size=(56, 84))
    size = model.config.input_size

    def inputs(b):
        st = model.init_state(b)
        return (torch.randn(b, 3, *size), torch.randn(b, 3, *size), torch.arange(b) % 2 == 0,
                st['keys'], st['values'], st['valid'], st['tokens'], st['window'])

    batch = Dim('batch', min=1, max=8)
    dynamic = ({0: batch},) * 3 + ({1: batch},) * 2 + ({0: batch},) * 3
    program = torch.export.export(Step(model), inputs(2), dynamic_shapes=dynamic)
    with torch.no_grad():
        for b in (1, 3):
            args = inputs(b)
            for got, want in zip(program.module()(*args), Step(model)(*args)):
                torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
