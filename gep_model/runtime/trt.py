"""The `tensorrt` backend: the exported step compiled by Torch-TensorRT, engines cached on disk.

Written against Torch-TensorRT's documented dynamo API (`torch_tensorrt.dynamo.compile` on a
`torch.export` ExportedProgram, `torch_tensorrt.Input` with min/opt/max shapes for the
dynamic batch, `torch_tensorrt.save(..., output_format='exported_program')` and
`torch.export.load` to restart without rebuilding). Mixed precision uses the compiler's
autocast (`enable_autocast`, `autocast_low_precision_type`) where the installed version has
it, and `enabled_precisions` on releases that predate it.
"""

import inspect

import torch

from .base import log, Runtime
from .cache import engine_key, EngineCache
from .step import example_inputs, export_program, INPUTS, STATE_BATCH_AXIS

_LOW = {'fp16': torch.float16, 'bf16': torch.bfloat16}


def trt_inputs(model, max_batch, device):
    """torch_tensorrt.Input specs of the step: batch 1..max_batch, optimised for max_batch."""
    import torch_tensorrt
    specs = []
    for name, example in zip(INPUTS, example_inputs(model, 1, device)):
        axis = STATE_BATCH_AXIS.get(name, 0)
        shape = list(example.shape)

        def at(b, shape=shape, axis=axis):
            return [b if i == axis else s for i, s in enumerate(shape)]
        specs.append(torch_tensorrt.Input(min_shape=at(1), opt_shape=at(max_batch),
                                          max_shape=at(max_batch), dtype=example.dtype))
    return specs


def compile_settings(precision):
    """Keyword arguments for torch_tensorrt.dynamo.compile at `precision` (this version's)."""
    import torch_tensorrt
    params = inspect.signature(torch_tensorrt.dynamo.compile).parameters
    settings = {'min_block_size': 1, 'truncate_double': True}
    if precision in _LOW:
        if 'enable_autocast' in params:
            settings.update(use_explicit_typing=True, enable_autocast=True,
                            autocast_low_precision_type=_LOW[precision])
        else:
            settings['enabled_precisions'] = {torch.float32, _LOW[precision]}
    return settings


def versions():
    import tensorrt
    import torch_tensorrt
    return {'torch': torch.__version__, 'torch_tensorrt': torch_tensorrt.__version__,
            'tensorrt': tensorrt.__version__}


def build_engine(model, path, max_batch, precision, device):
    """Export, compile and save the TensorRT-compiled step to `path`."""
    import torch_tensorrt
    program = export_program(model, max_batch, device)
    compiled = torch_tensorrt.dynamo.compile(
        program, arg_inputs=trt_inputs(model, max_batch, device), **compile_settings(precision))
    torch_tensorrt.save(compiled, str(path), output_format='exported_program',
                        arg_inputs=list(example_inputs(model, max_batch, device)))
    return path


class TensorRTRuntime(Runtime):
    """TensorRT on the robot's GPU; one build per artifact, shapes, precision, versions, GPU."""

    name = 'tensorrt'

    def __init__(self, artifact, max_batch=8, precision='fp16', cache_dir=None, device='cuda'):
        super().__init__(artifact, device, max_batch)
        model = self.model.to(self.device).eval()
        props = torch.cuda.get_device_properties(self.device)
        key_parts = {'kind': 'tensorrt', 'digest': artifact.digest, 'max_batch': max_batch,
                     'input_size': list(model.config.input_size), 'precision': precision,
                     'gpu': props.name, 'capability': f'{props.major}.{props.minor}',
                     **versions()}
        cache = EngineCache(cache_dir, suffix='.ep')
        program, built = cache.get_or_build(
            engine_key(**key_parts),
            lambda p: build_engine(model, p, max_batch, precision, self.device),
            torch.export.load, describe=key_parts)
        log.info('TensorRT engine %s (%s)', 'built' if built else 'loaded from cache',
                 cache.folder)
        self.built = built
        self.step = program.module()

    def _run(self, inputs):
        with torch.inference_mode():
            out = self.step(*inputs.values())
        n = len(self.head_names)
        return out[:n], out[n:]
