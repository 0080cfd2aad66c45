"""Speculative decoding on the real model (engine.spec): the same request and seed give the same
text, logprobs and usage with `--spec off`, `ngram`, `auto` and `draft` (SmolLM2 as its own draft
model: most of its drafts are kept, so most tokens of the answers come out of verified batches),
and with `auto` given that draft model ("auto+draft": its priced drafts and probes);
rejected drafts leave no cell behind; cancellation mid-draft frees the slot; /health and /metrics
count drafts.

Each mode runs the same requests in a server of its own, in this process, one after the other
(never two models generating at once)."""

from __future__ import annotations

import json

import httpx
import llama_cpp
import pytest

from localgw.engine.types import LoadOptions
from localgw.server.settings import ServerSettings
from tests.helpers import ThreadServer, smollm2_path, wait_until

pytestmark = pytest.mark.integration

MODES = ("off", "ngram", "auto", "draft", "auto+draft")  # "+draft": with --draft-model
PARAGRAPH = ("The lighthouse keeper climbed the stairs every evening at six. He lit the lamp, "
             "wound the clock, and wrote the weather in a small blue book. Ships passed in the "
             "night and never knew his name, but they saw the light and kept away from the rocks.")
CODE = "\n".join([
    "def total_price(items, tax_rate):",
    "    subtotal = 0",
    "    for item in items:",
    "        subtotal += item.price * item.quantity",
    "    tax = subtotal * tax_rate",
    "    return subtotal + tax",
    "",
    "def average_price(items):",
    "    if not items:",
    "        return 0",
    "    return sum(item.price for item in items) / len(items)",
])
JSON_DOC = {"name": "Ada", "city": "London", "languages": ["English", "French"], "age": 36}
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "city": {"type": "string"},
                                           "languages": {"type": "array",
                                                         "items": {"type": "string"}},
                                           "age": {"type": "integer"}},
          "required": ["name", "city", "languages", "age"], "additionalProperties": False}


def user(content: str) -> list[dict]:
    return [{"role": "user", "content": content}]


def cases() -> dict[str, dict]:
    """Request bodies (without `model`) whose output repeats what the prompt holds."""
    repeat = f"Repeat this text exactly:\n\n{PARAGRAPH}"
    rename = f"Rename `items` to `products` in this code and give it back:\n\n```python\n{CODE}\n```"
    bodies = {
        "repeat greedy": {"messages": user(repeat), "temperature": 0, "max_tokens": 90},
        "rename greedy": {"messages": user(rename), "temperature": 0, "max_tokens": 160},
        "repeat hot": {"messages": user(repeat), "temperature": 0.8, "seed": 11, "max_tokens": 90},
        "rename hot": {"messages": user(rename), "temperature": 0.8, "seed": 5, "max_tokens": 160},
        "rename top_k": {"messages": user(rename), "temperature": 0.7, "top_k": 40, "seed": 2,
                         "max_tokens": 120},
        "json": {"messages": user(f"Give back this JSON: {json.dumps(JSON_DOC)}"),
                 "temperature": 0.8, "seed": 3, "max_tokens": 80,
                 "response_format": {"type": "json_schema",
                                     "json_schema": {"name": "person", "schema": SCHEMA}}},
        "stop inside a draft": {"messages": user(repeat), "temperature": 0, "max_tokens": 90,
                                "stop": ["the weather in"]},
        "n=2": {"messages": user(rename), "temperature": 0.9, "seed": 8, "n": 2,
                "max_tokens": 100},
        "logprobs": {"messages": user(repeat), "temperature": 0.5, "seed": 4, "max_tokens": 60,
                     "logprobs": True, "top_logprobs": 3},
        "penalties": {"messages": user(rename), "temperature": 0, "max_tokens": 100,
                      "frequency_penalty": 0.3, "presence_penalty": 0.2},
    }
    for i, word in enumerate(["apple", "river", "seven"]):
        bodies[f"list {word}"] = {"messages": user(
            f"Write the word {word} ten times, one per line, numbered."),
            "temperature": 0.3 * i, "seed": i, "max_tokens": 70}
    return bodies


def answer(body: dict) -> dict:
    """What must not depend on the mode: every choice's text, reason and logprobs, and usage."""
    return {"choices": [(c["message"]["content"], c["finish_reason"], c.get("logprobs"))
                        for c in body["choices"]],
            "usage": body["usage"]}


def serve(mode: str) -> ThreadServer:
    draft = str(smollm2_path()) if "draft" in mode else None
    return ThreadServer(ServerSettings(models=[str(smollm2_path())], load=LoadOptions(
        n_ctx=4096, n_parallel=2, spec=mode.removesuffix("+draft"), draft_path=draft)))


