"""The `onnxruntime` backend: the exported ONNX step on the CPU."""

import contextlib
import io
import warnings

import numpy as np
import torch

from .base import Runtime
from .cache import engine_key, EngineCache
from .step import dynamic_shapes, example_inputs, InferenceStep, INPUTS, STATE


def export_onnx(model, path, max_batch=8):
    """Write the inference step as ONNX (dynamo exporter) with a dynamic batch axis."""
    step = InferenceStep(model.to('cpu').eval())
    # The exporter narrates its passes on stdout, which is the CLI's output channel.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.onnx.export(step, example_inputs(model, 2), str(path), dynamo=True,
                          dynamic_shapes=dynamic_shapes(max_batch), input_names=list(INPUTS),
                          output_names=step.output_names, verbose=False,
                          external_data=False)  # one file: it is renamed into the cache
    return path


class OnnxRuntime(Runtime):
    """onnxruntime on the CPU; the ONNX file is built once per artifact and cached."""

    name = 'onnxruntime'

    def __init__(self, artifact, max_batch=8, cache_dir=None, threads=None):
        import onnxruntime as ort
        super().__init__(artifact, 'cpu', max_batch)
        key = engine_key(kind='onnx', digest=artifact.digest, max_batch=max_batch,
                         input_size=list(self.model.config.input_size),
                         torch=torch.__version__, onnxruntime=ort.__version__)
        cache = EngineCache(cache_dir, suffix='.onnx')
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session, self.built = cache.get_or_build(
            key, lambda p: export_onnx(self.model, p, max_batch),
            lambda p: ort.InferenceSession(str(p), options, providers=['CPUExecutionProvider']),
            describe={'artifact': str(artifact.path), 'digest': artifact.digest,
                      'max_batch': max_batch})
        self.output_names = [o.name for o in self.session.get_outputs()]

    def _run(self, inputs):
        feed = {name: value.cpu().numpy() for name, value in inputs.items()}
        out = self.session.run(self.output_names, feed)
        n = len(self.head_names)
        heads = [torch.from_numpy(np.asarray(v)) for v in out[:n]]
        state = [torch.from_numpy(np.asarray(v)) for v in out[n:n + len(STATE)]]
        return heads, state
