"""Modal screens: pick a model, edit settings, rename, confirm."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, TextArea
from textual.widgets.option_list import Option

from localgw.tui.client import ModelInfo
from localgw.tui.history import Conversation


class ModelPicker(ModalScreen[str | None]):
    BINDINGS = [("escape", "dismiss(None)", "Cancel")]

    def __init__(self, models: list[ModelInfo], current: str | None):
        super().__init__()
        self.models, self.current = models, current

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Pick a model", classes="dialog-title")
            yield OptionList(*[Option(m.label() + (f" · via {m.upstream}" if m.upstream else ""),
                                      id=m.id) for m in self.models], id="models")

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        for i, m in enumerate(self.models):
            if m.id == self.current:
                options.highlighted = i

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)


class SettingsScreen(ModalScreen[Conversation | None]):
    """System prompt and sampling settings of one conversation."""

    BINDINGS = [("escape", "dismiss(None)", "Cancel")]

    def __init__(self, conv: Conversation, model: ModelInfo | None = None):
        super().__init__()
        self.conv = conv
        self.model = model  # for the model's own sampling defaults, shown beside the fields

    def compose(self) -> ComposeResult:
        c = self.conv
        with Vertical(classes="dialog"):
            yield Label("Conversation settings", classes="dialog-title")
            yield Label("System prompt")
            yield TextArea(c.system_prompt, id="system")
            defaults = self.model.defaults_label() if self.model else ""
            model_temperature = (self.model.default_sampling.get("temperature")
                                 if self.model else None)
            with Horizontal(classes="row"):
                yield Label("Temperature ")
                yield Input("" if c.temperature is None else str(c.temperature), id="temperature",
                            placeholder="default" if model_temperature is None
                            else f"model: {model_temperature}", type="number")
                yield Label(" Max tokens ")
                yield Input("" if c.max_tokens is None else str(c.max_tokens), id="max_tokens",
                            placeholder="no limit", type="integer")
            defaults_label = Label(f"Model defaults (used for what you leave empty): {defaults}",
                                   id="model-defaults", markup=False)
            defaults_label.display = bool(defaults)
            yield defaults_label
            with Horizontal(classes="row buttons"):
                yield Button("Save", variant="primary", id="save")
                yield Button("Cancel", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id != "save":
            self.dismiss(None)
            return
        temp = self.query_one("#temperature", Input).value.strip()
        limit = self.query_one("#max_tokens", Input).value.strip()
        try:
            temperature = float(temp) if temp else None
            if temperature is not None and not 0 <= temperature <= 2:
                raise ValueError
            max_tokens = int(limit) if limit else None
            if max_tokens is not None and max_tokens < 1:
                raise ValueError
        except ValueError:
            self.notify("temperature must be 0–2 and max tokens at least 1", severity="error")
            return
        self.conv.system_prompt = self.query_one("#system", TextArea).text
        self.conv.temperature, self.conv.max_tokens = temperature, max_tokens
        self.dismiss(self.conv)


class TextPrompt(ModalScreen[str | None]):
    BINDINGS = [("escape", "dismiss(None)", "Cancel")]

    def __init__(self, title: str, value: str = ""):
        super().__init__()
        self.title_text, self.value = title, value

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog small"):
            yield Label(self.title_text, classes="dialog-title")
            yield Input(self.value, id="value")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)


class Confirm(ModalScreen[bool]):
    BINDINGS = [("escape", "dismiss(False)", "No"), ("y", "dismiss(True)", "Yes")]

    def __init__(self, question: str):
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog small"):
            yield Label(self.question, classes="dialog-title")
            with Horizontal(classes="row buttons"):
                yield Button("Yes", variant="error", id="yes")
                yield Button("No", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")
