"""glibc malloc settings for CPU training.

Conv activations of a batch are a few MB each. glibc serves blocks that large with mmap and returns them to the
kernel on free, so every training step maps, faults in and unmaps its activations again: on a 2-core machine that
was a third of a small model's training time spent in the kernel (page faults). Raising the mmap and trim
thresholds keeps those blocks in the heap for reuse. Elsewhere (macOS, musl, Windows) nothing is changed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # <malloc.h>
M_MMAP_THRESHOLD = -3
HEAP_BYTES = 1 << 30  # blocks up to 1 GiB come from the heap; up to 1 GiB of free heap is kept for reuse


def keep_freed_memory() -> bool:
    """Tune glibc malloc for repeated same-size allocations; True when applied."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    applied = mallopt(M_MMAP_THRESHOLD, HEAP_BYTES) == 1 and mallopt(M_TRIM_THRESHOLD, HEAP_BYTES) == 1
    if not applied:
        log.debug("mallopt refused the thresholds; malloc left as it is")
    return applied
