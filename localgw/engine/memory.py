"""Giving freed memory back to the system after a model is unloaded.

A model's load and unload allocate and free many small native blocks (the vocabulary, the
sampler, llama.cpp's bookkeeping) between long-lived ones. glibc keeps freed heap memory for
reuse and returns it only from the top of the heap, so a server that swaps models for hours
would keep growing by what fragmentation holds. `malloc_trim(0)` returns every free page to
the system; it runs once per unload, when nothing decodes on that model.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys


def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None  # macOS and Windows allocators give freed memory back by themselves
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim  # glibc only: musl has none
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_TRIM = _malloc_trim()


def release_freed_memory() -> bool:
    """Collect Python's cycles, then return the C heap's free pages; whether trimming ran."""
    gc.collect()
    if _TRIM is None:
        return False
    _TRIM(0)
    return True
