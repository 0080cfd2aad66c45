"""/v1/embeddings and /v1/rerank on real llama.cpp: SmolLM2 (a chat model, mean-pooled), a tiny
random-weight BERT embedding model and a tiny BERT reranker (tests/tinygguf.py), one server."""

from __future__ import annotations

import base64

import httpx
import llama_cpp
import numpy as np
import openai
import pytest

from tests.helpers import ServerProcess, smollm2_path
from tests.integration.conftest import MODEL_ID
from tests.tinygguf import CLS, SEP, vocabulary, write_bert

BERT = "tiny-bert-mean"
RERANKER = "tiny-bert-rank"
TEXTS = ["the cat runs in paris", "a dog", "what is the capital of france ?", "red apple",
         "python code", "the sun is hot"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny-gguf")
    return {BERT: write_bert(d / f"{BERT}.gguf"),
            RERANKER: write_bert(d / f"{RERANKER}.gguf", reranker=True)}


@pytest.fixture(scope="module")
def emb_server(files, tmp_path_factory):
    proc = ServerProcess("--model", str(smollm2_path()), "--model", str(files[BERT]),
                         "--model", str(files[RERANKER]), "--max-loaded", "3", "--ctx", "2048",
                         home=tmp_path_factory.mktemp("home"))
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def web(emb_server):
    with httpx.Client(base_url=emb_server.url, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def sdk(emb_server):
    return openai.OpenAI(base_url=emb_server.url + "/v1", api_key="unused", max_retries=0)


def vectors(web, model, inputs, **extra) -> np.ndarray:
    resp = web.post("/v1/embeddings", json={"model": model, "input": inputs, **extra})
    assert resp.status_code == 200, resp.text
    return np.array([d["embedding"] for d in resp.json()["data"]], dtype=np.float32)


def error_of(resp, status=400) -> dict:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    return err


# ---- the shape, through the SDK and raw HTTP --------------------------------------------------
def test_sdk_embeddings_float_and_base64(sdk, web):
    floats = sdk.embeddings.create(model=BERT, input=TEXTS[:2], encoding_format="float")
    assert [d.index for d in floats.data] == [0, 1] and floats.model == BERT
    assert all(len(d.embedding) == 32 for d in floats.data)
    assert floats.usage.prompt_tokens == floats.usage.total_tokens == 7 + 4
    for d in floats.data:
        assert abs(np.linalg.norm(d.embedding) - 1) < 1e-5
    encoded = sdk.embeddings.create(model=BERT, input=TEXTS[:2], encoding_format="base64")
    for f, b in zip(floats.data, encoded.data):
        decoded = np.frombuffer(base64.b64decode(b.embedding), dtype="<f4")
        assert decoded.tolist() == np.array(f.embedding, dtype=np.float32).tolist()
    default = sdk.embeddings.create(model=BERT, input=TEXTS[0])  # the SDK asks base64, decodes
    assert np.allclose(default.data[0].embedding, floats.data[0].embedding, atol=0)


def test_raw_http_shape(web):
    body = web.post("/v1/embeddings", json={"model": MODEL_ID, "input": "hello there",
                                            "user": "ignored"}).json()
    assert body["object"] == "list" and body["model"] == MODEL_ID
    assert body["data"][0]["object"] == "embedding" and body["data"][0]["index"] == 0
    assert len(body["data"][0]["embedding"]) == 576  # SmolLM2's width, mean-pooled
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0


def test_dimensions_truncate_and_renormalise(web, sdk):
    full = vectors(web, BERT, TEXTS)
    cut = vectors(web, BERT, TEXTS, dimensions=8)
    assert cut.shape == (len(TEXTS), 8)
    want = full[:, :8] / np.linalg.norm(full[:, :8], axis=1, keepdims=True)
    assert np.allclose(cut, want, atol=1e-6)
    assert len(sdk.embeddings.create(model=BERT, input="a dog", dimensions=4).data[0].embedding) == 4
    err = error_of(web.post("/v1/embeddings", json={"model": BERT, "input": "a", "dimensions": 33}))
    assert err["param"] == "dimensions" and "32" in err["message"]


def test_token_id_inputs_equal_their_text(web):
    ids = {t: i for i, t in enumerate(vocabulary())}
    tokens = [CLS, ids["\u2581the"], ids["\u2581cat"], ids["\u2581runs"], ids["\u2581in"],
              ids["\u2581paris"], SEP]
    by_text = vectors(web, BERT, TEXTS[0])
    assert vectors(web, BERT, tokens).tolist() == by_text.tolist()
    both = vectors(web, BERT, [tokens, tokens[:3]])
    assert both.shape == (2, 32)  # in a batch of two, a last bit may round differently
    assert np.abs(both[0] - by_text[0]).max() < 1e-5


@pytest.mark.parametrize("model", [BERT, MODEL_ID])
def test_a_hundred_inputs_in_one_request_match_each_alone(web, model):
    inputs = [f"{TEXTS[i % len(TEXTS)]} {'cat ' * (i % 7)}".strip() for i in range(100)]
    batch = vectors(web, model, inputs)
    assert batch.shape[0] == 100
    for i in (0, 1, 13, 57, 99):
        alone = vectors(web, model, inputs[i])[0]
        assert np.abs(alone - batch[i]).max() < 1e-5  # batched kernels may round a last bit
    # the same input elsewhere in the batch: rows of a matmul tile may round a last bit apart
    assert np.abs(batch[0] - batch[len(TEXTS) * 7]).max() < 1e-5
    again = vectors(web, model, inputs)
    assert np.array_equal(batch, again)  # same request, same vectors


def test_langchain_openai_embeddings_unchanged(emb_server, web):
    """LangChain's OpenAIEmbeddings as its docs set it up for servers other than OpenAI's
    (`check_embedding_ctx_length=False`: send text, not tiktoken's token ids)."""
    from langchain_openai import OpenAIEmbeddings

    lc = OpenAIEmbeddings(model=MODEL_ID, base_url=emb_server.url + "/v1", api_key="unused",
                          check_embedding_ctx_length=False, max_retries=0)
    docs = np.array(lc.embed_documents(TEXTS[:3]), dtype=np.float32)
    assert np.array_equal(docs, vectors(web, MODEL_ID, TEXTS[:3]))  # base64, decoded by the SDK
    query = np.array(lc.embed_query(TEXTS[0]), dtype=np.float32)
    assert query.shape == (576,) and np.abs(query - docs[0]).max() < 1e-5


# ---- llama.cpp's own embeddings API on the same file --------------------------------------------
@pytest.mark.parametrize("which", ["bert", "smollm2"])
def test_vectors_match_llama_cpp_python(web, files, which):
    path = str(files[BERT]) if which == "bert" else str(smollm2_path())
    model = BERT if which == "bert" else MODEL_ID
    llm = llama_cpp.Llama(path, embedding=True, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
                          n_ctx=512, n_batch=512, n_ubatch=512, flash_attn=False, verbose=False)
    try:
        theirs = np.array(llm.embed(TEXTS, normalize=True), dtype=np.float32)
    finally:
        llm.close()
    ours = vectors(web, model, TEXTS)
    assert np.abs(ours - theirs).max() < 1e-5


# ---- errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize("body, param", [
    ({"input": ""}, "input"), ({"input": []}, "input"), ({"input": [""]}, "input"),
    ({"input": 5}, "input"), ({"input": ["a", 1]}, "input"), ({"input": [[1, 2], []]}, "input"),
    ({"input": [1.5]}, "input"), ({"input": ["a"] * 2049}, "input"),
    ({"input": "a", "encoding_format": "int8"}, "encoding_format"),
    ({"input": "a", "dimensions": 0}, "dimensions"), ({}, "input"),
])
def test_bad_bodies_are_400s(web, body, param):
    err = error_of(web.post("/v1/embeddings", json={"model": BERT, **body}))
    assert err["type"] == "invalid_request_error" and err["param"] == param, err


