"""`localgw chat`: a Textual chat app that talks to any OpenAI-compatible server over HTTP.

Only the App talks to the network, in workers; widgets render what they are given. A
Started/Done/Failed trio of messages keeps the UI consistent however a request ends.
"""

from __future__ import annotations

import asyncio
import time

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message as TextualMessage
from textual.widgets import Footer, Input, Label, ListItem, ListView, Static

from localgw.tui.client import ChatClient, ClientError, Delta, Finished
from localgw.tui.history import ChatHistory, Conversation, Message
from localgw.tui.screens import Confirm, ModelPicker, SettingsScreen, TextPrompt
from localgw.tui.widgets import AssistantMessage, Notice, UserMessage


class ConversationItem(ListItem):
    def __init__(self, conv: Conversation):
        super().__init__(Label(conv.title, markup=False))
        self.conv = conv


class GenerationStarted(TextualMessage):
    pass


class GenerationDone(TextualMessage):
    def __init__(self, status: str):
        super().__init__()
        self.status = status


class GenerationFailed(TextualMessage):
    def __init__(self, error: str, model_not_found: str | None = None):
        super().__init__()
        self.error = error
        self.model_not_found = model_not_found  # the model the server said it does not have


class ChatApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "localgw chat"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("ctrl+n", "new_chat", "New"),
        Binding("escape", "stop", "Stop"),
        Binding("ctrl+o", "pick_model", "Model"),
        Binding("ctrl+s", "settings", "Settings"),
        Binding("ctrl+r", "rename", "Rename"),
        Binding("ctrl+t", "delete", "Delete"),
        Binding("ctrl+y", "copy_last", "Copy"),
        Binding("ctrl+b", "toggle_sidebar", "Chats"),
        Binding("ctrl+q", "quit", "Quit"),
    ]

    def __init__(self, client: ChatClient, history: ChatHistory, *, model: str | None = None,
                 notice: str | None = None):
        super().__init__()
        self.client = client
        self.history = history
        self.default_model = model
        self.notice = notice
        self.conv: Conversation | None = None
        self.generating = False
        self.state = ""
        self.last_stats = ""

    # ---- layout ---------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with Horizontal():
            with Vertical(id="sidebar"):
                yield Label("Chats", classes="sidebar-title")
                yield ListView(id="conversations")
            with Vertical(id="main"):
                yield VerticalScroll(id="messages")
                yield Input(placeholder="Message — Enter sends", id="prompt")
                yield Static("", id="status")
        yield Footer(compact=True)

    async def on_mount(self) -> None:
        if self.notice:
            self.notify(self.notice, timeout=8)
        conversations = self.history.conversations()
        await self._refresh_sidebar()
        if conversations:
            await self.open_conversation(conversations[0])
        else:
            await self.action_new_chat()
        self.check_model()
        self.query_one("#prompt", Input).focus()

    # ---- conversations --------------------------------------------------------------------
    async def _refresh_sidebar(self) -> None:
        view = self.query_one("#conversations", ListView)
        await view.clear()
        items = [ConversationItem(c) for c in self.history.conversations()]
        await view.extend(items)
        if self.conv:
            for i, item in enumerate(items):
                if item.conv.id == self.conv.id:
                    view.index = i

    async def open_conversation(self, conv: Conversation) -> None:
        self.conv = conv
        box = self.query_one("#messages", VerticalScroll)
        await box.remove_children()
        widgets = []
        for msg in self.history.messages(conv.id):
            if msg.role == "user":
                widgets.append(UserMessage(msg.content, markup=False))
            elif msg.role == "assistant":
                widgets.append(AssistantMessage(msg.content, msg.reasoning, msg.tool_calls))
        await box.mount_all(widgets)
        box.scroll_end(animate=False)
        box.anchor()
        self.sub_title = conv.title
        self.update_status()

    @on(ListView.Selected, "#conversations")
    async def _selected(self, event: ListView.Selected) -> None:
        if self.generating:
            self.notify("a reply is still streaming: Esc stops it", severity="warning")
            return
        if isinstance(event.item, ConversationItem) and (not self.conv or event.item.conv.id != self.conv.id):
            await self.open_conversation(self.history.get(event.item.conv.id))

    async def action_new_chat(self) -> None:
        if self.generating:
            self.notify("a reply is still streaming: Esc stops it", severity="warning")
            return
        model = (self.conv.model if self.conv else None) or self.default_model
        conv = self.history.create("New chat", model)
        await self.open_conversation(conv)
        await self._refresh_sidebar()
        self.query_one("#prompt", Input).focus()

    async def action_rename(self) -> None:
        if self.conv:
            self.push_screen(TextPrompt("Rename conversation", self.conv.title), self._renamed)

    async def _renamed(self, title: str | None) -> None:
        if title and self.conv:
            self.conv.title = title
            self.history.save(self.conv)
            self.sub_title = title
            await self._refresh_sidebar()

    async def action_delete(self) -> None:
        if self.conv and not self.generating:
            self.push_screen(Confirm(f"Delete “{self.conv.title}”?"), self._deleted)

    async def _deleted(self, yes: bool | None) -> None:
        if yes and self.conv:
            self.history.delete(self.conv.id)
            remaining = self.history.conversations()
            self.conv = None
            if remaining:
                await self.open_conversation(remaining[0])
                await self._refresh_sidebar()
            else:
                await self.action_new_chat()

    @work(exclusive=True, group="models")
    async def action_settings(self) -> None:
        if not self.conv:
            return
        try:  # the model's own defaults, shown beside the fields; the screen works without them
            models = await self.client.list_models()
        except ClientError:
            models = []
        info = next((m for m in models if m.id == self.model), None)
        self.push_screen(SettingsScreen(self.conv, info), self._settings_saved)

    def _settings_saved(self, conv: Conversation | None) -> None:
        if conv:
            self.history.save(conv)
            self.update_status()
            self.notify("settings saved")

    def action_toggle_sidebar(self) -> None:
        sidebar = self.query_one("#sidebar")
        sidebar.display = not sidebar.display

    def action_copy_last(self) -> None:
        answers = list(self.query(AssistantMessage))
        if not answers or not answers[-1].content:
            self.notify("no answer to copy yet", severity="warning")
            return
        self.copy_to_clipboard(answers[-1].content)
        self.notify("last answer copied")

    # ---- models ---------------------------------------------------------------------------
    @property
    def model(self) -> str | None:
        return (self.conv.model if self.conv else None) or self.default_model

    async def _models(self):
        try:
            return await self.client.list_models()
        except ClientError as exc:
            self.notify(f"cannot list models: {exc.message}", severity="error")
            return None

    async def say(self, text: str, error: bool = False) -> None:
        """A line in the conversation from the app, not the model (not kept in the history)."""
        box = self.query_one("#messages", VerticalScroll)
        await box.mount(Notice(text, error=error))
        box.scroll_end(animate=False)

    @work(exclusive=True, group="models")
    async def check_model(self) -> None:
        """Make sure the model in use is one the server has: the current one if it has it, else
        the last used one it has (the default, then the conversations' from the latest on), else
        its first loaded model, else its first. A model replaced is said in the conversation."""
        try:
            models = await self.client.list_models()
        except ClientError as exc:
            await self.say(f"Cannot list the server's models: {exc}", error=True)
            return
        ids = {m.id for m in models}
        wanted = self.model
        if wanted in ids:
            return
        if not models:
            await self.say("The server has no models.", error=True)
            return
        used = [self.default_model] + [c.model for c in self.history.conversations()]
        chosen = next((m for m in used if m in ids), None)
        if chosen is None:
            chosen = ([m for m in models if m.loaded] or models)[0].id
        self.default_model = chosen
        if self.conv and self.conv.model:
            self.conv.model = chosen
            self.history.save(self.conv)
        self.update_status()
        if wanted:
            await self.say(f"The server has no model {wanted}: using {chosen} (ctrl+o picks another).")

    @work(exclusive=True, group="models")
    async def action_pick_model(self) -> None:
        models = await self._models()
        if models is None:
            return
        if not models:
            self.notify("the server has no models", severity="warning")
            return
        choice = await self.push_screen_wait(ModelPicker(models, self.model))
        if choice:
            self.default_model = choice
            if self.conv:
                self.conv.model = choice
                self.history.save(self.conv)
            self.update_status()
            self.notify(f"model: {choice}")

    # ---- sending and streaming ------------------------------------------------------------
    @on(Input.Submitted, "#prompt")
    async def _send(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            return
        if self.generating:
            self.notify("a reply is still streaming: Esc stops it", severity="warning")
            return
        if not self.model:
            self.notify("no model: pick one with ctrl+o", severity="error")
            return
        event.input.value = ""
        conv = self.conv
        if conv.model is None:
            conv.model = self.model
        if conv.title == "New chat":
            conv.title = text[:40] + ("…" if len(text) > 40 else "")
            self.sub_title = conv.title
            self.history.save(conv)
            await self._refresh_sidebar()
        self.history.add(conv.id, Message("user", text))
        box = self.query_one("#messages", VerticalScroll)
        reply = AssistantMessage()
        await box.mount_all([UserMessage(text, markup=False), reply])
        box.scroll_end(animate=False)
        box.anchor()
        self.generating = True  # at once: no second send slips in before the worker starts
        self.generate(conv, reply)

    def api_messages(self, conv: Conversation) -> list[dict]:
        out = [{"role": "system", "content": conv.system_prompt}] if conv.system_prompt else []
        return out + [m.to_api() for m in self.history.messages(conv.id) if m.role in ("user", "assistant")]

    @work(exclusive=True, group="generate")
    async def generate(self, conv: Conversation, reply: AssistantMessage) -> None:
        self.post_message(GenerationStarted())
        started = time.perf_counter()
        first = last = None
        pieces = 0
        usage = None
        watcher = asyncio.get_running_loop().create_task(self._watch_server(conv.model))
        try:
            async for event in self.client.stream_chat(conv.model, self.api_messages(conv),
                                                       temperature=conv.temperature,
                                                       max_tokens=conv.max_tokens):
                if isinstance(event, Delta):
                    now = time.perf_counter()
                    if first is None:
                        first = now
                        watcher.cancel()
                        self.state = "generating…"
                        self.update_status()
                    last, pieces = now, pieces + 1
                    if event.reasoning:
                        reply.add_reasoning(event.reasoning)
                    if event.content:
                        reply.add_content(event.content)
                    if event.tool_calls:
                        reply.tool_calls.add(event.tool_calls)
                elif isinstance(event, Finished):
                    usage = event.usage
            await reply.finish()
            self._save_reply(conv, reply)
            tokens = (usage or {}).get("completion_tokens") or pieces
            stats = [f"TTFT {1000 * (first - started):.0f} ms" if first else "no tokens"]
            if first and last and last > first and tokens > 1:
                stats.append(f"{(tokens - 1) / (last - first):.1f} tok/s")
            if usage:
                stats.append(f"cached {usage.get('prompt_tokens_details', {}).get('cached_tokens', 0)}"
                             f"/{usage.get('prompt_tokens', 0)}")
            self.post_message(GenerationDone(" · ".join(stats)))
        except asyncio.CancelledError:
            await reply.finish("\n\n*(stopped)*")
            self._save_reply(conv, reply)
            self.post_message(GenerationDone("stopped"))
            raise
        except ClientError as exc:
            await reply.finish()
            if not (reply.content or reply.reasoning or reply.tool_calls.calls):
                await reply.remove()
            else:
                self._save_reply(conv, reply)
            self.post_message(GenerationFailed(
                str(exc), conv.model if exc.model_not_found(conv.model) else None))
        finally:
            watcher.cancel()

    def _save_reply(self, conv: Conversation, reply: AssistantMessage) -> None:
        if reply.content or reply.reasoning or reply.tool_calls.calls:
            self.history.add(conv.id, Message("assistant", reply.content, reply.reasoning,
                                              reply.tool_calls.as_openai()))

    async def _watch_server(self, model: str) -> None:
        """Until the first token: say whether the model is loading or the request is queued."""
        while True:
            try:
                health = await self.client.health()
            except ClientError:
                return
            loaded = {m["id"]: m for m in health.get("models", [])}
            if model in health.get("loading", []):
                self.state = "loading model…"
            elif model in loaded and loaded[model].get("queued"):
                self.state = f"queued ({loaded[model]['queued']} waiting)"
            elif model not in loaded:
                self.state = "waiting for the model…"
            else:
                self.state = "thinking…"
            self.update_status()
            await asyncio.sleep(0.5)

    def action_stop(self) -> None:
        if self.generating:
            self.workers.cancel_group(self, "generate")

    def on_generation_started(self, _: GenerationStarted) -> None:
        self.generating = True
        self.state = "waiting…"
        self.update_status()

    def on_generation_done(self, message: GenerationDone) -> None:
        self.generating = False
        self.state = ""
        self.last_stats = message.status
        self.update_status()
        self.query_one("#prompt", Input).focus()

    async def on_generation_failed(self, message: GenerationFailed) -> None:
        self.generating = False
        self.state = ""
        self.last_stats = "failed"
        self.update_status()
        await self.say(f"Request failed: {message.error}", error=True)
        if message.model_not_found:
            self.check_model()
        self.query_one("#prompt", Input).focus()

    def update_status(self) -> None:
        parts = [(self.model or "no model").rsplit("/", 1)[-1]]
        if self.conv and (self.conv.temperature is not None or self.conv.max_tokens):
            parts.append(f"T={self.conv.temperature if self.conv.temperature is not None else '-'}"
                         f" max={self.conv.max_tokens or '-'}")
        parts.append(self.state or self.last_stats)
        self.query_one("#status", Static).update(" · ".join(p for p in parts if p))
