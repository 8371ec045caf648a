"""PyTorch backends: `cpu` (eager, optionally torch.compile) and `cuda` (autocast, CUDA graphs)."""

import torch

from .base import log, Runtime
from .step import InferenceStep

_AUTOCAST = {'fp16': torch.float16, 'bf16': torch.bfloat16}


class CpuRuntime(Runtime):
    """Eager PyTorch on the CPU; `compile_step=True` wraps the step in torch.compile."""

    name = 'cpu'

    def __init__(self, artifact, max_batch=8, compile_step=False):
        super().__init__(artifact, 'cpu', max_batch)
        self.step = InferenceStep(self.model.to('cpu').eval())
        if compile_step:
            self.step = torch.compile(self.step, dynamic=True)

    def _run(self, inputs):
        with torch.inference_mode():
            out = self.step(*inputs.values())
        n = len(self.head_names)
        return out[:n], out[n:]


class CudaRuntime(Runtime):
    """Eager PyTorch on a GPU with autocast; CUDA graphs replay each batch size's step.

    With `cuda_graphs` a graph is captured per batch size on first use (static shapes are
    what a camera rig gives: the same number of streams every time) and replayed after, which
    removes the per-kernel launch cost that dominates small models. The key/value cache stays
    in float32 between steps; autocast runs the matmuls in `precision`.
    """

    name = 'cuda'

    def __init__(self, artifact, max_batch=8, precision='fp16', cuda_graphs=True, device='cuda'):
        if not torch.cuda.is_available():
            raise RuntimeError('the cuda backend needs a CUDA GPU; none is available')
        super().__init__(artifact, device, max_batch)
        if precision not in _AUTOCAST and precision != 'fp32':
            raise ValueError(f'precision must be fp16, bf16 or fp32, got {precision!r}')
        self.precision = precision
        self.step = InferenceStep(self.model.to(self.device).eval())
        self.cuda_graphs = cuda_graphs
        self.graphs = {}  # batch size -> (graph, static inputs, static outputs)

    def _eager(self, args):
        enabled = self.precision in _AUTOCAST
        with torch.inference_mode(), torch.autocast('cuda', dtype=_AUTOCAST.get(
                self.precision, torch.float16), enabled=enabled):
            out = self.step(*args)
        n = len(self.head_names)
        # Keep the cache in float32 whatever autocast produced.
        state = tuple(s.float() if s.is_floating_point() else s for s in out[n:])
        return out[:n], state

    def _capture(self, args):
        static_in = [a.clone() for a in args]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):  # warm up kernels and allocator outside the capture
                self._eager(static_in)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            heads, state = self._eager(static_in)
        log.info('captured a CUDA graph for batch %d', args[0].shape[0])
        return graph, static_in, (heads, state)

    def _run(self, inputs):
        args = list(inputs.values())
        if not self.cuda_graphs:
            return self._eager(args)
        b = args[0].shape[0]
        if b not in self.graphs:
            self.graphs[b] = self._capture(args)
        graph, static_in, (heads, state) = self.graphs[b]
        for dst, src in zip(static_in, args):
            dst.copy_(src)
        graph.replay()
        # Outputs live in the graph's memory: copy before the next replay overwrites them.
        return tuple(h.clone() for h in heads), tuple(s.clone() for s in state)
