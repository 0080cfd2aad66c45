"""Conversations kept in SQLite under LOCALGW_HOME, so they survive the app."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL, model TEXT,
    system_prompt TEXT NOT NULL DEFAULT '', temperature REAL, max_tokens INTEGER,
    created REAL NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role TEXT NOT NULL, content TEXT NOT NULL DEFAULT '', reasoning TEXT NOT NULL DEFAULT '',
    tool_calls TEXT, created REAL NOT NULL);
"""


@dataclass
class Conversation:
    id: int
    title: str
    model: str | None = None
    system_prompt: str = ""
    temperature: float | None = None
    max_tokens: int | None = None
    updated: float = 0.0


@dataclass
class Message:
    role: str
    content: str = ""
    reasoning: str = ""
    tool_calls: list[dict] = field(default_factory=list)

    def to_api(self) -> dict:
        out: dict = {"role": self.role, "content": self.content or None}
        if self.tool_calls:
            out["tool_calls"] = self.tool_calls
        elif out["content"] is None:
            out["content"] = ""
        return out


class ChatHistory:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path)
        self.db.execute("PRAGMA foreign_keys = ON")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def conversations(self) -> list[Conversation]:
        rows = self.db.execute("SELECT id, title, model, system_prompt, temperature, max_tokens, "
                               "updated FROM conversations ORDER BY updated DESC, id DESC")
        return [Conversation(*row) for row in rows]

    def get(self, conversation_id: int) -> Conversation | None:
        row = self.db.execute("SELECT id, title, model, system_prompt, temperature, max_tokens, "
                              "updated FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
        return Conversation(*row) if row else None

    def create(self, title: str = "New chat", model: str | None = None) -> Conversation:
        now = time.time()
        with self.db:
            cur = self.db.execute("INSERT INTO conversations (title, model, created, updated) "
                                  "VALUES (?, ?, ?, ?)", (title, model, now, now))
        return self.get(cur.lastrowid)

    def save(self, conv: Conversation) -> None:
        with self.db:
            self.db.execute("UPDATE conversations SET title = ?, model = ?, system_prompt = ?, "
                            "temperature = ?, max_tokens = ?, updated = ? WHERE id = ?",
                            (conv.title, conv.model, conv.system_prompt, conv.temperature,
                             conv.max_tokens, time.time(), conv.id))

    def delete(self, conversation_id: int) -> None:
        with self.db:
            self.db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))

    def messages(self, conversation_id: int) -> list[Message]:
        rows = self.db.execute("SELECT role, content, reasoning, tool_calls FROM messages "
                               "WHERE conversation_id = ? ORDER BY id", (conversation_id,))
        return [Message(r, c, reason, json.loads(t) if t else []) for r, c, reason, t in rows]

    def add(self, conversation_id: int, message: Message) -> None:
        with self.db:
            self.db.execute("INSERT INTO messages (conversation_id, role, content, reasoning, "
                            "tool_calls, created) VALUES (?, ?, ?, ?, ?, ?)",
                            (conversation_id, message.role, message.content, message.reasoning,
                             json.dumps(message.tool_calls) if message.tool_calls else None,
                             time.time()))
            self.db.execute("UPDATE conversations SET updated = ? WHERE id = ?",
                            (time.time(), conversation_id))
