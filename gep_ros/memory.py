"""Allocator settings for programs that move many large messages (the node, `gep`).

glibc serves allocations above its mmap threshold with fresh pages and returns freed heap
above its trim threshold to the kernel, so every multi-megabyte message (a million events is
16 MB) is paid for again in page faults: on the development machines that halves EventArray
encode throughput. Raising both thresholds keeps freed memory in the process for reuse.
The cost is resident memory: up to `retain_mb` of freed heap stays mapped. Elsewhere than
glibc this does nothing.
"""

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
_done = False


def retain_freed_memory(retain_mb=512):
    """Ask glibc to keep up to `retain_mb` of freed memory; return True where it applied."""
    global _done
    if _done:
        return True
    name = ctypes.util.find_library('c')
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    # Allocations below half the retained size come from the reusable heap.
    ok = mallopt(M_MMAP_THRESHOLD, (retain_mb // 2) << 20) == 1
    ok = mallopt(M_TRIM_THRESHOLD, retain_mb << 20) == 1 and ok
    _done = ok
    return ok
