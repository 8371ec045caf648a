"""The compiled kernels of gep_model.events (`_kernels.c`), loaded once (gep_model.compiled)."""

from gep_model.compiled import load_extension

# The argument lists this Python code expects; _kernels.c carries the same number.
INTERFACE_VERSION = 6

kernels = load_extension('gep_model.events._kernels', INTERFACE_VERSION,
                         'the compiled representation passes')
