"""The embeddings and rerank bodies: validation, dimensions, base64, ordering; batching pieces."""

from __future__ import annotations

import base64
import json
import threading
from collections import deque

import numpy as np
import pytest

from localgw.chat.requests import parse_body
from localgw.engine.embed import MAX_SEQS, EmbedJob, EmbedWork
from localgw.errors import InvalidRequest
from localgw.protocols.embeddings import (EmbeddingsRequest, RerankRequest, render_embeddings,
                                          render_rerank, shape_vectors)


def parse(request_model, **body):
    return parse_body(request_model, json.dumps(body).encode())


def test_input_forms():
    assert parse(EmbeddingsRequest, model="m", input="hi").items() == ["hi"]
    assert parse(EmbeddingsRequest, model="m", input=["a", "b"]).items() == ["a", "b"]
    assert parse(EmbeddingsRequest, model="m", input=[1, 2, 3]).items() == [[1, 2, 3]]
    assert parse(EmbeddingsRequest, model="m", input=[[1], [2, 3]]).items() == [[1], [2, 3]]


@pytest.mark.parametrize("value", ["", [], [""], [[]], [True], [1.0], {"a": 1}, ["a", [1]],
                                   ["x"] * 2049])
def test_bad_inputs_name_input(value):
    with pytest.raises(InvalidRequest) as err:
        parse(EmbeddingsRequest, model="m", input=value)
    assert err.value.param == "input"


def test_dimensions_cut_and_renormalise():
    rows = np.array([[3.0, 4.0, 12.0], [1.0, 0.0, 0.0]], dtype=np.float32) / np.array([[13.0], [1.0]])
    cut = shape_vectors(rows.astype(np.float32), 2)
    assert np.allclose(cut, [[0.6, 0.8], [1.0, 0.0]])
    assert shape_vectors(rows, None) is rows


def test_base64_is_little_endian_float32():
    req = parse(EmbeddingsRequest, model="m", input="a", encoding_format="base64")
    row = np.array([[0.5, -1.25]], dtype=np.float32)
    body = render_embeddings(req, row, 3)
    raw = base64.b64decode(body["data"][0]["embedding"])
    assert raw == b"\x00\x00\x00?\x00\x00\xa0\xbf"
    assert body["usage"] == {"prompt_tokens": 3, "total_tokens": 3}


def test_rerank_sorted_top_n_documents():
    req = parse(RerankRequest, model="m", query="q", documents=["a", {"text": "b"}, "c"], top_n=2,
                return_documents=True)
    body = render_rerank(req, [0.1, 2.0, 0.5], 9)
    assert [(r["index"], r["document"]["text"]) for r in body["results"]] == [(1, "b"), (2, "c")]
    assert parse(RerankRequest, model="m", query="q", texts=["x"]).document_texts() == ["x"]
    with pytest.raises(InvalidRequest):
        parse(RerankRequest, model="m", query="q", documents=[])


class _Out:
    cancelled = threading.Event()


def test_pieces_are_bounded_by_tokens_and_sequences():
    work = EmbedWork.__new__(EmbedWork)
    work.jobs = deque([EmbedJob([[1] * 10] * 3, _Out()), EmbedJob([[1] * 300, [1] * 5], _Out())])
    assert [(j is work.jobs[0], i) for j, i in work._piece(100)] == [(True, 0), (True, 1),
                                                                      (True, 2)]
    assert len(work._piece(1000)) == 5
    work.jobs = deque([EmbedJob([[1]] * 200, _Out())])
    assert len(work._piece(10_000)) == MAX_SEQS
    work.jobs = deque([EmbedJob([[1] * 700], _Out())])
    assert len(work._piece(512)) == 1  # one input longer than the piece goes alone


def test_what_a_gguf_does_and_show_says_it(tmp_path):
    import subprocess
    import sys

    from localgw.protocols.embeddings import model_does
    from tests.helpers import smollm2_path
    from tests.tinygguf import write_bert

    bert, rank = write_bert(tmp_path / "b.gguf"), write_bert(tmp_path / "r.gguf", reranker=True)
    assert model_does(str(bert)) == ["embeddings"] and model_does(str(rank)) == ["rerank"]
    assert model_does(str(smollm2_path())) == ["chat", "embeddings"]
    env = {"LOCALGW_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-m", "localgw", "import", str(rank), "--id", "me/rank"],
                   env=env, check=True, capture_output=True)
    shown = subprocess.run([sys.executable, "-m", "localgw", "show", "me/rank", "--json"], env=env,
                           check=True, capture_output=True, text=True).stdout
    assert json.loads(shown)["does"] == ["rerank"]
