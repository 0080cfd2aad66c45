"""ModelManager with a fake runner factory: load waits, shared loads, eviction rules."""

import asyncio
import time

import pytest

from localgw.engine.fit import GIB, Device
from localgw.engine.manager import ModelManager
from localgw.errors import ServiceUnavailable
from localgw.store import ModelStore
from tests.helpers import smollm2_path


class FakeRunner:
    def __init__(self, model_id, path, options):
        self.model_id, self.options = model_id, options
        self.n_ctx, self.busy, self.queued, self.closed = options.n_ctx, False, 0, False

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
