"""/openapi.json: a valid OpenAPI 3.1 document that lists every route of api.md."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
from openapi_spec_validator import validate
from starlette.routing import Route
from starlette.testclient import TestClient

from localgw.manager import ModelManager
from localgw.server.app import create_app
from localgw.server.openapi import openapi_document
from localgw.server.settings import ServerSettings
from localgw.store import ModelStore

API_MD = Path(__file__).resolve().parents[2].parent / "shared" / "spec" / "api.md"
# The endpoint table of api.md, as of this writing (the test also reads the file when present).
SPEC_ROUTES = {("post", "/v1/chat/completions"), ("post", "/v1/completions"),
               ("get", "/v1/models"), ("get", "/v1/models/{model_id}"),
               ("post", "/v1/messages"), ("post", "/v1/messages/count_tokens"),
               ("post", "/v1/responses"), ("get", "/openapi.json"), ("get", "/health"),
               ("get", "/metrics"), ("post", "/v1/embeddings"), ("post", "/v1/rerank"),
               ("post", "/rerank")}


# Routes of the contract that open issues add (none open now).
NOT_YET_SERVED: set[tuple[str, str]] = set()


def listed(doc) -> set[tuple[str, str]]:
    return {(method, path) for path, ops in doc["paths"].items() for method in ops}


def test_document_validates_as_openapi_3_1():
    doc = openapi_document()
    assert doc["openapi"].startswith("3.1")
    validate(doc)


def test_every_route_of_the_contract_is_listed():
    doc = openapi_document()
    assert SPEC_ROUTES <= listed(doc)
    if API_MD.exists():  # the contract itself, when the shared specs are beside the checkout
        rows = re.findall(r"^\| (GET|POST) \| `([^`]+)` \|", API_MD.read_text(), re.M)
        wanted = {(m.lower(), re.sub(r"\{id\}", "{model_id}", p)) for m, p in rows}
        assert wanted and wanted - NOT_YET_SERVED <= listed(doc)
    assert not NOT_YET_SERVED & listed(doc), "served now: take it out of NOT_YET_SERVED"


def make_app(tmp_path):
    """An app on an empty store with no model to load (its lifespan is never run here)."""
    manager = ModelManager(ModelStore(tmp_path), model_args=[])
    manager.preload, manager._extra = [], {}
    return create_app(ServerSettings(), manager)


def test_every_route_the_app_serves_is_listed(tmp_path):
    app = make_app(tmp_path)
    served = {(m.lower(), r.path) for r in app.routes if isinstance(r, Route)
              for m in (r.methods or []) if m in ("GET", "POST")}
    served = {(m, p.replace("{model_id:path}", "{model_id}")) for m, p in served}
    assert served <= listed(openapi_document())


def test_request_schemas_are_the_models_own_and_accept_a_real_request():
    doc = openapi_document()
    schemas = doc["components"]["schemas"]
    chat = doc["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]
    resolver_doc = {"components": {"schemas": schemas}, **chat}
    request = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4,
               "response_format": {"type": "json_schema", "json_schema": {"schema": {}}}}
    jsonschema.validate(request, resolver_doc)
    assert set(schemas["ChatRequest"]["required"]) == {"model", "messages"}
    assert schemas["ChatRequest"]["properties"]["stop"]["anyOf"][1]["maxItems"] == 16


def test_served_over_http(tmp_path):
    response = TestClient(make_app(tmp_path), base_url="http://localhost").get("/openapi.json")
    assert response.status_code == 200
    assert response.json()["paths"].keys() == openapi_document()["paths"].keys()


def test_each_post_route_shows_a_typical_body_its_route_accepts():
    from localgw.chat.prompt import check_conversation, check_tool_choice
    from localgw.chat.requests import ChatRequest, parse_body
    from localgw.server.openapi import REQUEST_BODIES

    doc = openapi_document()
    for path, (_, model) in REQUEST_BODIES.items():
        media = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        example = media["examples"]["typical"]["value"]
        jsonschema.validate(example, {"components": doc["components"], **media["schema"]})
        req = parse_body(model, json.dumps(example).encode())
        chat = req.to_chat(req.input_items()) if path == "/v1/responses" else (
            req.to_chat() if hasattr(req, "to_chat") else req)
        if isinstance(chat, ChatRequest):
            check_conversation(chat.messages)
            check_tool_choice(chat)
