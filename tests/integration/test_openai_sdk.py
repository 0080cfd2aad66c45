"""The official `openai` client against a real server: every response parses as the SDK's types."""

import json

from openai.types import Completion, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from tests.integration.conftest import HUB_STYLE_ID, MODEL_ID, chat_body


def test_chat_completion(client):
    resp = client.chat.completions.create(model=MODEL_ID, temperature=0, max_tokens=20,
                                          messages=[{"role": "user", "content": "What is 2+2?"}])
    assert isinstance(resp, ChatCompletion)
    choice = resp.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert resp.usage.prompt_tokens > 10
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    assert resp.id.startswith("chatcmpl-") and resp.model == MODEL_ID


def test_streamed_chat_completion(client):
    stream = client.chat.completions.create(model=MODEL_ID, temperature=0, max_tokens=20,
                                            stream=True,
                                            messages=[{"role": "user", "content": "Count to five."}])
    chunks = list(stream)
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    assert chunks[-1].choices[0].delta.content is None
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    same = client.chat.completions.create(model=MODEL_ID, temperature=0, max_tokens=20,
                                          messages=[{"role": "user", "content": "Count to five."}])
    assert text == same.choices[0].message.content  # streaming and not cannot disagree


def test_stream_ends_with_done(http):
    with http.stream("POST", "/v1/chat/completions", json=chat_body(stream=True)) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        frames = [line for line in resp.iter_lines() if line]
    assert frames[-1] == "data: [DONE]"
    assert all(f.startswith("data: ") for f in frames)
    json.loads(frames[-2][6:])


def test_text_completion(client):
    resp = client.completions.create(model=MODEL_ID, prompt="The capital of France is",
                                     max_tokens=8, temperature=0)
    assert isinstance(resp, Completion)
    assert resp.choices[0].text and resp.choices[0].finish_reason in ("stop", "length")
    assert resp.usage.completion_tokens <= 8


def test_text_completion_stream_and_prompt_list(client):
    chunks = list(client.completions.create(model=MODEL_ID, prompt=["One", "Two"], max_tokens=4,
                                            temperature=0, stream=True))
    indexes = {c.choices[0].index for c in chunks if c.choices}
    assert indexes == {0, 1}


def test_models(client):
    ids = [m.id for m in client.models.list()]
    assert MODEL_ID in ids and HUB_STYLE_ID in ids
    model = client.models.retrieve(HUB_STYLE_ID)  # the id holds a slash
    assert isinstance(model, Model) and model.id == HUB_STYLE_ID
    extra = model.model_extra
    assert extra["context_length"] == 8192 and extra["quantization"] == "Q4_1"
    assert extra["owned_by" if "owned_by" in extra else "hugging_face_id"]
    assert model.owned_by == "HuggingFaceTB"
