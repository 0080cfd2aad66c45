"""ChatService in-process, with the fake engine: a typed request and a cancellation signal in,
a call out, and everything taken given back however the request ends."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest

from localgw.chat.requests import ChatRequest, CompletionRequest
from localgw.chat.responses import collect_chat, collect_text
from localgw.errors import ContextLengthExceeded, ModelNotFound, QueueFull
from localgw.server.cancel import ClientGone
from localgw.server.limits import Limits, PreparePool
from localgw.server.metrics import Metrics
from localgw.server.router import LOCAL, ModelRouter
from localgw.server.service import ChatService
from localgw.server.settings import ServerSettings
from localgw.upstreams.registry import UpstreamRegistry
from tests.fake_engine import REPLY, FakeRunner, fake_manager


@pytest.fixture
async def service(tmp_path):
    """Makes a ChatService over a fake manager; closes what it made."""
    made: list[ChatService] = []

    def make(runner: type = FakeRunner, limits: Limits = Limits()) -> ChatService:
        made.append(_service(tmp_path, runner, limits))
        return made[-1]
    yield make
    for svc in made:
        await svc.manager.close()
        svc.pool.close()


def _service(tmp_path, runner, limits: Limits = Limits()) -> ChatService:
    manager = fake_manager(tmp_path, runner)
    registry = UpstreamRegistry([])
    return ChatService(manager, ServerSettings(limits=limits), PreparePool(1), Metrics(manager),
                       ModelRouter(registry, manager.knows))


def chat(svc: ChatService, content="Say hello.", **extra) -> ChatRequest:
    return ChatRequest.model_validate({"model": svc.manager.preload[0],
                                       "messages": [{"role": "user", "content": content}], **extra})


def _released(svc: ChatService) -> bool:
    model_id = svc.manager.preload[0]
    entry = svc.manager.loaded.get(model_id)
    return not svc.manager.pinned(model_id) and (entry is None or entry.active == 0)


async def test_start_runs_a_chat_and_its_close_gives_the_model_back(service):
    svc = service()
    call = await svc.start(chat(svc), asyncio.Event())
    chunks = [c async for c in call.chunks]
    await call.close()
    body = collect_chat(chunks, call.usage)
    assert body["choices"][0]["message"]["content"] == REPLY
    assert body["choices"][0]["finish_reason"] == "stop"
    runner = svc.manager.loaded[svc.manager.preload[0]].runner
    assert call.usage.prompt_tokens == len(runner.jobs[0][0]) and call.usage.completion_tokens
    assert _released(svc)
    await call.close()  # twice is harmless
    assert _released(svc)


async def test_max_tokens_and_n_reach_the_engine(service):
    svc = service()
    call = await svc.start(chat(svc, max_tokens=5, n=2), asyncio.Event())
    body = collect_chat([c async for c in call.chunks], call.usage)
    await call.close()
    assert [c["message"]["content"] for c in body["choices"]] == [REPLY[:5]] * 2
    assert {c["finish_reason"] for c in body["choices"]} == {"length"}


async def test_a_cancelled_wait_for_the_model_gives_it_back(service):
    class SlowLoad(FakeRunner):
        def __init__(self, *args):
            time.sleep(0.3)
            super().__init__(*args)

    svc = service(SlowLoad)
    cancel = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, cancel.set)
    with pytest.raises(ClientGone):
        await svc.start(chat(svc), cancel)
    assert not svc.manager.pinned(svc.manager.preload[0])


async def test_a_failure_after_acquire_gives_the_model_back(service):
    class Full(FakeRunner):
        queue_full = True

    svc = service(Full)
    with pytest.raises(QueueFull):
        await svc.start(chat(svc), asyncio.Event())
    assert svc.manager.loaded and _released(svc)
    with pytest.raises(ContextLengthExceeded):
        await svc.start(chat(svc, "x" * 2000), asyncio.Event())
    assert _released(svc)


async def test_closing_a_running_call_cancels_its_job(service):
    class Slow(FakeRunner):
        delay = 0.05

    svc = service(Slow)
    call = await svc.start(chat(svc), asyncio.Event())
    assert (await call.chunks.__anext__())["choices"][0]["delta"]["role"] == "assistant"
    await call.chunks.aclose()
    await call.close()
    runner = svc.manager.loaded[svc.manager.preload[0]].runner
    assert runner.generations[0].cancelled and _released(svc)


async def test_count_prepares_without_running(service):
    svc = service()
    prepared, tokens = await svc.count(chat(svc), asyncio.Event())
    assert tokens == [ord(c) for c in prepared.prompt] and "Say hello." in prepared.prompt
    assert svc.manager.loaded[svc.manager.preload[0]].runner.jobs == [] and _released(svc)


async def test_checks_come_before_the_model(service):
    svc = service(limits=Limits(max_messages=1))
    req = ChatRequest.model_validate({"model": svc.manager.preload[0], "messages": [
        {"role": "user", "content": "a"}, {"role": "user", "content": "b"}]})
    with pytest.raises(Exception, match="max_messages"):
        await svc.start(req, asyncio.Event())
    assert svc.manager.loaded == {}
    with pytest.raises(ModelNotFound):
        await svc.start(chat(svc).model_copy(update={"model": "nope"}), asyncio.Event())


async def test_complete_runs_each_prompt(service):
    svc = service()
    req = CompletionRequest.model_validate({"model": svc.manager.preload[0],
                                            "prompt": ["one", "two"], "max_tokens": 4, "echo": True})
    call = await svc.complete(req, asyncio.Event())
    items = [c async for c in call.chunks]
    await call.close()
    body = collect_text(items, call.usage, req.model, call.id, call.created)
    assert [c["text"] for c in body["choices"]] == ["one" + REPLY[:4], "two" + REPLY[:4]]
    assert call.usage.prompt_tokens and _released(svc)


async def test_without_upstreams_every_model_is_local(service):
    svc = service()
    assert await svc.router.place("anything") == LOCAL
    assert await svc.router.place_body(b'{"model": "m"}') == (LOCAL, {"model": "m"})
    assert await svc.router.place_body(b"[1]") is None


def test_the_service_imports_no_http_and_the_server_no_llama_cpp():
    code = ("import sys, localgw.server.service; "
            "assert not [m for m in sys.modules if m.startswith(('starlette', 'llama_cpp'))]; "
            "import localgw.server.app; assert 'llama_cpp' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
