"""Resumable, verified downloads into the Hugging Face cache.

Unlike huggingface_hub (which deletes a partial file when a download fails), a partial download
stays as `blobs/<sha256>.incomplete` and a re-run continues from its last byte with a ranged GET.
The partial is named by the expected sha256, so bytes of one file never continue another. Every
file's sha256 is checked against the Hub's LFS hash before it becomes a blob.
"""

from __future__ import annotations

import errno
import hashlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import quote

import httpx

from localgw.errors import HubError
from localgw.hub.cache import blob_path, link_snapshot, partial_path, snapshot_path, write_ref
from localgw.hub.select import RepoFile

CHUNK = 1 << 20
RETRIES = 6
DISK_MARGIN = 64 << 20


@dataclass
class Job:
    repo: str
    commit: str
    file: RepoFile


def _hash_prefix(path: Path) -> "hashlib._Hash":
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            h.update(block)
    return h


def check_job(cache: Path, job: Job) -> None:
    """Refuse (HubError) a job whose blob or snapshot link would not be a path in its repo."""
    if not job.file.sha256:
        raise HubError(f"{job.repo}/{job.file.path} has no LFS sha256 on the Hub: cannot verify it")
    blob_path(cache, job.repo, job.file.sha256)
    snapshot_path(cache, job.repo, job.commit, job.file.path)


def already_have(cache: Path, job: Job) -> bool:
    if not job.file.sha256:
        return False
    blob = blob_path(cache, job.repo, job.file.sha256)
    return blob.is_file() and blob.stat().st_size == job.file.size


def check_disk(cache: Path, jobs: list[Job]) -> None:
    need = 0
    for job in jobs:
        if already_have(cache, job):
            continue
        partial = partial_path(cache, job.repo, job.file.sha256)
        have = partial.stat().st_size if partial.exists() else 0
        need += max(job.file.size - have, 0)
    cache.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(cache).free
    if need + DISK_MARGIN > free:
        raise HubError(f"not enough disk space in {cache}: the download needs {need / 1e9:.2f} GB, "
                       f"{free / 1e9:.2f} GB are free", code="disk_full")


class Downloader:
    def __init__(self, endpoint: str, headers: dict[str, str], cache: Path,
                 on_bytes: Callable[[int], None] = lambda n: None, sleep=time.sleep):
        self.endpoint = endpoint.rstrip("/")
        self.headers = headers
        self.cache = cache
        self.on_bytes = on_bytes
        self.sleep = sleep

    def fetch(self, job: Job) -> Path:
        """Download one file (or find it cached), verify it, link it into the snapshot."""
        f = job.file
        check_job(self.cache, job)
        blob = blob_path(self.cache, job.repo, f.sha256)
        if not already_have(self.cache, job):
            blob.parent.mkdir(parents=True, exist_ok=True)
            self._download(job, blob)
        return link_snapshot(self.cache, job.repo, job.commit, f.path, f.sha256)

    def _download(self, job: Job, blob: Path) -> None:
        f = job.file
        partial = partial_path(self.cache, job.repo, f.sha256)
        url = f"{self.endpoint}/{job.repo}/resolve/{job.commit}/{quote(f.path)}"
        digest = _Digest()  # hashed while writing: no second read of a 5 GB file at the end
        problem: Exception | None = None
        for attempt in range(RETRIES):
            try:
                if self._attempt(url, partial, f, digest):
                    break
                problem = _Retryable("the connection ended early")
            except (httpx.TransportError, _Retryable) as exc:
                problem = exc
            if attempt == RETRIES - 1:
                raise HubError(f"download of {f.path} keeps failing ({problem}); re-run to resume "
                               "from the bytes already on disk")
            self.sleep(min(0.5 * 2 ** attempt, 10))
        actual = digest.of(partial)
        if actual != f.sha256:
            partial.unlink(missing_ok=True)
            raise HubError(f"sha256 mismatch for {job.repo}/{f.path}: expected {f.sha256}, got "
                           f"{actual}; the file was discarded and nothing was registered",
                           code="checksum_mismatch")
        partial.replace(blob)

    def _attempt(self, url: str, partial: Path, f: RepoFile, digest: "_Digest") -> bool:
        """One GET from where the partial file ends. True when the file is complete."""
        have = partial.stat().st_size if partial.exists() else 0
        if have > f.size:  # not a prefix of this file: start again
            partial.unlink()
            have = 0
        if have == f.size:
            return True
        headers = dict(self.headers)
        if have:
            headers["Range"] = f"bytes={have}-"
        with httpx.stream("GET", url, headers=headers, follow_redirects=True,
                          timeout=httpx.Timeout(30, read=60)) as resp:
            if resp.status_code in (401, 403):
                raise HubError(f"the Hub refused {f.path} ({resp.status_code}): a gated repo "
                               "needs HF_TOKEN with access", code="gated_repo")
            if resp.status_code == 404:
                raise HubError(f"{f.path} is gone from the Hub (404)", code="entry_not_found")
            if resp.status_code == 416:
                partial.unlink(missing_ok=True)
                raise _Retryable("range not satisfiable; starting over")
            if resp.status_code >= 500 or resp.status_code == 429:
                raise _Retryable(f"HTTP {resp.status_code}")
            if resp.status_code == 206:
                start = int(resp.headers.get("content-range", "bytes 0-").split()[1].split("-")[0])
                if start != have:
                    raise _Retryable(f"server resumed at {start}, not {have}")
                mode = "ab"
            elif resp.status_code == 200:
                mode, have = "wb", 0  # the server ignored Range: the partial is rewritten
            else:
                raise HubError(f"unexpected HTTP {resp.status_code} downloading {f.path}")
            digest.start_at(partial, have)
            try:
                with open(partial, mode) as out:
                    for block in resp.iter_bytes(CHUNK):
                        out.write(block)
                        digest.update(block)
                        self.on_bytes(len(block))
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise HubError(f"disk full while writing {partial}; free some space and re-run "
                                   "`localgw pull` to resume", code="disk_full") from None
                raise
        return partial.stat().st_size >= f.size


class _Retryable(Exception):
    pass


class _Digest:
    """sha256 of the partial file, kept up to date as bytes are appended."""

    def __init__(self):
        self.hasher, self.length = hashlib.sha256(), 0

    def start_at(self, partial: Path, offset: int) -> None:
        if offset == 0:
            self.hasher, self.length = hashlib.sha256(), 0
        elif offset != self.length:  # bytes from an earlier run: hash them once
            self.hasher, self.length = _hash_prefix(partial), offset

    def update(self, block: bytes) -> None:
        self.hasher.update(block)
        self.length += len(block)

    def of(self, partial: Path) -> str:
        if self.length != partial.stat().st_size:  # e.g. complete from an earlier run
            self.hasher, self.length = _hash_prefix(partial), partial.stat().st_size
        return self.hasher.hexdigest()


def download_all(endpoint: str, headers: dict[str, str], cache: Path, jobs: list[Job],
                 revision: str, on_bytes: Callable[[int], None] = lambda n: None) -> list[Path]:
    for job in jobs:  # every name is checked before the first byte is written
        check_job(cache, job)
    check_disk(cache, jobs)
    downloader = Downloader(endpoint, headers, cache, on_bytes)
    paths = [downloader.fetch(job) for job in jobs]
    if jobs:
        write_ref(cache, jobs[0].repo, revision, jobs[0].commit)
    return paths
