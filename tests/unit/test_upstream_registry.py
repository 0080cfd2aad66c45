"""Which upstream serves an id, how upstream models are listed, and how their answers are read."""

import pytest

from localgw.errors import QueueFull, UpstreamBroken
from localgw.upstreams.config import UpstreamConfig
from localgw.upstreams.client import UpstreamClient, error_fields
from localgw.upstreams.forward import parse_event
from localgw.upstreams.registry import UpstreamRegistry

LOCAL = {"Qwen/Qwen3-8B"}


def is_local(model_id: str) -> bool:
    return model_id in LOCAL


@pytest.fixture
def registry():
    reg = UpstreamRegistry([UpstreamConfig("gpu", "http://gpu:8000/v1"),
                            UpstreamConfig("spare", "http://spare:8000/v1", max_concurrency=1),
                            UpstreamConfig("cloud", "https://cloud.example/v1", models=("big",))])
    gpu, spare, cloud = reg.upstreams
    gpu.accept([{"id": "Qwen/Qwen3-8B", "object": "model"}, {"id": "Qwen/Qwen3-32B", "max_model_len": 32768}])
    spare.accept([{"id": "Qwen/Qwen3-32B"}])
    cloud.accept([{"id": "big"}, {"id": "not-allowed"}])
    return reg


def test_listing_local_wins_and_failover_groups_are_one_entry(registry):
    listed = {l.id: l.model_object() for l in registry.listing(LOCAL)}
    assert set(listed) == {"gpu/Qwen/Qwen3-8B", "Qwen/Qwen3-32B", "big"}
    assert listed["Qwen/Qwen3-32B"] == {"id": "Qwen/Qwen3-32B", "owned_by": "gpu", "upstream": "gpu",
                                        "max_model_len": 32768}
    assert listed["gpu/Qwen/Qwen3-8B"]["upstream"] == "gpu"
    assert listed["big"]["owned_by"] == "cloud"  # and the allow-list hid not-allowed


def test_targets(registry):
    gpu, spare, cloud = registry.upstreams
    assert registry.targets("Qwen/Qwen3-8B", is_local) == []  # local
    clash = registry.targets("gpu/Qwen/Qwen3-8B", is_local)
    assert [(t.upstream, t.model_id) for t in clash] == [(gpu, "Qwen/Qwen3-8B")]
    both = registry.targets("Qwen/Qwen3-32B", is_local)
    assert [t.upstream for t in both] == [gpu, spare]
    pinned = registry.targets("spare/Qwen/Qwen3-32B", is_local)
    assert [(t.upstream, t.model_id) for t in pinned] == [(spare, "Qwen/Qwen3-32B")]
    assert registry.targets("not-allowed", is_local) == []
    assert registry.targets("nobody/knows", is_local) == []


def test_max_concurrency_is_the_local_429(registry):
    spare = registry.upstreams[1]
    spare.take()
    with pytest.raises(QueueFull) as err:
        spare.take()
    assert err.value.status == 429 and err.value.code == "queue_full"
    assert err.value.headers["Retry-After"]
    spare.give_back()
    spare.take()


def test_describe_shows_no_key(monkeypatch):
    monkeypatch.setenv("GPU_KEY", "sk-very-secret")
    reg = UpstreamRegistry([UpstreamConfig("gpu", "http://u:p@gpu:8000/v1", api_key_env="GPU_KEY")])
    assert reg.upstreams[0].client.has_key
    text = repr(reg.describe())
    assert "sk-very-secret" not in text and ":p@" not in text
    assert reg.describe()[0]["url"] == "http://gpu:8000/v1"


CLIENT = UpstreamClient(UpstreamConfig("gpu", "http://gpu:8000/v1"))


def test_parse_event():
    assert parse_event(b'data: {"a": 1}\n\n', CLIENT) == {"a": 1}
    assert parse_event(b"data:[DONE]\n\n", CLIENT) == "[DONE]"
    assert parse_event(b": keep-alive\n\n", CLIENT) is None
    assert parse_event(b'event: x\nid: 3\ndata: {"a":\ndata: 2}\n\n', CLIENT) == {"a": 2}
    with pytest.raises(UpstreamBroken, match="upstream gpu .*not SSE"):
        parse_event(b"<html>\n\n", CLIENT)
    with pytest.raises(UpstreamBroken, match="not a JSON object"):
        parse_event(b"data: {oops\n\n", CLIENT)
    # passed on undecoded: only the shape is checked
    assert parse_event(b'data: {"a": 1}\n\n', CLIENT, decode=False) is None
    assert parse_event(b"data: [DONE]\n\n", CLIENT, decode=False) == "[DONE]"
    with pytest.raises(UpstreamBroken, match="not a JSON object"):
        parse_event(b"data: oops\n\n", CLIENT, decode=False)


def test_error_fields_of_the_usual_shapes():
    assert error_fields(b'{"error":{"message":"m","type":"t","code":"c","param":"p"}}') == ("m", "t", "c", "p")
    assert error_fields(b'{"object":"error","message":"vllm says","type":"BadRequestError","code":400}') \
        == ("vllm says", "BadRequestError", "400", None)
    assert error_fields(b'{"detail":"fastapi says"}')[0] == "fastapi says"
    assert error_fields(b'{"error":"plain"}')[0] == "plain"
    assert error_fields(b"Bad Gateway")[0] == "Bad Gateway"
    assert error_fields(b"")[0] == "(empty body)"


def test_error_status_mapping():
    bad = CLIENT.rejected(400, b'{"error":{"message":"temperature too high","param":"temperature"}}', None)
    assert (bad.status, bad.type, bad.param, bad.message) == (400, "invalid_request_error",
                                                               "temperature", "temperature too high")
    busy = CLIENT.rejected(429, b'{"error":{"message":"busy"}}', "7")
    assert busy.status == 429 and busy.headers == {"Retry-After": "7"}
    down = CLIENT.rejected(500, b'{"error":{"message":"oom"}}', None)
    assert (down.status, down.type, down.code) == (502, "upstream_error", "upstream_error")
    assert down.message == "upstream gpu (http://gpu:8000/v1): HTTP 500: oom"
    key = CLIENT.rejected(401, b'{"error":{"message":"bad key"}}', None)
    assert key.status == 502 and "api_key_env" in key.message
