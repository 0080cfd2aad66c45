"""The OpenAPI-driven fuzz of tests/integration/test_fuzz.py, its full cases for each chat route,
against the real app over real sockets (tests/helpers.ThreadServer) and the fake engine: the
HTTP and error layer is what it tests. Grammars a request builds are parsed by llama.cpp on
SmolLM2's vocabulary, as the real engine parses them, so a schema llama.cpp refuses is still the
400 it is on the real server; the context is the real model's 8,192 tokens."""

from __future__ import annotations

import pytest

from localgw.errors import InvalidRequest
from localgw.server.settings import ServerSettings
from tests.fake_engine import FakeRunner, fake_manager
from tests.helpers import ThreadServer
from tests.integration.test_fuzz import CASES, CHAT_ROUTES, fuzz_route


@pytest.fixture(scope="module")
def fuzzed_url(engine, tmp_path_factory):
    class GrammarChecked(FakeRunner):
        n_ctx = 8192

        def check_grammar(self, gbnf: str) -> None:
            if not engine.compiles(gbnf):
                raise InvalidRequest("the grammar built for this request does not compile in "
                                     "llama.cpp; simplify the schema", param="response_format")

    manager = fake_manager(tmp_path_factory.mktemp("home"), GrammarChecked)
    with ThreadServer(ServerSettings(), manager) as server:
        yield server.url


@pytest.mark.parametrize("path", CHAT_ROUTES)
def test_fuzz_a_chat_route_from_the_openapi_document(fuzzed_url, path):
    fuzz_route(fuzzed_url, path, CASES)
