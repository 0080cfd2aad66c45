"""The model picker says which models an upstream serves, and by which one."""

from textual.widgets import OptionList

from localgw.tui.app import ChatApp
from localgw.tui.client import ModelInfo
from localgw.tui.history import ChatHistory
from tests.tui.fakes import FakeClient


async def test_picker_shows_the_source_of_upstream_models(tmp_path):
    history = ChatHistory(tmp_path / "chat.sqlite")
    client = FakeClient(models=[ModelInfo("org/small", 8192, "Q4_K_M", 98_000_000, [], True),
                                ModelInfo("Qwen/Qwen3-32B", 32768, upstream="gpu-box")])
    app = ChatApp(client, history, model="org/small")
    try:
        async with app.run_test(size=(100, 24)) as pilot:
            await pilot.press("ctrl+o")
            await pilot.pause(0.2)
            options = app.screen.query_one(OptionList)
            assert "via" not in str(options.get_option_at_index(0).prompt)
            assert str(options.get_option_at_index(1).prompt) == "Qwen/Qwen3-32B · ctx 32768 · via gpu-box"
    finally:
        history.close()
