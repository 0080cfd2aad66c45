"""ModelManager with a fake runner factory: load waits, shared loads, eviction rules."""

import asyncio
import time

import pytest

from localgw.engine.fit import GIB, Device
from localgw.engine.prompt_cache import PromptCache
from localgw.errors import ServiceUnavailable
from localgw.manager import ModelManager
from localgw.store import ModelStore
from tests.helpers import smollm2_path


class FakeRunner:
    """What the manager uses of a runner (engine.types.Runner), without a model."""

    n_parallel, kv_unified, n_gpu_layers, memory_bytes, prompt_tokens_evaluated = 1, False, 0, 0, 0

    def __init__(self, model_id, path, options):
        self.model_id, self.options = model_id, options
        self.n_ctx, self.busy, self.queued, self.closed = options.n_ctx, False, 0, False
        self.broken = None
        self.cache = PromptCache(0)
        self.aborted = []

    def describe_slots(self):
        return [{"id": 0, "busy": self.busy, "cached_tokens": 0}]

    def abort_all(self, error):
        self.aborted.append(error)

    def close(self):
        self.closed = True


def manager(tmp_path, factory, **kw):
    return ModelManager(ModelStore(tmp_path), model_args=[str(smollm2_path())], factory=factory,
                        devices=lambda: [Device("RAM", "cpu", 16 * GIB, 8 * GIB)],
                        offload_supported=lambda: False, **kw)


async def test_a_slow_load_is_a_503_for_the_waiter_but_finishes_once(tmp_path):
    made = []

    def slow(model_id, path, options):
        time.sleep(0.6)
        made.append(model_id)
        return FakeRunner(model_id, path, options)

    m = manager(tmp_path, slow, load_wait=0.2)
    model_id = m.preload[0]
    with pytest.raises(ServiceUnavailable) as err:
        await m.acquire(model_id)
    assert err.value.status == 503 and "still loading" in err.value.message
    m.load_wait = 30  # the load went on without the waiter who gave up; wait for it now
    first, second = await asyncio.gather(m.acquire(model_id), m.acquire(model_id))
    assert first is second and made == [model_id]   # one load, shared
    assert first.runner.options.n_ctx == 8192 and first.runner.options.n_gpu_layers == 0
    await m.close()


async def test_busy_models_are_not_evicted_and_idle_ones_are(tmp_path):
    m = manager(tmp_path, FakeRunner, max_loaded=1)
    a = await m.acquire(m.preload[0])
    m._extra["other"] = m._extra[m.preload[0]].model_copy(update={"id": "other"})
    waiting = asyncio.ensure_future(m.acquire("other"))
    await asyncio.sleep(0.1)
    assert not waiting.done() and list(m.loaded) == [m.preload[0]]   # a is in use
    await m.release(a)
    b = await asyncio.wait_for(waiting, 2)
    assert list(m.loaded) == ["other"] and a.runner.closed and not b.runner.closed
    await m.close()


async def test_keep_alive_zero_unloads_at_release(tmp_path):
    m = manager(tmp_path, FakeRunner, keep_alive=0)
    entry = await m.acquire(m.preload[0])
    await m.release(entry)
    assert m.loaded == {} and entry.runner.closed
    await m.close()


def _second_model(m, model_id="other"):
    m._extra[model_id] = m._extra[m.preload[0]].model_copy(update={"id": model_id})
    return model_id


async def test_a_model_loading_for_a_waiting_request_is_never_evicted(tmp_path):
    """max_loaded 1: a request that has to load A, then a request for B while A loads. B waits
    until A's request is over; A's request gets A, loaded and open."""
    def slow(model_id, path, options):
        time.sleep(0.3)
        return FakeRunner(model_id, path, options)

    m = manager(tmp_path, slow, max_loaded=1)
    a_id, b_id = m.preload[0], _second_model(m)
    for_a = asyncio.ensure_future(m.acquire(a_id))
    await asyncio.sleep(0.1)  # A is loading
    for_b = asyncio.ensure_future(m.acquire(b_id))
    a = await asyncio.wait_for(for_a, 5)
    await asyncio.sleep(0.5)  # B's load had every chance to evict A
    assert not a.runner.closed and list(m.loaded) == [a_id] and not for_b.done()
    await m.release(a)
    b = await asyncio.wait_for(for_b, 5)
    assert a.runner.closed and list(m.loaded) == [b_id]
    await m.release(b)
    await m.close()


async def test_a_pinned_idle_model_outlives_its_keep_alive(tmp_path):
    m = manager(tmp_path, FakeRunner, keep_alive=0.1)
    entry = await m.acquire(m.preload[0])
    await asyncio.sleep(0.2)
    await m.reap()
    assert m.preload[0] in m.loaded and not entry.runner.closed
    await m.release(entry)
    await asyncio.sleep(0.2)
    await m.reap()
    assert m.loaded == {} and entry.runner.closed
    await m.close()


async def test_keep_alive_zero_waits_for_the_last_request(tmp_path):
    m = manager(tmp_path, FakeRunner, keep_alive=0)
    first, second = await m.acquire(m.preload[0]), await m.acquire(m.preload[0])
    await m.release(first)
    assert m.preload[0] in m.loaded and not first.runner.closed
    await m.release(second)
    assert m.loaded == {} and first.runner.closed
    await m.close()


async def test_a_load_whose_waiters_left_stops_waiting_for_room(tmp_path):
    made = []

    def factory(model_id, path, options):
        made.append(model_id)
        return FakeRunner(model_id, path, options)

    m = manager(tmp_path, factory, max_loaded=1)
    a = await m.acquire(m.preload[0])
    waiter = asyncio.ensure_future(m.acquire(_second_model(m)))
    await asyncio.sleep(0.1)
    waiter.cancel()  # its client left
    await asyncio.sleep(0.1)
    await m.release(a)
    await asyncio.sleep(0.2)
    assert made == [m.preload[0]] and list(m.loaded) == [m.preload[0]] and not a.runner.closed
    assert not m.pinned("other") and not m.pinned(m.preload[0])
    await m.close()


async def test_a_broken_model_is_retired_and_the_next_request_loads_it_afresh(tmp_path):
    m = manager(tmp_path, FakeRunner)
    model_id = m.preload[0]
    held = await m.acquire(model_id)
    held.runner.broken = RuntimeError("decode loop failed")
    fresh = await m.acquire(model_id)  # does not get the broken runner
    assert fresh.runner is not held.runner and m.loaded[model_id] is fresh
    assert not held.runner.closed  # still held by its request
    await m.release(held)
    assert held.runner.closed and m.loaded[model_id] is fresh
    await m.release(fresh)
    await m.close()


async def test_the_reaper_retires_a_broken_idle_model(tmp_path):
    m = manager(tmp_path, FakeRunner)
    entry = await m.acquire(m.preload[0])
    await m.release(entry)
    entry.runner.broken = RuntimeError("decode loop failed")
    await m.reap()
    assert m.loaded == {} and entry.runner.closed
    await m.close()
