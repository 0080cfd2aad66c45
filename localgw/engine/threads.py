"""Choose llama.cpp thread counts with care: a laptop is never idle."""

from __future__ import annotations

import os


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def default_threads(cpus: int | None = None) -> tuple[int, int]:
    """(decode threads, prompt threads).

    Decoding is memory-bound: past the physical cores, more threads only fight each other and
    the user's other programs. We assume SMT (two logical CPUs per core) above 4 CPUs, keep one
    core free above 8, and cap at 16. Prompt processing is compute-bound and gets every core.
    """
    cpus = cpus or available_cpus()
    if cpus <= 4:
        decode = cpus
    else:
        physical = cpus // 2
        decode = physical - 1 if physical > 4 else physical
    decode = max(1, min(decode, 16))
    batch = max(decode, min(cpus if cpus <= 4 else cpus // 2, 32))
    return decode, batch
