"""Unit fixtures."""

import pytest

from tests.grammar_engine import GrammarEngine


@pytest.fixture(scope="session")
def engine():
    """llama.cpp's grammar engine on SmolLM2's vocabulary (no weights are loaded)."""
    eng = GrammarEngine()
    yield eng
    eng.close()
