"""The common interface of event representations, and the registry that builds them by name.

A representation turns the events of one time window on one sensor into a dense image-like
tensor ``(C, H, W)`` float32 that a network can take. Every representation:

* is built from plain JSON-able parameters, ``make_representation(name, **params)``, and gives
  them back with :meth:`Representation.params` (name included), so cache keys and the model's
  JSON config can record exactly how an input was rendered;
* knows its channel count up front (``channels``) so a network can be built before any event
  arrives;
* knows its ``background``, the value of a pixel that saw no event (0 for counts and voxels,
  1 for the white polarity image), which padding uses;
* renders on the device of the events (or a given ``device``), vectorised over events.
"""

import abc
from typing import Any, ClassVar, Dict, Optional, Type

import numpy as np
import torch

from gep_model.events.fit import fit_to_input, Size
from gep_model.events.records import host_records
from gep_model.events.tensors import DeviceLike, EventTensors, Time, window_events

_REGISTRY: Dict[str, Type['Representation']] = {}


class Representation(abc.ABC):
    """Base of all event representations; subclasses implement :meth:`render`."""

    name: ClassVar[str] = ''
    background: ClassVar[float] = 0.0

    @property
    @abc.abstractmethod
    def channels(self) -> int:
        """Number of output channels C."""

    @abc.abstractmethod
    def _param_values(self) -> Dict[str, Any]:
        """Return the constructor parameters, without the name."""

    @abc.abstractmethod
    def render(self, events: EventTensors, t0: Time, t1: Time) -> torch.Tensor:
        """Render events already restricted to the sensor and [t0, t1], as (C, H, W) float32."""

    def __call__(self, events, t0: Time, t1: Time, height: int, width: int,
                 device: DeviceLike = None) -> torch.Tensor:
        """Render the window [t0, t1] of events on a height x width sensor, as (C, H, W) float32.

        Events off the sensor or outside the window are dropped; build the window with
        :func:`gep_model.events.window_events` and call :meth:`render` to read how many.
        The pipeline's event records in CPU memory go to :meth:`render_records` first.
        """
        if host_records(events, device):
            height, width = int(height), int(width)
            if height <= 0 or width <= 0:
                raise ValueError(f'sensor size must be positive, got {height} x {width}')
            image = self.render_records(np.ascontiguousarray(events), t0, t1, height, width)
            if image is not None:
                return image
        return self.render(window_events(events, t0, t1, height, width, device=device), t0, t1)

    def render_fitted(self, events, t0: Time, t1: Time, height: int, width: int, size: Size,
                      device: DeviceLike = None) -> torch.Tensor:
        """Render the window and resize it to size, as fit_to_input(self(...), size) does.

        The model's input in one call: a representation may compute it without the
        full-size image (the same values).
        """
        return fit_to_input(self(events, t0, t1, height, width, device=device), size)

    def render_records(self, records: np.ndarray, t0: Time, t1: Time, height: int,
                       width: int) -> Optional[torch.Tensor]:
        """Render event records as `render` renders their window, or return None.

        records: gep_model.events.records.RECORD_DTYPE in CPU memory. None: this
        representation, or this window, takes the tensors' way.
        """
        return None

    def params(self) -> Dict[str, Any]:
        """Return name and parameters as a JSON-able dict; make_representation(**it) rebuilds."""
        return {'name': self.name, **self._param_values()}

    def __repr__(self) -> str:
        args = ', '.join(f'{key}={value!r}' for key, value in self._param_values().items())
        return f'{type(self).__name__}({args})'

    def __eq__(self, other) -> bool:
        return isinstance(other, Representation) and self.params() == other.params()

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.params().items())))


def register_representation(cls: Type[Representation]) -> Type[Representation]:
    """Register a Representation subclass under its ``name`` (use as a class decorator)."""
    if not cls.name:
        raise ValueError(f'{cls.__name__} has no name to register under')
    if _REGISTRY.get(cls.name, cls) is not cls:
        raise ValueError(f'representation name {cls.name!r} is already taken')
    _REGISTRY[cls.name] = cls
    return cls


def representation_names() -> list:
    """Return the registered representation names, sorted."""
    return sorted(_REGISTRY)


def make_representation(name: str, **params) -> Representation:
    """Build the representation registered as name with the given parameters.

    ``make_representation(**rep.params())`` rebuilds an equal representation.
    """
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise ValueError(f'unknown representation {name!r}; known: '
                         f'{", ".join(representation_names())}') from None
    return cls(**params)
