"""Load the project's compiled extensions (C, built by setup.py), or refuse loudly.

gep_ros.wire._kernels (the event decoders) and gep_model.events._kernels (the polarity
image's passes) are built with the package: `pip install -e .` or `pip install .`, `colcon
build`, or `python setup.py build_ext --inplace`. There is no slower fallback: a missing,
stale or mismatched build is an ImportError that says how to build it, at the first import,
instead of a node that quietly falls behind its camera.
"""

import importlib

BUILD = ('build it with the package: `pip install -e .` (or `make setup`) in a checkout, '
         '`colcon build` in a ROS 2 workspace, or `python setup.py build_ext --inplace`; '
         'a C compiler and the Python headers are needed')


def load_extension(name, interface_version, what):
    """Import the extension module `name`; ImportError unless it carries `interface_version`.

    Each C source defines INTERFACE_VERSION, bumped whenever an argument list or a result
    changes, and the Python code that calls it names the version it expects.
    """
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(f'{name} ({what}) is not built or does not load ({exc}): '
                          f'{BUILD}') from exc
    found = getattr(module, 'INTERFACE_VERSION', None)
    if found != interface_version:
        raise ImportError(f'{name} at {module.__file__} was built from another version of its '
                          f'C source (interface {found}, expected {interface_version}): '
                          f'rebuild it; {BUILD}')
    return module
