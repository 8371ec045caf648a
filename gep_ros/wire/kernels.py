"""The compiled decode kernels (`_kernels.c`), loaded once, refused loudly when unusable.

The kernels are built with the package: by `pip install -e .` or `pip install .`, by
`colcon build` (setup.py), or in place by `python setup.py build_ext --inplace`. There is no
slower fallback: a missing, stale or mismatched build is an ImportError that says how to
build it, at the first import of the decoders, instead of a node that quietly falls behind
its camera.
"""

import numpy as np

from .events import EVENT_DTYPE, TRIGGER_DTYPE

# The argument lists and results this Python code expects; _kernels.c carries the same number.
INTERFACE_VERSION = 3
_BUILD = ('build it with the package: `pip install -e .` (or `make setup`) in a checkout, '
          '`colcon build` in a ROS 2 workspace, or `python setup.py build_ext --inplace`; '
          'a C compiler and the Python headers are needed')

try:
    from . import _kernels as kernels
except ImportError as exc:
    raise ImportError(f'gep_ros.wire._kernels (the compiled event decoders) is not built or '
                      f'does not load ({exc}): {_BUILD}') from exc

if getattr(kernels, 'INTERFACE_VERSION', None) != INTERFACE_VERSION:
    raise ImportError(f'gep_ros.wire._kernels at {kernels.__file__} was built from another '
                      f'version of _kernels.c (interface '
                      f'{getattr(kernels, "INTERFACE_VERSION", None)}, expected '
                      f'{INTERFACE_VERSION}): rebuild it; {_BUILD}')


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
