"""llama.cpp's log, routed into Python logging, and the buffer sizes it reports while loading.

llama.cpp says exactly what it allocated ("CPU KV buffer size = 45.00 MiB"); we keep those
numbers per loading thread, so `/health` and `localgw ps` show real memory, not a guess.
"""

from __future__ import annotations

import ctypes
import logging
import re
import threading

import llama_cpp

log = logging.getLogger("llama.cpp")
_BUFFER = re.compile(r"(\S+)\s+(model|KV|compute|output|RS) buffer size =\s+([\d.]+) MiB")
# ggml_log_level: NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5 (continues the last line)
_LEVELS = {3: logging.WARNING, 4: logging.ERROR}
# Warnings about what localgw asks on purpose, logged at DEBUG: an embedding context of a chat
# model sets mean pooling where the GGUF declares none (engine.embed).
_CHOSEN = re.compile(r"model default pooling_type is \[-1\], but \[\d\] was specified")
_local = threading.local()


@llama_cpp.llama_log_callback
def _callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    message = text.decode("utf-8", "replace").rstrip()
    m = _BUFFER.search(message)
    buffers = getattr(_local, "buffers", None)
    if m and buffers is not None:
        kind = {"model": "weights", "KV": "kv", "RS": "kv"}.get(m.group(2), m.group(2))
        device = m.group(1).split("_")[0]
        key = f"{kind}:{device}"
        buffers[key] = buffers.get(key, 0) + int(float(m.group(3)) * 1024 * 1024)
    if level != 5:
        chosen = level == 3 and _CHOSEN.search(message)
        _local.level = logging.DEBUG if chosen else _LEVELS.get(level, logging.DEBUG)
    if message:
        log.log(getattr(_local, "level", logging.DEBUG), "%s", message)


def install() -> None:
    llama_cpp.llama_log_set(_callback, ctypes.c_void_p(0))


class capture_buffers:
    """`with capture_buffers() as b:` collects {"weights:CPU": bytes, "kv:CPU": …} of a load."""

    def __enter__(self) -> dict[str, int]:
        _local.buffers = {}
        return _local.buffers

    def __exit__(self, *exc) -> None:
        _local.buffers = None


install()
