"""The compiled decode kernels (`_kernels.c`), loaded once, refused loudly when unusable.

Loaded by gep_model.compiled.load_extension: no slower fallback, a missing, stale or
mismatched build is an ImportError that says how to build it.
"""

import numpy as np

from gep_model.compiled import load_extension

from .events import EVENT_DTYPE, TRIGGER_DTYPE

# The argument lists and results this Python code expects; _kernels.c carries the same number.
INTERFACE_VERSION = 8

kernels = load_extension('gep_ros.wire._kernels', INTERFACE_VERSION,
                         'the compiled event decoders')


def _check_layout():
    """Check that the kernels' 16-byte records have the fields where the dtypes put them."""
    expected = (
        (EVENT_DTYPE, kernels.EVENT_SIZE, {'t': ('<i8', 0), 'x': ('<u2', 8), 'y': ('<u2', 10),
                                           'p': ('u1', 12)}),
        (TRIGGER_DTYPE, kernels.TRIGGER_SIZE, {'t': ('<i8', 0), 'p': ('u1', 8),
                                               'id': ('u1', 9)}))
    for dtype, size, fields in expected:
        got = {name: field[:2] for name, field in dtype.fields.items()}
        want = {name: (np.dtype(kind), at) for name, (kind, at) in fields.items()}
        if dtype.itemsize != size or got != want:
            raise ImportError(f'gep_ros.wire._kernels writes {size}-byte records {fields}, '
                              f'but the dtype is {dtype} ({dtype.itemsize} bytes)')


_check_layout()
# The kernels allocate their outputs with numpy.empty.
kernels.setup(np.empty, EVENT_DTYPE, TRIGGER_DTYPE, np.dtype('<i8'))


def as_records(records):
    """Whether the kernels read this array as their 16-byte records.

    That is an event or trigger array, C-contiguous; other arrays with a `t` field (strided
    views, other dtypes) go to numpy.
    """
    return records.dtype in (EVENT_DTYPE, TRIGGER_DTYPE) and records.flags.c_contiguous


def time_span(records):
    """Return (t_min, t_max) of a non-empty event or trigger array, in one compiled pass.

    Any other array with a `t` field (a view with strides, another dtype) goes to numpy.
    """
    if as_records(records):
        return kernels.time_range(records)
    t = records['t']
    return int(t.min()), int(t.max())
