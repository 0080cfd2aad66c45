"""The transport wrapper that sends a response's head together with its body."""

import asyncio

from localgw.server.http_protocol import HeadWithBody


class Recording:
    def __init__(self):
        self.writes, self.closed, self.aborted = [], False, False

    def write(self, data):
        self.writes.append(data)

    def is_closing(self):
        return self.closed or self.aborted

    def close(self):
        self.closed = True

    def abort(self):
        self.aborted = True

    def get_write_buffer_size(self):
        return 0

    def get_extra_info(self, name):
        return f"info:{name}"


async def test_the_head_goes_out_with_the_body_in_one_write():
    raw = Recording()
    t = HeadWithBody(raw, asyncio.get_running_loop())
    t.hold_next()
    t.write(b"HTTP/1.1 200 OK\r\n\r\n")
    assert raw.writes == [] and t.get_write_buffer_size() == 19
    t.write(b"body")
    assert raw.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]  # at once, not at the turn's end
    t.write(b"more")
    assert raw.writes[-1] == b"more"  # after the head, writes go straight through


async def test_a_head_with_nothing_after_it_leaves_at_the_end_of_the_turn():
    raw = Recording()
    t = HeadWithBody(raw, asyncio.get_running_loop())
    t.hold_next()
    t.write(b"HTTP/1.1 200 OK\r\n\r\n")
    await asyncio.sleep(0)
    assert raw.writes == [b"HTTP/1.1 200 OK\r\n\r\n"]
    await asyncio.sleep(0)
    assert len(raw.writes) == 1  # flushed once


async def test_writes_without_a_held_head_are_not_delayed():
    raw = Recording()
    t = HeadWithBody(raw, asyncio.get_running_loop())
    t.write(b"a")
    t.write(b"")
    t.writelines([b"b", b"c"])
    assert raw.writes == [b"a", b"b", b"c"]


async def test_close_sends_what_is_held_first_and_abort_drops_it():
    raw = Recording()
    t = HeadWithBody(raw, asyncio.get_running_loop())
    t.hold_next()
    t.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    t.close()
    assert raw.writes == [b"HTTP/1.1 400 Bad Request\r\n\r\n"] and raw.closed
    await asyncio.sleep(0)
    assert len(raw.writes) == 1  # the scheduled flush finds nothing left

    raw = Recording()
    t = HeadWithBody(raw, asyncio.get_running_loop())
    t.hold_next()
    t.write(b"head")
    t.abort()
    await asyncio.sleep(0)
    assert raw.writes == [] and raw.aborted
    assert t.get_extra_info("peername") == "info:peername"  # the rest is the transport's
