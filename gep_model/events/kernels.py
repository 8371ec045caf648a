"""The compiled kernels of gep_model.events (`_kernels.c`), loaded once, refused loudly.

Built with the package like gep_ros.wire's decoders (`pip install -e .`, `pip install .`,
`colcon build`, or `python setup.py build_ext --inplace`). There is no slower fallback: a
missing or stale build is an ImportError that says how to build it.
"""

# The argument lists this Python code expects; _kernels.c carries the same number.
INTERFACE_VERSION = 1
_BUILD = ('build it with the package: `pip install -e .` (or `make setup`) in a checkout, '
          '`colcon build` in a ROS 2 workspace, or `python setup.py build_ext --inplace`; '
          'a C compiler and the Python headers are needed')

try:
    from . import _kernels as kernels
except ImportError as exc:
    raise ImportError(f'gep_model.events._kernels (the compiled representation passes) is not '
                      f'built or does not load ({exc}): {_BUILD}') from exc

if getattr(kernels, 'INTERFACE_VERSION', None) != INTERFACE_VERSION:
    raise ImportError(f'gep_model.events._kernels at {kernels.__file__} was built from another '
                      f'version of _kernels.c (interface '
                      f'{getattr(kernels, "INTERFACE_VERSION", None)}, expected '
                      f'{INTERFACE_VERSION}): rebuild it; {_BUILD}')
