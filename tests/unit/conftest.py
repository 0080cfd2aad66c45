"""Unit fixtures."""

from __future__ import annotations

import httpx
import pytest

from localgw.server.app import create_app
from localgw.server.settings import ServerSettings
from tests.fake_engine import FakeRunner, fake_manager
from tests.grammar_engine import GrammarEngine


@pytest.fixture(scope="session")
def engine():
    """llama.cpp's grammar engine on SmolLM2's vocabulary (no weights are loaded)."""
    eng = GrammarEngine()
    yield eng
    eng.close()


@pytest.fixture
async def gateway(tmp_path):
    """Makes the app over a fake manager and an httpx client on it; closes what it made."""
    made = []

    def make(runner: type = FakeRunner, settings: ServerSettings | None = None, **fields):
        manager = fake_manager(tmp_path, runner)
        app = create_app(settings or ServerSettings(**fields), manager=manager)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                   base_url="http://127.0.0.1:8080")
        made.append((app, client))
        return client, app
    yield make
    for app, client in made:
        await client.aclose()
        await app.state.manager.close()
        app.state.prepare_pool.close()
