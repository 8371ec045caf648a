"""Runtimes: one interface over the backends, and `make_runtime` to pick one.

Backends: `tensorrt` (Torch-TensorRT, engine cached on disk), `cuda` (eager, autocast, CUDA
graphs), `cpu` (eager, optionally torch.compile), `onnxruntime` (exported ONNX on the CPU),
and `auto`: the best one available here, logged with the reason. On a CPU that is
onnxruntime, 1.3 to 1.9 times as fast as eager PyTorch for gep_tiny and gep_small (BENCHMARKS);
if its export fails, auto falls back to eager PyTorch and says so.
"""

import importlib.util
import os

import torch

from .base import log, Runtime, WindowOutput

BACKENDS = ('auto', 'tensorrt', 'cuda', 'cpu', 'onnxruntime')


def available_backends():
    """Return the backends that can run on this machine, best first, with the reasons."""
    cuda = torch.cuda.is_available()
    trt = cuda and importlib.util.find_spec('torch_tensorrt') is not None
    ort = importlib.util.find_spec('onnxruntime') is not None
    return {
        'tensorrt': (trt, 'torch_tensorrt and a CUDA GPU' if trt else
                     'needs torch_tensorrt and a CUDA GPU'),
        'cuda': (cuda, 'a CUDA GPU' if cuda else 'no CUDA GPU'),
        'cpu': (True, 'always available'),
        'onnxruntime': (ort, 'onnxruntime installed' if ort else 'onnxruntime not installed'),
    }


def choose_backend(requested='auto'):
    """Resolve `auto` to the best available backend; refuse an unavailable one by name."""
    found = available_backends()
    if requested == 'auto':
        for name in ('tensorrt', 'cuda', 'onnxruntime', 'cpu'):
            ok, why = found[name]
            if ok:
                log.info('runtime backend %s (%s)', name, why)
                return name
    if requested not in found:
        raise ValueError(f'unknown backend {requested!r} (choose from {", ".join(BACKENDS)})')
    ok, why = found[requested]
    if not ok:
        raise RuntimeError(f'backend {requested} is not available here: {why}')
    return requested


def cpu_threads(requested=0):
    """Return the CPU threads for the model: `requested`, or for 0 all cores but one.

    The core left over decodes messages and cuts windows (and runs ROS in the node): on two
    cores, onnxruntime's and torch's pools taking both made the pipeline's end-to-end latency
    three times as long as one thread did, for a step no faster (BENCHMARKS).
    """
    return requested if requested > 0 else max(1, (os.cpu_count() or 2) - 1)


def make_runtime(artifact, backend='auto', max_batch=8, precision=None, cache_dir=None,
                 threads=None, **options):
    """Build the runtime for a loaded artifact (see gep_model.artifact.load_artifact).

    threads: CPU threads for the model, torch's intra-op pool (process-wide) and onnxruntime's
    session; None leaves the libraries' defaults (every core).
    """
    if threads:
        torch.set_num_threads(threads)
    name = choose_backend(backend)
    if name == 'onnxruntime' and threads:
        options = dict(options, threads=threads)
    if name == 'onnxruntime' and backend == 'auto':
        from .ort import OnnxRuntime
        try:
            return OnnxRuntime(artifact, max_batch, cache_dir, **options)
        except Exception as exc:  # noqa: B902 - any export failure: eager still works
            log.warning('onnxruntime unavailable for this model (%s); using eager cpu', exc)
            name = 'cpu'
    if name == 'cpu':
        from .eager import CpuRuntime
        return CpuRuntime(artifact, max_batch, **options)
    if name == 'cuda':
        from .eager import CudaRuntime
        return CudaRuntime(artifact, max_batch, precision or 'fp16', **options)
    if name == 'onnxruntime':
        from .ort import OnnxRuntime
        return OnnxRuntime(artifact, max_batch, cache_dir, **options)
    from .trt import TensorRTRuntime
    return TensorRTRuntime(artifact, max_batch, precision or 'fp16', cache_dir, **options)


__all__ = ['available_backends', 'BACKENDS', 'choose_backend', 'cpu_threads', 'make_runtime',
           'Runtime', 'WindowOutput']
