"""The runtime interface: batches of windows in, depth and labels out, per-stream state kept.

A robot feeds windows from several cameras (streams); each stream has its own temporal
state (the key/value cache of its recent windows). `Runtime.infer` gathers the states of the
streams in a batch, runs one step, and scatters the new states back, so backends only
implement `_run` over plain tensors. Two windows of one stream in a call run one after the
other, in order. A stream whose context is full is re-based (eagerly, in PyTorch) first.
"""

from dataclasses import dataclass
import logging
import platform

import numpy as np
import torch

from .step import INPUTS, STATE, STATE_BATCH_AXIS

log = logging.getLogger('gep_model.runtime')


@dataclass
class WindowOutput:
    """What one window produced: depth in metres (H, W) float32, labels (H, W) uint8."""

    depth: np.ndarray = None
    labels: np.ndarray = None
    class_logits: np.ndarray = None


def _take_rows(tensor, rows):
    """tensor[rows]; the tensor itself (no copy) where rows are all of it, in order.

    The step only reads its inputs, and a copy of a window is a megabyte of memory traffic:
    the pipeline's usual call (one camera, one window) would otherwise copy each input twice.
    """
    if len(rows) == tensor.shape[0] and rows == list(range(len(rows))) \
            and tensor.is_contiguous():
        return tensor
    return tensor[torch.as_tensor(rows)]


class Runtime:
    """Base class; subclasses set `name` and implement `_run`."""

    name = 'base'

    def __init__(self, artifact, device='cpu', max_batch=8):
        self.artifact = artifact
        self.model = artifact.model
        self.device = torch.device(device)
        self.max_batch = max_batch
        self.states = {}  # stream id -> state dict of batch-1 tensors on the device
        heads = self.model.config.heads
        self.head_names = ((['depth'] if heads.depth else [])
                           + (['labels'] if heads.num_classes else [])
                           + (['class_logits'] if heads.num_categories else []))
        self.state_dtype = torch.float32

    def device_name(self):
        """Name the device it runs on, for diagnostics: 'cuda:0 NVIDIA ...' or 'cpu: <model>'."""
        if self.device.type == 'cuda':
            index = self.device.index if self.device.index is not None else 0
            return f'cuda:{index} {torch.cuda.get_device_name(index)}'
        try:
            with open('/proc/cpuinfo') as f:
                models = [line.split(':', 1)[1].strip() for line in f
                          if line.startswith('model name')]
        except OSError:
            models = []
        return f'cpu: {models[0] if models else platform.machine()}'

    def reset(self, stream=None):
        """Forget the temporal state of one stream (or of all)."""
        if stream is None:
            self.states.clear()
        else:
            self.states.pop(stream, None)

    def infer(self, events, images=None, has_image=None, streams=None):
        """Run windows (B, C, H, W) with optional frames (B, 3, H, W); return B WindowOutputs.

        `streams` names the stream of each window (default: all stream 0, in order);
        `has_image` (B,) bool says which windows have a frame.
        """
        b = events.shape[0]
        streams = [0] * b if streams is None else list(streams)
        if len(streams) != b:
            raise ValueError(f'{b} windows but {len(streams)} stream ids')
        if has_image is None:
            has_image = torch.full((b,), images is not None, dtype=torch.bool)
        if images is None:
            images = torch.zeros(b, 3, *events.shape[-2:], dtype=events.dtype)
        outputs = [None] * b
        for rows in self._rounds(streams):
            for start in range(0, len(rows), self.max_batch):
                chunk = rows[start:start + self.max_batch]
                for i, out in zip(chunk, self._infer_rows(events, images, has_image,
                                                          [streams[i] for i in chunk], chunk)):
                    outputs[i] = out
        return outputs

    @staticmethod
    def _rounds(streams):
        """Split row indices into rounds in which each stream appears at most once."""
        rounds, seen = [], {}
        for i, s in enumerate(streams):
            k = seen.get(s, 0)
            seen[s] = k + 1
            if k == len(rounds):
                rounds.append([])
            rounds[k].append(i)
        return rounds

    def _gather(self, streams):
        model = self.model
        states = []
        for s in streams:
            if s not in self.states:
                self.states[s] = model.init_state(1, self.device, self.state_dtype)
            states.append(self.states[s])
        state = {name: torch.cat([st[name] for st in states], dim=STATE_BATCH_AXIS[name])
                 for name in STATE}
        full = state['window'] >= model.config.temporal.max_windows
        if bool(full.any()):
            with torch.inference_mode():
                state = model.rebase(state, full)
        return state

    def _scatter(self, streams, state):
        for j, s in enumerate(streams):
            self.states[s] = {name: state[name].narrow(STATE_BATCH_AXIS[name], j, 1).clone()
                              for name in STATE}

    def _infer_rows(self, events, images, has_image, streams, rows):
        state = self._gather(streams)
        inputs = (*(_take_rows(t, rows).to(self.device) for t in (events, images, has_image)),
                  *(state[name] for name in STATE))
        heads, new_state = self._run(dict(zip(INPUTS, inputs)))
        self._scatter(streams, dict(zip(STATE, new_state)))
        results = []
        for j in range(len(rows)):
            out = WindowOutput()
            for name, value in zip(self.head_names, heads):
                v = value[j]
                setattr(out, name, (v.float() if name == 'depth' else v).cpu().numpy())
            results.append(out)
        return results

    def _run(self, inputs):
        """Run the step on a dict of input tensors; return (head outputs, new state)."""
        raise NotImplementedError
