"""The standard Hugging Face cache layout, shared with llama.cpp `-hf` and every HF tool.

    $HF_HUB_CACHE/models--org--name/blobs/<sha256>
                                   /snapshots/<commit>/<path> -> ../../blobs/<sha256>
                                   /refs/main  (the commit)
"""

from __future__ import annotations

import os
from pathlib import Path

from localgw.hub.resolve import RepoListing
from localgw.hub.select import RepoFile
from localgw.store import atomic_write


def repo_dir(cache: Path, repo: str) -> Path:
    return cache / ("models--" + repo.replace("/", "--"))


def blob_path(cache: Path, repo: str, sha256: str) -> Path:
    return repo_dir(cache, repo) / "blobs" / sha256


def snapshot_path(cache: Path, repo: str, commit: str, path: str) -> Path:
    return repo_dir(cache, repo) / "snapshots" / commit / path


def link_snapshot(cache: Path, repo: str, commit: str, path: str, sha256: str) -> Path:
    """Point snapshots/<commit>/<path> at the blob with a relative link, as huggingface_hub does."""
    link = snapshot_path(cache, repo, commit, path)
    link.parent.mkdir(parents=True, exist_ok=True)
    target = os.path.relpath(blob_path(cache, repo, sha256), link.parent)
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(target, link)
    return link


def write_ref(cache: Path, repo: str, revision: str, commit: str) -> None:
    atomic_write(repo_dir(cache, repo) / "refs" / revision, commit)


def cached_fetcher(cache: Path, revision: str | None):
    """`fetch(repo)` over the local cache only (HF_HUB_OFFLINE=1)."""

    def fetch(repo: str) -> RepoListing | None:
        base = repo_dir(cache, repo)
        ref = base / "refs" / (revision or "main")
        commit = ref.read_text().strip() if ref.is_file() else revision
        snap = base / "snapshots" / (commit or "")
        if not commit or not snap.is_dir():
            return None
        files = []
        for path in sorted(snap.rglob("*")):
            if path.is_symlink() and path.exists():
                blob = Path(os.path.realpath(path))
                files.append(RepoFile(path.relative_to(snap).as_posix(), blob.stat().st_size, blob.name))
        return RepoListing(repo, commit, files)

    return fetch
