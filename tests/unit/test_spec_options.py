"""`serve --spec`, `--spec-max` and `--draft-model`: parsing, and the draft model's path."""

from __future__ import annotations

import pytest
import typer

from localgw.cli.serve_options import _spec
from localgw.engine.types import LoadOptions
from localgw.errors import StoreError
from localgw.manager import ModelManager
from localgw.store import ModelStore
from tests.helpers import smollm2_path


@pytest.mark.parametrize("value", ["auto", "off", "ngram", "NGRAM"])
def test_spec_modes(value):
    assert _spec(value, None) == value.lower()


def test_spec_refuses_unknown_modes_and_draft_without_a_model():
    with pytest.raises(typer.BadParameter, match="not one of auto, off, ngram, draft"):
        _spec("fast", None)
    with pytest.raises(typer.BadParameter, match="--draft-model"):
        _spec("draft", None)
    assert _spec("draft", "tiny.gguf") == "draft"


def test_the_defaults():
    options = LoadOptions()
    assert (options.spec, options.spec_max, options.draft_path) == ("auto", 16, None)


def test_the_manager_resolves_the_draft_model_to_its_file(tmp_path):
    path = str(smollm2_path())
    store = ModelStore(tmp_path)
    by_path = ModelManager(store, options=LoadOptions(draft_path=path))
    assert by_path.options.draft_path == path
    store.import_file(smollm2_path(), "tiny/draft")
    by_id = ModelManager(store, options=LoadOptions(draft_path="tiny/draft"))
    assert by_id.options.draft_path == path
    with pytest.raises(StoreError, match="--draft-model nowhere"):
        ModelManager(store, options=LoadOptions(draft_path="nowhere"))
