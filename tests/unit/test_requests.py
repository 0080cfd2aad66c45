import pytest

from localgw.chat.prompt import check_conversation, check_tool_choice, sampling_params
from localgw.chat.requests import ChatRequest, CompletionRequest, parse_body
from localgw.errors import InvalidRequest

OK = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]'


def body(extra: str) -> bytes:
    return OK + (b", " + extra.encode() if extra else b"") + b"}"


def test_valid_request_and_defaults():
    req = parse_body(ChatRequest, body(""))
    params = sampling_params(req)  # no model defaults known: llama.cpp's, and no cap given
    assert (params.temperature, params.top_p, params.top_k, params.min_p, params.max_tokens) == (
        0.8, 0.95, 40, 0.05, None)
    assert req.n == 1 and req.stream is False


def test_unknown_fields_are_ignored():
    assert parse_body(ChatRequest, body('"foo": {"bar": 1}')).model == "m"


@pytest.mark.parametrize("extra,param", [
    ('"temperature": 3', "temperature"),
    ('"temperature": "hot"', "temperature"),
    ('"top_p": 1.5', "top_p"),
    ('"n": 9', "n"),
    ('"n": 0', "n"),
    ('"max_tokens": 0', "max_tokens"),
    ('"max_tokens": 1.5', "max_tokens"),
    ('"stream": "yes"', "stream"),
    ('"presence_penalty": -3', "presence_penalty"),
    ('"logit_bias": {"abc": 1}', "logit_bias"),
    ('"logit_bias": {"5": 101}', "logit_bias.5"),
    ('"logit_bias": {"\u00b2": 1}', "logit_bias"),  # a digit to str.isdigit(), not to int()
    ('"logit_bias": {"%s": 1}' % ("9" * 5000), "logit_bias"),  # past int()'s digit limit
    ('"tool_choice": {"type": "function", "function": {"name": 1}}', "tool_choice.function.name"),
    ('"top_logprobs": 21, "logprobs": true', "top_logprobs"),
    ('"stop": ["a","b","c","d","e","f","g","h","i","j","k","l","m","n","o","p","q"]', "stop"),
    ('"seed": "x"', "seed"),
])
def test_bad_values_name_the_param(extra, param):
    with pytest.raises(InvalidRequest) as err:
        parse_body(ChatRequest, body(extra))
    assert err.value.param == param
    assert err.value.status == 400


@pytest.mark.parametrize("raw,needle", [
    (b"", "empty"), (b"{not json", "not valid JSON"), (b"[1,2]", "JSON object"),
    (b'{"messages": []}', "model"), (b'{"model": "m"}', "messages"),
    (b'{"model": "m", "messages": []}', "messages"),
    (b'{"model": "m", "messages": [{"role": "wizard", "content": "x"}]}', "role"),
    (b'{"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}', "text only"),
])
def test_malformed_bodies(raw, needle):
    with pytest.raises(InvalidRequest) as err:
        parse_body(ChatRequest, raw)
    assert needle in err.value.message or needle == err.value.param


def test_conversation_checks():
    req = ChatRequest.model_validate({"model": "m", "messages": [
        {"role": "tool", "tool_call_id": "nope", "content": "x"}]})
    with pytest.raises(InvalidRequest, match="matches no"):
        check_conversation(req.messages)
    req = ChatRequest.model_validate({"model": "m", "messages": [{"role": "user"}]})
    with pytest.raises(InvalidRequest, match="needs 'content'"):
        check_conversation(req.messages)


def test_named_tool_must_exist():
    req = ChatRequest.model_validate({
        "model": "m", "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "function", "function": {"name": "a"}}],
        "tool_choice": {"type": "function", "function": {"name": "b"}}})
    with pytest.raises(InvalidRequest, match="'b'"):
        check_tool_choice(req)


def test_penalty_aliases_and_completion_defaults():
    req = parse_body(ChatRequest, body('"repeat_penalty": 1.3'))
    assert sampling_params(req).repeat_penalty == 1.3
    req = parse_body(ChatRequest, body('"repetition_penalty": 1.1, "max_completion_tokens": 7'))
    assert sampling_params(req).repeat_penalty == 1.1 and sampling_params(req).max_tokens == 7
    comp = parse_body(CompletionRequest, b'{"model": "m", "prompt": ["a", "b"]}')
    assert comp.prompts == ["a", "b"] and comp.max_tokens == 16
