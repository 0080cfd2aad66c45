"""/v1/embeddings and /v1/rerank for an upstream's model: forwarded to the upstream's own
`embeddings` and `rerank`, its answer passed on, its errors mapped as chat's are.

The gateway and its upstreams are test_upstreams.py's (a real `localgw serve` on SmolLM2 known
by its hub-style id, and the fault-injecting fake upstreams), started again for this module.
"""

from __future__ import annotations

import base64

import numpy as np
import openai
import pytest

from tests.integration.conftest import MODEL_ID
from tests.integration.test_upstreams import (GATEWAY_KEY, REMOTE, direct, faults,  # noqa: F401
                                              gateway, gw, upstream)
from tests.upstream_faults import ERROR_MESSAGE

pytestmark = pytest.mark.integration

TEXTS = ["the cat sat on the mat", "a dog in paris", "what is the capital of france ?"]


def test_embeddings_of_an_upstream_model_are_the_upstreams(gw, direct):
    body = {"model": REMOTE, "input": TEXTS}
    want, got = direct.post("/v1/embeddings", json=body), gw.post("/v1/embeddings", json=body)
    assert want.status_code == got.status_code == 200, got.text
    assert got.json() == want.json()  # same server, same request: the same vectors
    assert len(got.json()["data"]) == 3 and got.json()["model"] == REMOTE


def test_the_openai_sdk_through_the_gateway(gateway, direct):
    sdk = openai.OpenAI(base_url=gateway.url + "/v1", api_key=GATEWAY_KEY, max_retries=0)
    got = sdk.embeddings.create(model=REMOTE, input=TEXTS[0])  # base64, decoded by the SDK
    want = direct.post("/v1/embeddings", json={"model": REMOTE, "input": TEXTS[0],
                                               "encoding_format": "base64"}).json()
    vector = np.frombuffer(base64.b64decode(want["data"][0]["embedding"]), dtype="<f4")
    assert np.array_equal(np.array(got.data[0].embedding, dtype=np.float32), vector)


def test_the_upstreams_4xx_keeps_its_status_and_message(gw, direct):
    for path, body in (("/v1/embeddings", {"model": REMOTE, "input": "a", "dimensions": 4096}),
                       ("/v1/rerank", {"model": REMOTE, "query": "q", "documents": ["d"]}),
                       ("/rerank", {"model": REMOTE, "query": "q", "documents": ["d"]})):
        want, got = direct.post(path, json=body), gw.post(path, json=body)
        assert want.status_code == got.status_code == 400, (path, got.text)
        assert got.json()["error"]["message"] == want.json()["error"]["message"]
        assert got.json()["error"]["param"] == want.json()["error"]["param"]


def test_paths_and_model_ids_sent_to_the_upstream(gw, faults):
    fake = faults["faults"]
    for path, upstream_path in (("/v1/embeddings", "/v1/embeddings"),
                                ("/v1/rerank", "/v1/rerank"), ("/rerank", "/v1/rerank")):
        # the local model of that id wins; the fake's copy is asked for by its own name
        resp = gw.post(path, json={"model": f"faults/{MODEL_ID}", "input": "a", "query": "q",
                                   "documents": ["d"], "stream": True})  # no stream here
        assert resp.status_code == 200, resp.text
        sent = fake.last(MODEL_ID)
        assert sent["path"] == upstream_path and sent["body"]["input"] == "a"
        assert "stream" not in sent["body"]
        assert resp.json()["id"] == "chatcmpl-fault"  # the fake's body, as it sent it


def test_an_upstream_500_is_a_502_with_its_message(gw):
    for path in ("/v1/embeddings", "/v1/rerank"):
        resp = gw.post(path, json={"model": "fault/500", "input": "a", "query": "q",
                                   "documents": ["d"]})
        assert resp.status_code == 502
        error = resp.json()["error"]
        assert error["type"] == "upstream_error" and ERROR_MESSAGE in error["message"]


def test_local_embeddings_still_run_here(gw):
    resp = gw.post("/v1/embeddings", json={"model": MODEL_ID, "input": "a cat"})
    assert resp.status_code == 200 and len(resp.json()["data"][0]["embedding"]) == 576
