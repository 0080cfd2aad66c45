"""The batched engine with the real model: slots decoded together, prefix reuse, the prompt cache,
reproducible seeds, and the default output cap."""

from __future__ import annotations

import concurrent.futures
import json
import secrets
import time

import httpx
import pytest

from tests.helpers import ServerProcess, smollm2_path, wait_until
from tests.integration.conftest import EOS_BAN, MODEL_ID


@pytest.fixture(scope="module")
def slots4():
    proc = ServerProcess("--model", str(smollm2_path()), "--parallel", "4", "--ctx", "4096",
                         "--max-output", "32")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def slots2():
    """Two slots, so four conversations must take turns through the host-RAM prompt cache."""
    proc = ServerProcess("--model", str(smollm2_path()), "--parallel", "2", "--ctx", "4096",
                         "--cache-ram", "512MiB")
    yield proc
    proc.stop()


def stream(url: str, messages: list[dict], stamps: list | None = None, stop_after: int | None = None,
           **extra) -> dict:
    """One streamed chat; returns text, usage, finish reason and the time of each content chunk."""
    body = {"model": MODEL_ID, "messages": messages, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}, **extra}
    text, usage, finish, times = "", {}, None, []
    start = time.perf_counter()
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=120) as resp:
        assert resp.status_code == 200, resp.read()
        for line in resp.iter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            usage = chunk.get("usage") or usage
            for c in chunk["choices"]:
                if c["delta"].get("content"):
                    times.append(time.perf_counter())
                    text += c["delta"]["content"]
                finish = c.get("finish_reason") or finish
            if stop_after is not None and len(times) >= stop_after:
                break  # leaves: the server must cancel this one alone
    ttft = times[0] - start if times else None
    return {"text": text, "usage": usage, "finish": finish, "times": times, "ttft": ttft}


def user(content: str) -> list[dict]:
    return [{"role": "user", "content": content}]


def health_model(url: str) -> dict:
    return httpx.get(url + "/health").json()["models"][0]


def test_four_streams_decode_together_and_each_starts_as_it_would_alone(slots4):
    prompts = [f"Write about the number {i} and its history." for i in range(4)]
    solo = [stream(slots4.url, user(p), max_tokens=40, logit_bias=EOS_BAN)["text"] for p in prompts]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda p: stream(slots4.url, user(p), max_tokens=40,
                                                  logit_bias=EOS_BAN), prompts))
    for alone, got in zip(solo, together):
        assert len(alone) >= 40 and got["text"][:40] == alone[:40]  # never mixed, same start
        assert got["finish"] == "length" and got["usage"]["completion_tokens"] == 40
    # decoded together, not one after another: every stream had its first token before any ended
    assert max(r["times"][0] for r in together) < min(r["times"][-1] for r in together)


def test_cancelling_one_of_three_streams_leaves_the_others_intact(slots4):
    prompts = [f"Tell me about river {i}." for i in range(3)]
    solo = [stream(slots4.url, user(p), max_tokens=30, logit_bias=EOS_BAN)["text"] for p in prompts]
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(stream, slots4.url, user(p), None, 3 if i == 1 else None,
                               max_tokens=30, logit_bias=EOS_BAN) for i, p in enumerate(prompts)]
        results = [f.result() for f in futures]
    assert len(results[1]["times"]) >= 3 and results[1]["finish"] is None
    for i in (0, 2):
        assert results[i]["text"] == solo[i] and results[i]["finish"] == "length"
    assert wait_until(lambda: not any(s["busy"] for s in health_model(slots4.url)["slots"]), 5)


def test_n_choices_share_one_prompt_evaluation(slots4):
    content = f"[{secrets.token_hex(6)}] " + "Describe the ocean in detail. " * 20
    before = health_model(slots4.url)["prompt_tokens_evaluated"]
    resp = httpx.post(slots4.url + "/v1/chat/completions", timeout=120, json={
        "model": MODEL_ID, "messages": user(content), "n": 3, "max_tokens": 8,
        "temperature": 0.9, "seed": 7, "logit_bias": EOS_BAN}).json()
    prompt = resp["usage"]["prompt_tokens"]
    evaluated = health_model(slots4.url)["prompt_tokens_evaluated"] - before
    assert len(resp["choices"]) == 3 and prompt > 100
    # the lead reads the prompt once; each other choice copies it and re-reads only its last two
    # tokens (the piece its first token is sampled from, see engine.loop.prompt_piece)
    assert evaluated <= prompt + 2 * 2, (evaluated, prompt)
    assert resp["usage"]["completion_tokens"] == 24


