"""Model sampling defaults: GGUF keys, then generation_config.json, then catalogue, then llama.cpp."""

from localgw.chat.defaults import LLAMA_CPP_DEFAULTS, LOCALGW_DEFAULTS, resolve_defaults
from localgw.chat.prompt import sampling_params
from localgw.chat.requests import ChatRequest, parse_body
from localgw.catalog import CATALOG, catalog_entry_for

GGUF = {"general.sampling.temp": 0.3, "general.sampling.top_k": 7}
GENCFG = {"temperature": 0.5, "top_p": 0.7, "top_k": 11, "repetition_penalty": 1.1,
          "do_sample": True, "eos_token_id": [1, 2]}
CATALOGUE = {"temperature": 0.9, "top_p": 0.6, "top_k": 13, "min_p": 0.02}


def test_each_field_from_the_first_source_that_has_it():
    d = resolve_defaults(gguf_metadata=GGUF, generation_config=GENCFG, catalogue=CATALOGUE)
    assert d.values == {"temperature": 0.3, "top_k": 7, "top_p": 0.7, "repetition_penalty": 1.1,
                        "min_p": 0.02}
    assert d.sources == {"temperature": "gguf", "top_k": "gguf", "top_p": "generation_config",
                         "repetition_penalty": "generation_config", "min_p": "catalogue"}


def test_order_without_higher_sources():
    assert resolve_defaults(generation_config=GENCFG, catalogue=CATALOGUE).values["temperature"] == 0.5
    assert resolve_defaults(catalogue=CATALOGUE).values["temperature"] == 0.9
    assert resolve_defaults().values == LLAMA_CPP_DEFAULTS | LOCALGW_DEFAULTS
    assert resolve_defaults().sources == {**{k: "llama.cpp" for k in LLAMA_CPP_DEFAULTS},
                                          "repetition_penalty": "localgw"}


def test_do_sample_false_is_greedy_and_junk_is_ignored():
    d = resolve_defaults(generation_config={"do_sample": False, "temperature": "hot",
                                            "top_k": True})
    assert d.values["temperature"] == 0.0 and d.values["top_k"] == 40
    assert resolve_defaults(generation_config=["not", "a", "dict"]).values == \
        LLAMA_CPP_DEFAULTS | LOCALGW_DEFAULTS


def test_the_request_always_wins():
    d = resolve_defaults(gguf_metadata=GGUF, catalogue=CATALOGUE)
    req = parse_body(ChatRequest, b'{"model":"m","messages":[{"role":"user","content":"x"}],'
                                  b'"temperature":0,"top_k":0,"top_p":1,"min_p":0}')
    p = sampling_params(req, defaults=d)
    assert (p.temperature, p.top_k, p.top_p, p.min_p) == (0, 0, 1, 0)
    bare = parse_body(ChatRequest, b'{"model":"m","messages":[{"role":"user","content":"x"}]}')
    p = sampling_params(bare, defaults=d)
    assert (p.temperature, p.top_k, p.top_p, p.min_p) == (0.3, 7, 0.6, 0.02)


def test_max_output_caps_only_requests_without_max_tokens():
    bare = parse_body(ChatRequest, b'{"model":"m","messages":[{"role":"user","content":"x"}]}')
    assert sampling_params(bare, max_output=4096).max_tokens == 4096
    capped = parse_body(ChatRequest, b'{"model":"m","messages":[{"role":"user","content":"x"}],'
                                    b'"max_tokens":9000}')
    assert sampling_params(capped, max_output=4096).max_tokens == 9000  # the request wins


def test_every_catalogue_model_has_defaults_and_files_find_their_entry():
    assert all(e.sampling.get("temperature") is not None for e in CATALOG if e.kind == "chat")
    assert all(not e.sampling for e in CATALOG if e.kind != "chat")  # embedders sample nothing
    assert catalog_entry_for("SmolLM2-135M-Instruct.Q4_1").id == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert catalog_entry_for(None, "Qwen/Qwen3-8B").sampling_no_thinking["temperature"] == 0.7
    assert catalog_entry_for("qwen2.5-7b-instruct-q4_k_m").id == "Qwen/Qwen2.5-7B-Instruct"
    assert catalog_entry_for("my-own-model") is None


def test_a_repetition_penalty_unless_the_model_or_the_request_sets_one():
    none_set = parse_body(ChatRequest, b'{"model":"m","messages":[{"role":"user","content":"x"}]}')
    assert sampling_params(none_set, defaults=resolve_defaults()).repeat_penalty == 1.1
    qwen = resolve_defaults(catalogue={"repetition_penalty": 1.05})
    assert sampling_params(none_set, defaults=qwen).repeat_penalty == 1.05
    off = parse_body(ChatRequest, b'{"model":"m","messages":[{"role":"user","content":"x"}],'
                                  b'"repetition_penalty":1}')
    assert sampling_params(off, defaults=resolve_defaults()).repeat_penalty == 1.0