def test_token_ids_outside_the_vocabulary(web):
    n = len(vocabulary())
    for bad in ([n], [-1], [[1, 2], [3, n + 5]]):
        err = error_of(web.post("/v1/embeddings", json={"model": BERT, "input": bad}))
        assert "vocabulary" in err["message"] and err["param"] == "input"


def test_input_longer_than_the_model_takes(web):
    err = error_of(web.post("/v1/embeddings", json={"model": BERT, "input": "the cat " * 300}))
    assert err["code"] == "context_length_exceeded" and "512" in err["message"]
    err = error_of(web.post("/v1/embeddings", json={"model": BERT, "input": ["a", "cat " * 4000]}))
    assert "input[1]" in err["message"] and "512" in err["message"]
    err = error_of(web.post("/v1/embeddings", json={"model": BERT, "input": [[5] * 513]}))
    assert err["code"] == "context_length_exceeded"


def test_unknown_model_is_404(web):
    assert error_of(web.post("/v1/embeddings", json={"model": "nope", "input": "a"}), 404)


# ---- reranking ----------------------------------------------------------------------------------
def test_rerank_orders_by_score_with_top_n_and_documents(web):
    docs = TEXTS + [{"text": "cats and dogs"}]
    body = web.post("/v1/rerank", json={"model": RERANKER, "query": "where is the cat ?",
                                        "documents": docs}).json()
    assert body["object"] == "list" and body["model"] == RERANKER
    scores = [r["relevance_score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) > 1
    assert sorted(r["index"] for r in body["results"]) == list(range(len(docs)))
    assert "document" not in body["results"][0] and body["usage"]["prompt_tokens"] > 0
    top = web.post("/rerank", json={"model": RERANKER, "query": "where is the cat ?",
                                    "documents": docs, "top_n": 2, "return_documents": True}).json()
    assert [r["index"] for r in top["results"]] == [r["index"] for r in body["results"][:2]]
    texts = [d if isinstance(d, str) else d["text"] for d in docs]
    assert all(r["document"] == {"text": texts[r["index"]]} for r in top["results"])
    alone = web.post("/v1/rerank", json={"model": RERANKER, "query": "where is the cat ?",
                                         "documents": [docs[3]]}).json()["results"][0]
    batched = next(r for r in body["results"] if r["index"] == 3)
    assert abs(alone["relevance_score"] - batched["relevance_score"]) < 1e-5


def test_rerank_needs_a_reranker_and_a_reranker_does_not_embed_or_chat(web):
    for model in (MODEL_ID, BERT):
        err = error_of(web.post("/v1/rerank", json={"model": model, "query": "q",
                                                    "documents": ["d"]}))
        assert "not a reranker" in err["message"] and err["param"] == "model"
    err = error_of(web.post("/v1/embeddings", json={"model": RERANKER, "input": "a"}))
    assert "reranker" in err["message"]
    for model in (BERT, RERANKER):
        err = error_of(web.post("/v1/chat/completions", json={
            "model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}))
        assert "embedding model" in err["message"]
    error_of(web.post("/v1/rerank", json={"model": RERANKER, "query": "q", "documents": []}))


def test_models_say_what_each_model_does(web):
    models = {m["id"]: m for m in web.get("/v1/models").json()["data"]}
    assert "embeddings" in models[MODEL_ID]["supported_features"]
    assert "tools" not in models[BERT]["supported_features"]
    assert models[BERT]["supported_features"] == ["embeddings"]
    assert models[RERANKER]["supported_features"] == ["rerank"]
    assert models[BERT]["output_modalities"] == ["embeddings"]


def test_chat_streams_on_while_a_big_embedding_request_runs(web, emb_server):
    import threading

    done = {}

    def chat():
        with httpx.Client(base_url=emb_server.url, timeout=120) as c:
            done["chat"] = c.post("/v1/chat/completions", json={
                "model": MODEL_ID, "messages": [{"role": "user", "content": "Count to ten."}],
                "max_tokens": 24, "temperature": 0})
    thread = threading.Thread(target=chat)
    thread.start()
    embedded = vectors(web, MODEL_ID, [f"{t} {i}" for i in range(40) for t in TEXTS[:3]])
    thread.join(120)
    assert embedded.shape == (120, 576)
    assert done["chat"].status_code == 200 and done["chat"].json()["choices"][0]["message"]
    health = web.get("/health").json()
    assert all(m["active_requests"] == 0 for m in health["models"])
