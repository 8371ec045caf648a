"""Event representations: turn a window of events into a dense tensor a network can take.

Events come in as a numpy structured array with fields x, y, t, p (the wire format of
``gep_ros``, not imported here) or as torch tensors; :class:`EventTensors` puts them on a
device and drops (and counts) events off the sensor or outside the window. Representations,
built by name with :func:`make_representation`:

* ``polarity_rgb``: GEP's red / blue on white event image, (3, H, W);
* ``voxel_grid``: polarity interpolated over C time bins, (C, H, W);
* ``histogram``: OFF and ON counts, (2, H, W);
* ``stacked_histogram``: OFF and ON counts per time bin, (2 T, H, W).

:func:`render_batch` stacks windows into (B, C, H, W), :func:`fit_to_input` resizes, crops or
pads to the model input, and :func:`round_to_patch` rounds sizes to the 14-pixel ViT patch.
"""

from gep_model.events.base import (make_representation, register_representation,
                                   Representation, representation_names)
from gep_model.events.batch import render_batch
from gep_model.events.fit import fit_to_input, PATCH_SIZE, round_to_patch
from gep_model.events.histogram import Histogram
from gep_model.events.polarity_rgb import nonzero_percentile, PolarityRGB
from gep_model.events.stacked_histogram import StackedHistogram
from gep_model.events.tensors import EventTensors, window_events
from gep_model.events.voxel_grid import VoxelGrid

__all__ = [
    'EventTensors',
    'Histogram',
    'PATCH_SIZE',
    'PolarityRGB',
    'Representation',
    'StackedHistogram',
    'VoxelGrid',
    'fit_to_input',
    'make_representation',
    'nonzero_percentile',
    'register_representation',
    'render_batch',
    'representation_names',
    'round_to_patch',
    'window_events',
]
