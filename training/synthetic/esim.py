"""Event simulation from rendered intensity, on the principle of ESIM (Rebecq et al., 2018).

Each pixel keeps a reference log intensity. Between two renderings the log intensity of a
pixel is taken to change linearly; every time it moves a contrast threshold C past the
reference, the pixel emits an event (ON upwards, OFF downwards) at the time the linear ramp
crosses that level, and the reference moves by C. So a pixel whose log intensity changes
by d over a step emits floor(|d| / C) events in it (more precisely: as many as whole
thresholds separate the new value from the reference). Thresholds differ per pixel and per
polarity (a Gaussian spread, fixed for the sensor, as fabrication mismatch makes them);
a refractory period can hold a pixel silent after it fires; background activity adds
Poisson noise events at a rate per pixel, independent of the signal (they leave the
references alone). Times are whole microseconds, the resolution of
event cameras and of EVT3.

Everything is vectorised over the pixels and events of a step; Python loops run over
steps (and, with a refractory period, over the k-th crossings of a step), never over pixels.
"""

from dataclasses import dataclass

import numpy as np

from gep_ros.wire.events import concat_events, empty_events


@dataclass(frozen=True)
class SensorConfig:
    """Event sensor model.

    contrast: threshold C on the log intensity change; contrast_sigma: per-pixel Gaussian
    spread of C (thresholds are clipped below at C / 4); refractory_us: time a pixel stays
    silent after an event (0 = none); noise_rate_hz: background events per pixel and second;
    step_us: the rendering step in which intensity is taken to change linearly.
    """

    contrast: float = 0.2
    contrast_sigma: float = 0.03
    refractory_us: int = 0
    noise_rate_hz: float = 0.1
    step_us: int = 1000


class EventSimulator:
    """Turn a sequence of log-intensity images into events, one rendering step at a time.

    `reset(log_i, t_ns)` sets the references; `step(log_i, t_ns)` returns the events
    (EVENT_DTYPE, sorted by t, every t in [previous t_ns, t_ns]) of the change since the
    previous image. `rng` draws the per-pixel thresholds and the noise, so the same seed
    gives the same events.
    """

    def __init__(self, config, shape, rng):
        self.config = config
        self.shape = shape
        self._rng = rng
        npix = shape[0] * shape[1]
        c, sigma = config.contrast, config.contrast_sigma
        if c <= 0:
            raise ValueError(f'contrast threshold must be positive, got {c}')
        draw = (lambda: rng.normal(c, sigma, npix)) if sigma > 0 else (lambda: np.full(npix, c))
        self._c_on = np.maximum(draw(), c / 4).astype(np.float32)
        self._c_off = np.maximum(draw(), c / 4).astype(np.float32)
        self._neg_c_off = -self._c_off
        self._ref = self._prev = None
        # Work arrays reused every step (fresh ones would cost page faults each time).
        self._diff = np.empty(npix, np.float32)
        self._hit = np.empty(npix, bool)
        self._hit_off = np.empty(npix, bool)
        self._t_ns = 0
        self._last = np.full(npix, np.iinfo(np.int64).min // 2, np.int64)

    def reset(self, log_i, t_ns=0):
        self._ref = np.array(log_i, np.float32).reshape(-1)
        self._prev = self._ref.copy()
        self._t_ns = int(t_ns)

    def step(self, log_i, t_ns):
        """Events (EVENT_DTYPE, sorted by t) between the previous image and `log_i` at t_ns."""
        t0, t1 = self._t_ns, int(t_ns)
        cur = np.asarray(log_i, np.float32).reshape(-1)
        chunks = [self._crossings(cur, t0, t1), self._noise(t0, t1)]
        np.copyto(self._prev, cur)  # a copy: the caller may reuse its buffer
        self._t_ns = t1
        events = concat_events(chunks)
        return events[np.argsort(events['t'], kind='stable')]

    def _crossings(self, cur, t0, t1):
        ref, prev = self._ref, self._prev
        diff = np.subtract(cur, ref, out=self._diff)
        hit = np.greater_equal(diff, self._c_on, out=self._hit)
        hit |= np.less_equal(diff, self._neg_c_off, out=self._hit_off)
        pix = np.flatnonzero(hit)
        if not pix.size:
            return empty_events()
        d = diff[pix]
        on = d > 0
        c = np.where(on, self._c_on[pix], self._c_off[pix])
        n = np.floor(np.abs(d) / c).astype(np.int64)  # >= 1 where a threshold was passed
        signed_c = np.where(on, c, -c)
        # Event k of a pixel (k = 1..n) sits where the ramp prev -> cur reaches ref + k C.
        ev_pix = np.repeat(pix, n)
        k = np.arange(ev_pix.size) - np.repeat(np.cumsum(n) - n, n) + 1
        level = ref[ev_pix] + np.repeat(signed_c, n) * k
        start = prev[ev_pix]
        span = cur[ev_pix] - start
        frac = np.clip((level - start) / np.where(span == 0, 1, span), 0, 1)
        t_us = (t0 + frac.astype(np.float64) * (t1 - t0)) // 1000
        ref[pix] += signed_c * n
        events = empty_events(ev_pix.size)
        events['t'] = t_us.astype(np.int64) * 1000
        events['x'] = ev_pix % self.shape[1]
        events['y'] = ev_pix // self.shape[1]
        events['p'] = np.repeat(on, n)
        if self.config.refractory_us > 0:
            events = events[self._refractory(ev_pix, k, events['t'])]
        return events

    def _refractory(self, ev_pix, k, t):
        """Mask of events outside their pixel's refractory period, updating last-fired times.

        The k-th crossings of a step are at distinct pixels, so each rank is one vectorised
        pass; ranks run in time order within every pixel. A suppressed crossing still moves
        the reference (the pixel is held in reset meanwhile, so the change is lost).
        """
        keep = np.ones(len(t), bool)
        last, period = self._last, self.config.refractory_us * 1000
        for rank in range(1, int(k.max()) + 1):
            sel = np.flatnonzero(k == rank)
            pix, times = ev_pix[sel], t[sel]
            ok = times - last[pix] >= period
            keep[sel[~ok]] = False
            last[pix[ok]] = times[ok]
        return keep

    def _noise(self, t0, t1):
        rate = self.config.noise_rate_hz
        if rate <= 0 or t1 <= t0:
            return empty_events()
        rng, (h, w) = self._rng, self.shape
        n = int(rng.poisson(rate * h * w * (t1 - t0) * 1e-9))
        events = empty_events(n)
        if n:
            pix = rng.integers(0, h * w, n)
            events['x'], events['y'] = pix % w, pix // w
            events['t'] = rng.integers(t0 // 1000, max(t1 // 1000, t0 // 1000 + 1), n) * 1000
            events['p'] = rng.integers(0, 2, n)
        return events