def test_cells_copied_from_another_slot_give_the_same_tokens_as_reading_the_prompt(slots4):
    content = f"[{secrets.token_hex(6)}] " + "List the planets and one fact about each. " * 12
    body = {"model": MODEL_ID, "messages": user(content), "max_tokens": 16, "temperature": 0,
            "logit_bias": EOS_BAN}
    cold = httpx.post(slots4.url + "/v1/chat/completions", json=body, timeout=120).json()
    # the second choice takes its prompt from the first's slot (engine.reuse: the slot's own
    # cells through a host buffer on the CPU), not by reading it again
    both = httpx.post(slots4.url + "/v1/chat/completions", json=dict(body, n=2), timeout=120).json()
    texts = [c["message"]["content"] for c in both["choices"]]
    assert len(cold["choices"][0]["message"]["content"]) > 10
    assert texts == [cold["choices"][0]["message"]["content"]] * 2


def test_same_seed_same_text_from_a_cold_prompt(slots4):
    for _ in range(3):
        msgs = user(f"[{secrets.token_hex(4)}] Invent a name for a ship.")
        body = {"model": MODEL_ID, "messages": msgs, "temperature": 0.9, "seed": 1234,
                "max_tokens": 24}
        first = httpx.post(slots4.url + "/v1/chat/completions", json=body, timeout=60).json()
        second = httpx.post(slots4.url + "/v1/chat/completions", json=body, timeout=60).json()
        prompt = first["usage"]["prompt_tokens"]
        # cold: only the template's shared opening can come from another slot; warm: all of it
        assert first["usage"]["prompt_tokens_details"]["cached_tokens"] < prompt - 8
        assert second["usage"]["prompt_tokens_details"]["cached_tokens"] == prompt - 2  # the last two are always re-read
        assert first["choices"][0]["message"]["content"] == second["choices"][0]["message"]["content"]


def test_no_max_tokens_means_the_server_output_cap(slots4, http):
    resp = httpx.post(slots4.url + "/v1/chat/completions", timeout=60, json={
        "model": MODEL_ID, "messages": user("Tell me a long story."), "logit_bias": EOS_BAN}).json()
    assert resp["choices"][0]["finish_reason"] == "length"
    assert resp["usage"]["completion_tokens"] == 32  # this server's --max-output
    model = httpx.get(slots4.url + f"/v1/models/{MODEL_ID}").json()
    assert model["max_output_length"] == 32
    # the default cap is 4096 (the conftest server runs with defaults)
    assert http.get(f"/v1/models/{MODEL_ID}").json()["max_output_length"] == 4096


def conversation_turns(url: str, n_conversations: int, turns: int = 6) -> list[list[dict]]:
    """Conversations with a ~500-token system note each, taking turns; returns each turn's result."""
    convs = []
    for c in range(n_conversations):
        notes = " ".join(f"Fact {i}: item {secrets.token_hex(3)} is stored in room {i % 9}."
                         for i in range(40))
        convs.append([{"role": "system", "content": f"Conversation {c}. {notes}"}])
    results: list[list[dict]] = [[] for _ in convs]
    for turn in range(turns):
        for c, msgs in enumerate(convs):
            msgs.append({"role": "user", "content": f"Question {turn}: where is fact {turn}?"})
            r = stream(url, msgs, max_tokens=8)
            msgs.append({"role": "assistant", "content": r["text"]})
            results[c].append(r)
    return results