def run_mode(mode: str, monkeypatch, tmp_path) -> dict:
    monkeypatch.setenv("LOCALGW_HOME", str(tmp_path / mode))
    out: dict = {}
    with serve(mode) as server, httpx.Client(base_url=server.url, timeout=120) as http:
        model = server.app.state.manager.preload[0]
        for name, body in cases().items():
            resp = http.post("/v1/chat/completions", json={"model": model, **body})
            assert resp.status_code == 200, resp.text
            out[name] = answer(resp.json())
        out["turns"] = two_turns(http, model)
        runner = server.app.state.manager.loaded[model].runner
        assert wait_until(lambda: not runner.busy)
        out["cells agree"] = cells_agree(runner)
        out["health"] = http.get("/health").json()["models"][0]["speculative"]
        out["metrics"] = http.get("/metrics").text
    return out


def two_turns(http, model) -> list[dict]:
    """A conversation's second turn reuses what the first left in the slot."""
    messages = user(f"Repeat this text exactly:\n\n{PARAGRAPH}")
    usages = []
    for question in ("Now say it once more.", "And once more, please."):
        resp = http.post("/v1/chat/completions", json={
            "model": model, "messages": messages, "temperature": 0, "max_tokens": 60}).json()
        usages.append(resp["usage"])
        messages = messages + [resp["choices"][0]["message"], *user(question)]
    return usages


def cells_agree(runner) -> bool:
    """Every slot's KV cells are exactly its tokens: no rejected draft left a cell behind."""
    memory = runner.model.memory
    return all(llama_cpp.llama_memory_seq_pos_max(memory, s.seq) == len(s.tokens) - 1
               for s in runner.slots.slots)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    monkeypatch = pytest.MonkeyPatch()
    tmp = tmp_path_factory.mktemp("spec")
    try:
        return {mode: run_mode(mode, monkeypatch, tmp) for mode in MODES}
    finally:
        monkeypatch.undo()


@pytest.mark.parametrize("name", list(cases()) + ["turns"])
@pytest.mark.parametrize("mode", MODES[1:])
def test_speculation_gives_the_same_answer_as_decoding_token_by_token(results, mode, name):
    assert results[mode][name] == results["off"][name]


def test_the_cases_repeat_their_prompt_and_drafts_are_kept(results):
    assert results["off"]["stop inside a draft"]["choices"][0][1] == "stop"  # the stop was met
    for mode in ("ngram", "auto", "draft"):
        health = results[mode]["health"]
        assert health["mode"] == mode
        assert health["drafted"] > health["accepted"] > 20  # some kept, some rejected
    for mode in ("draft", "auto+draft"):
        assert results[mode]["health"]["drafter"] == "draft"  # the draft model, not look-ups
    assert results["auto+draft"]["health"]["drafted"] > 0  # priced drafts, or at least probes
    assert results["off"]["health"] == {"mode": "off", "drafter": None, "max": 0, "drafted": 0,
                                        "accepted": 0}


def test_rejected_drafts_leave_no_cell_and_turns_reuse_the_same_prompt(results):
    for mode in MODES:
        assert results[mode]["cells agree"], mode
    cached = results["off"]["turns"][1]["prompt_tokens_details"]["cached_tokens"]
    assert cached > 100  # the second turn reused the first (the same in every mode, above)


def test_metrics_count_drafted_and_accepted_tokens(results):
    for mode in MODES:
        health, text = results[mode]["health"], results[mode]["metrics"]
        assert f"localgw_spec_drafted_tokens_total {float(health['drafted'])}" in text
        assert f"localgw_spec_accepted_tokens_total {float(health['accepted'])}" in text


@pytest.mark.parametrize("mode", ["ngram", "draft"])
def test_a_stream_cancelled_mid_draft_frees_its_slot(monkeypatch, tmp_path, mode):
    monkeypatch.setenv("LOCALGW_HOME", str(tmp_path))
    with serve(mode) as server, httpx.Client(base_url=server.url, timeout=120) as http:
        model = server.app.state.manager.preload[0]
        runner = server.app.state.manager.loaded[model].runner
        body = {"model": model, "messages": user(f"Repeat this text exactly:\n\n{PARAGRAPH}"),
                "temperature": 0, "max_tokens": 200, "stream": True}
        with http.stream("POST", "/v1/chat/completions", json=body) as resp:
            chunks = 0
            for line in resp.iter_lines():
                chunks += line.startswith("data: {")
                if chunks >= 8 and runner.spec.accepted:  # leaves while drafts are kept
                    break
        assert runner.spec.accepted > 0
        assert wait_until(lambda: not runner.busy, 10)
        assert cells_agree(runner)
        again = http.post("/v1/chat/completions", json={**body, "stream": False,
                                                        "max_tokens": 40})
        assert again.status_code == 200
        assert again.json()["usage"]["prompt_tokens_details"]["cached_tokens"] > 0


def test_draft_mode_without_a_draft_model_is_refused_at_load():
    from localgw.engine.runner import LlamaRunner
    from localgw.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="--draft-model"):
        LlamaRunner("smol", str(smollm2_path()), LoadOptions(n_ctx=256, n_parallel=1,
                                                             spec="draft"))
