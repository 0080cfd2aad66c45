"""A fake Hugging Face Hub on 127.0.0.1 for `localgw pull` tests (see ../shared/spec/hub.md).

Serves real bytes the test owns, answers the API calls huggingface_hub makes, honours `Range`,
and logs every request so tests can assert what was fetched.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse


_SHA_CACHE: dict = {}


def _sha_of_file(path: Path) -> str:
    key = (str(path), path.stat().st_mtime)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return _SHA_CACHE[key]


@dataclass
class FakeFile:
    source: Path | bytes
    sha256: str = ""
    size: int = 0
    served_bytes: bytes | None = None  # when set, served instead of the advertised content

    def __post_init__(self):
        if isinstance(self.source, Path):
            self.size = self.source.stat().st_size
            self.sha256 = self.sha256 or _sha_of_file(self.source)
        else:
            self.size = len(self.source)
            self.sha256 = self.sha256 or hashlib.sha256(self.source).hexdigest()

    def read(self) -> bytes:
        return self.source if isinstance(self.source, bytes) else self.source.read_bytes()

    def body(self) -> bytes:
        return self.served_bytes if self.served_bytes is not None else self.read()


@dataclass
class FakeRepo:
    files: dict[str, FakeFile]
    sha: str = "a" * 40
    gated: bool = False
    license: str | None = "apache-2.0"


@dataclass
class LoggedRequest:
    method: str
    path: str
    headers: dict
    sent: int = 0


@dataclass
class FakeHub:
    repos: dict[str, FakeRepo] = field(default_factory=dict)
    log: list[LoggedRequest] = field(default_factory=list)
    throttle: float = 0.0  # seconds of sleep per 64 KiB sent, to make a download killable
    drop_after: int | None = None  # cut the next file GET after this many bytes (then reset)
    token: str = "hf_test_token"

    def add(self, repo: str, files: dict[str, Path | bytes], **kw) -> FakeRepo:
        self.repos[repo] = FakeRepo({p: FakeFile(src) for p, src in files.items()},
                                    sha=hashlib.sha1(repo.encode()).hexdigest(), **kw)
        return self.repos[repo]

    def start(self) -> "FakeHub":
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                hub._handle(self, head=True)

            def do_GET(self):
                hub._handle(self)

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                hub._handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    # ---- what tests ask of the log ------------------------------------------------------
    def file_gets(self, suffix: str = ".gguf") -> list[LoggedRequest]:
        """GETs of model files (by default; pull also reads the small generation_config.json)."""
        return [r for r in self.log if r.method == "GET" and "/resolve/" in r.path
                and r.path.endswith(suffix)]

    def bytes_sent(self) -> int:
        return sum(r.sent for r in self.file_gets())

    # ---- request handling ---------------------------------------------------------------
    def _send_json(self, h, status, body, headers=None):
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)

    def _error(self, h, status, code, message):
        self._send_json(h, status, {"error": message}, {"X-Error-Code": code})

    def _allowed(self, h, repo: FakeRepo) -> bool:
        return not repo.gated or h.headers.get("authorization") == f"Bearer {self.token}"

    def _handle(self, h, head=False):
        path = unquote(urlparse(h.path).path)
        entry = LoggedRequest(h.command, path, dict(h.headers))
        self.log.append(entry)
        m = re.match(r"^/api/models/([^/]+/[^/]+)(?:/(revision|tree|refs|paths-info)(?:/([^/]+))?)?/?$", path)
        if m:
            return self._api(h, m.group(1), m.group(2), m.group(3))
        m = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
        if m:
            return self._resolve(h, entry, m.group(1), m.group(2), m.group(3), head)
        self._error(h, 404, "EntryNotFound", "no such route")

    def _api(self, h, repo_id, kind, rev):
        repo = self.repos.get(repo_id)
        if repo is None:
            return self._error(h, 404, "RepoNotFound", f"Repository Not Found for url: {repo_id}")
        if not self._allowed(h, repo):
            return self._error(h, 401, "GatedRepo", f"Access to model {repo_id} is restricted")
        if rev not in (None, "main", repo.sha):
            return self._error(h, 404, "RevisionNotFound", f"Invalid rev id: {rev}")
        if kind == "refs":
            return self._send_json(h, 200, {"branches": [{"name": "main", "ref": "refs/heads/main",
                                                          "targetCommit": repo.sha}],
                                            "tags": [], "converts": []})
        if kind in ("tree", "paths-info"):
            entries, dirs = [], set()
            for p, f in sorted(repo.files.items()):
                parts = p.split("/")[:-1]
                for i in range(len(parts)):
                    dirs.add("/".join(parts[:i + 1]))
                entries.append({"type": "file", "path": p, "size": f.size,
                                "oid": hashlib.sha1(f.sha256.encode()).hexdigest(),
                                "lfs": {"oid": f.sha256, "size": f.size, "pointerSize": 134}})
            entries += [{"type": "directory", "path": d, "oid": "0" * 40, "size": 0} for d in sorted(dirs)]
            return self._send_json(h, 200, entries)
        return self._send_json(h, 200, {
            "id": repo_id, "modelId": repo_id, "sha": repo.sha, "gated": repo.gated and "manual",
            "private": False, "disabled": False, "downloads": 0, "likes": 0, "tags": ["gguf"],
            "siblings": [{"rfilename": p} for p in sorted(repo.files)],
            "cardData": {"license": repo.license} if repo.license else {},
            "lastModified": "2025-01-01T00:00:00.000Z", "createdAt": "2025-01-01T00:00:00.000Z"})

    def _resolve(self, h, entry, repo_id, rev, file_path, head):
        repo = self.repos.get(repo_id)
        if repo is None:
            return self._error(h, 404, "RepoNotFound", "Repository not found")
        if not self._allowed(h, repo):
            return self._error(h, 401, "GatedRepo", "Access restricted")
        f = repo.files.get(file_path)
        if f is None:
            return self._error(h, 404, "EntryNotFound", "Entry not found")
        body = f.body()
        start = 0
        rng = h.headers.get("range")
        if rng:
            start = int(re.match(r"bytes=(\d+)-", rng).group(1))
            if start >= len(body):
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{len(body)}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
        h.send_response(206 if rng else 200)
        h.send_header("ETag", f'"{f.sha256}"')
        h.send_header("X-Repo-Commit", repo.sha)
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("Content-Length", str(len(body) - start))
        if rng:
            h.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        h.end_headers()
        if head:
            return
        view = memoryview(body)[start:]
        step = 64 * 1024
        drop, self.drop_after = self.drop_after, None
        try:
            for i in range(0, len(view), step):
                if drop is not None and entry.sent >= drop:
                    h.close_connection = True
                    h.connection.shutdown(2)
                    return
                h.wfile.write(view[i:i + step])
                entry.sent += len(view[i:i + step])
                if self.throttle:
                    time.sleep(self.throttle)
        except (BrokenPipeError, ConnectionResetError):
            pass