@pytest.mark.parametrize("n_conversations", [2, 4])
def test_conversations_taking_turns_keep_their_prefix(slots2, n_conversations):
    before = health_model(slots2.url)["prompt_cache"]
    for turns in conversation_turns(slots2.url, n_conversations):
        first = turns[0]
        assert first["usage"]["prompt_tokens"] > 450
        for later in turns[1:]:
            prompt = later["usage"]["prompt_tokens"]
            assert later["usage"]["prompt_tokens_details"]["cached_tokens"] >= 0.8 * prompt
            assert later["ttft"] <= 0.25 * first["ttft"], (later["ttft"], first["ttft"])
    after = health_model(slots2.url)["prompt_cache"]
    if n_conversations > 2:  # more conversations than slots: the RAM cache carried them
        assert after["hits"] - before["hits"] >= (n_conversations - 2) * 5
    metrics = httpx.get(slots2.url + "/metrics").text
    assert "localgw_prompt_cache_hits" in metrics and "localgw_slots_busy" in metrics


def test_a_restored_cache_entry_gives_the_same_tokens_as_an_uncached_run(slots2):
    long_a = f"[{secrets.token_hex(4)}] " + "Remember this list: apples, pears, plums. " * 30
    body = {"max_tokens": 20, "logit_bias": EOS_BAN}
    cold = stream(slots2.url, user(long_a), **body)
    # cold: at most the template's opening came from another slot
    assert cold["usage"]["prompt_tokens_details"]["cached_tokens"] < 0.2 * cold["usage"]["prompt_tokens"]
    hits = health_model(slots2.url)["prompt_cache"]["hits"]
    for other in ("Tell me about cats. " * 20, "Tell me about dogs. " * 20):  # take both slots
        stream(slots2.url, user(f"[{secrets.token_hex(4)}] {other}"), **body)
    restored = stream(slots2.url, user(long_a), **body)
    assert health_model(slots2.url)["prompt_cache"]["hits"] == hits + 1
    assert restored["usage"]["prompt_tokens_details"]["cached_tokens"] >= \
        restored["usage"]["prompt_tokens"] - 2
    assert restored["text"] == cold["text"]


def test_health_and_ps_show_slots(slots4):
    model = health_model(slots4.url)
    assert model["parallel"] == 4 and len(model["slots"]) == 4
    assert model["context_length"] == 4096 and model["prompt_cache"]["capacity_bytes"] > 0


@pytest.fixture(scope="module")
def shared_pool():
    """`--kv-unified`: three slots' cells (3 x 1024) in one pool."""
    proc = ServerProcess("--model", str(smollm2_path()), "--parallel", "3", "--ctx", "1024",
                         "--kv-unified")
    yield proc
    proc.stop()


def test_a_shared_kv_pool_decodes_streams_together_and_never_mixes_them(shared_pool):
    model = health_model(shared_pool.url)
    assert model["kv_unified"] is True and model["parallel"] == 3
    assert model["context_length"] == 1024  # a request gets its share, not the whole pool
    words = ["alpha", "bravo", "charlie"]

    def forced(word: str) -> dict:
        # each stream may only say its own words (a token of another stream would break its
        # JSON), a dozen of them so the streams overlap; the grammar ends the reply well before
        # max_tokens, whatever tokens the model picks
        schema = {"type": "object", "properties": {"word": {"enum": [f"{word} " * 12]}},
                  "required": ["word"], "additionalProperties": False}
        return stream(shared_pool.url, user(f"Say {word}, please, as JSON. " * 8), max_tokens=300,
                      response_format={"type": "json_schema",
                                       "json_schema": {"name": "w", "schema": schema}})

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        results = list(pool.map(forced, words))
    for word, got in zip(words, results):
        assert json.loads(got["text"]) == {"word": f"{word} " * 12} and got["finish"] == "stop"
    assert max(r["times"][0] for r in results) < min(r["times"][-1] for r in results)
    again = forced("bravo")  # the same conversation again: its prefix is still in the pool
    prompt = again["usage"]["prompt_tokens"]
    assert again["usage"]["prompt_tokens_details"]["cached_tokens"] >= 0.8 * prompt
    long = httpx.post(shared_pool.url + "/v1/chat/completions", timeout=60, json={
        "model": MODEL_ID, "messages": user("word " * 1500), "max_tokens": 4})
    assert long.status_code == 400 and "1024" in long.json()["error"]["message"]
