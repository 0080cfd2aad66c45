"""llama.cpp's log lines as Python logging: levels, continuations, what localgw chose on purpose,
and the buffer sizes of a load (the callback is called as llama.cpp calls it, through ctypes)."""

from __future__ import annotations

import logging

from localgw.engine import llamalog


def say(level: int, text: str) -> None:
    llamalog._callback(level, text.encode(), None)


def test_levels_and_continued_lines(caplog):
    caplog.set_level(logging.DEBUG, logger="llama.cpp")
    say(3, "something odd\n")
    say(5, "more of it\n")
    say(4, "failed\n")
    say(2, "loaded\n")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "something odd"), (logging.WARNING, "more of it"),
        (logging.ERROR, "failed"), (logging.DEBUG, "loaded")]


def test_the_pooling_an_embedding_context_sets_on_purpose_is_not_a_warning(caplog):
    caplog.set_level(logging.DEBUG, logger="llama.cpp")
    say(3, "llama_init_from_model: model default pooling_type is [-1], but [1] was specified\n")
    say(3, "llama_init_from_model: model default pooling_type is [2], but [1] was specified\n")
    assert [r.levelno for r in caplog.records] == [logging.DEBUG, logging.WARNING]


def test_buffer_sizes_of_a_load_are_collected():
    with llamalog.capture_buffers() as buffers:
        say(2, "load_tensors:   CPU_Mapped model buffer size =    98.00 MiB\n")
        say(2, "llama_kv_cache:        CPU KV buffer size =    45.00 MiB\n")
        say(2, "llama_context:        CPU compute buffer size =     2.50 MiB\n")
    say(2, "llama_kv_cache:        CPU KV buffer size =    45.00 MiB\n")  # after: not collected
    assert buffers == {"weights:CPU": 98 * 2**20, "kv:CPU": 45 * 2**20,
                       "compute:CPU": int(2.5 * 2**20)}
