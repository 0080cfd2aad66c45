"""Snapshots of the main screens (deterministic content: a saved conversation, fixed models)."""

from localgw.tui.app import ChatApp
from localgw.tui.history import ChatHistory, Message
from tests.tui.fakes import FakeClient

SIZE = (80, 24)


def saved_app(tmp_path) -> ChatApp:
    history = ChatHistory(tmp_path / "chat.sqlite")
    older = history.create("Older chat", "org/small")
    history.add(older.id, Message("user", "hello"))
    conv = history.create("Python help", "org/small")
    history.add(conv.id, Message("user", "How do I reverse a list?"))
    history.add(conv.id, Message("assistant", "Use slicing:\n\n```python\nitems[::-1]\n```\n\nor `reversed()`.",
                                 reasoning="The user wants list reversal."))
    history.add(conv.id, Message("user", "Weather in Paris?"))
    history.add(conv.id, Message("assistant", "", tool_calls=[{
        "id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]))
    return ChatApp(FakeClient(), history, model="org/small")


def test_main_screen(snap_compare, tmp_path):
    assert snap_compare(saved_app(tmp_path), terminal_size=SIZE)


def test_model_picker(snap_compare, tmp_path):
    assert snap_compare(saved_app(tmp_path), terminal_size=SIZE, press=["ctrl+o"])


def test_settings_screen(snap_compare, tmp_path):
    assert snap_compare(saved_app(tmp_path), terminal_size=(100, 30), press=["ctrl+s"])
