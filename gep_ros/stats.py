"""Pipeline statistics: counters by reason and latency percentiles per stage."""

from collections import Counter, defaultdict, deque
import threading

import numpy as np

# decode: a message's bytes to arrays; queued: a window's wait for the inference worker.
STAGES = ('decode', 'queued', 'representation', 'inference', 'encode', 'end_to_end')


class LatencyLog:
    """The last `size` samples of one stage, in milliseconds."""

    def __init__(self, size=2000):
        self.samples = deque(maxlen=size)
        self.total = 0

    def add(self, ms):
        self.samples.append(ms)
        self.total += 1

    def summary(self):
        return summarize(self.samples, self.total)


def summarize(samples, count):
    """p50, p95 and max of latency samples (ms), with `count`, the samples ever taken."""
    if not len(samples):
        return {'p50': None, 'p95': None, 'max': None, 'count': count}
    a = np.asarray(samples, float)
    return {'p50': float(np.percentile(a, 50)), 'p95': float(np.percentile(a, 95)),
            'max': float(a.max()), 'count': count}


class PipelineStats:
    """Thread-safe counters; `snapshot()` gives a JSON-ready dict."""

    def __init__(self):
        self.lock = threading.Lock()
        self.inputs = Counter()  # topic -> messages
        self.input_bytes = Counter()
        self.events = Counter()  # camera -> events decoded
        self.windows = Counter()  # camera -> windows cut
        self.outputs = Counter()  # topic -> messages published
        self.dropped = Counter()  # reason -> count (windows, or events where named so)
        self.rejected = Counter()  # reason -> messages
        self.resets = Counter()  # camera -> time jumps that reset it
        self.latency = defaultdict(LatencyLog)
        self.first_receive_ns = None
        self.last_receive_ns = None

    def message(self, topic, nbytes, receive_ns):
        with self.lock:
            self.inputs[topic] += 1
            self.input_bytes[topic] += nbytes
            if self.first_receive_ns is None:
                self.first_receive_ns = receive_ns
            self.last_receive_ns = receive_ns

    def count(self, counter, key, n=1):
        with self.lock:
            getattr(self, counter)[key] += n

    def time(self, stage, ms):
        with self.lock:
            self.latency[stage].add(ms)

    def snapshot(self):
        with self.lock:
            span = ((self.last_receive_ns - self.first_receive_ns) / 1e9
                    if self.first_receive_ns is not None else 0.0)
            return {
                'inputs': dict(self.inputs),
                'input_rate_hz': {t: n / span for t, n in self.inputs.items()} if span else {},
                'events': dict(self.events),
                'windows': sum(self.windows.values()),
                'windows_by_camera': dict(self.windows),
                'outputs': dict(self.outputs),
                'dropped': dict(self.dropped),
                'rejected': dict(self.rejected),
                'resets': dict(self.resets),
                'latency_ms': {s: self.latency[s].summary() for s in STAGES},
            }
