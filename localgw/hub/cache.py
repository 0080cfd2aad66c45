"""The standard Hugging Face cache layout, shared with llama.cpp `-hf` and every HF tool.

    $HF_HUB_CACHE/models--org--name/blobs/<sha256>
                                   /snapshots/<commit>/<path> -> ../../blobs/<sha256>
                                   /refs/main  (the commit)

Every path helper refuses a name that is not what the layout holds (see names.py) and a path that
would lie outside the repo's folder, as written or with links followed: the listing is checked
before a download starts, and these checks hold whatever the caller passes.
"""

from __future__ import annotations

import os
from pathlib import Path

from localgw.errors import HubError
from localgw.hub.names import is_commit, is_sha256, path_problem, repo_id_problem
from localgw.hub.resolve import RepoListing
from localgw.hub.select import RepoFile
from localgw.store import atomic_write


def _refuse(what: str) -> HubError:
    return HubError(f"refusing a cache path: {what}", code="unsafe_path")


def _inside(base: Path, path: Path) -> Path:
    """`path`, refused unless it lies below `base` both as written and with links resolved."""
    lexical = os.path.normpath(path)
    real = os.path.realpath(path.parent)
    real_base = os.path.realpath(base)
    if not (lexical.startswith(os.path.normpath(base) + os.sep)
            and (real == real_base or real.startswith(real_base + os.sep))):
        raise _refuse(f"{str(path)!r} is not inside {str(base)!r}")
    return path


def repo_dir(cache: Path, repo: str) -> Path:
    if problem := repo_id_problem(repo):
        raise _refuse(f"repo id {repo!r} {problem}")
    return cache / ("models--" + repo.replace("/", "--"))


def blob_path(cache: Path, repo: str, sha256: str) -> Path:
    if not is_sha256(sha256):
        raise _refuse(f"blob name {sha256!r} is not a sha256")
    base = repo_dir(cache, repo)
    return _inside(base, base / "blobs" / sha256)


def partial_path(cache: Path, repo: str, sha256: str) -> Path:
    """Where the blob's bytes gather while they download."""
    blob = blob_path(cache, repo, sha256)
    return blob.with_name(blob.name + ".incomplete")


def snapshot_path(cache: Path, repo: str, commit: str, path: str) -> Path:
    if not is_commit(commit):
        raise _refuse(f"commit {commit!r} is not 40 hex digits")
    if problem := path_problem(path):
        raise _refuse(f"file {path!r} {problem}")
    base = repo_dir(cache, repo)
    return _inside(base, base / "snapshots" / commit / path)


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
    if problem := path_problem(revision):
        raise _refuse(f"revision {revision!r} {problem}")
    if not is_commit(commit):
        raise _refuse(f"commit {commit!r} is not 40 hex digits")
    base = repo_dir(cache, repo)
    atomic_write(_inside(base, base / "refs" / revision), commit)


def cached_fetcher(cache: Path, revision: str | None):
    """`fetch(repo)` over the local cache only (HF_HUB_OFFLINE=1)."""

    def fetch(repo: str) -> RepoListing | None:
        base = repo_dir(cache, repo)
        ref = base / "refs" / (revision or "main")
        commit = ref.read_text().strip() if ref.is_file() else revision
        if not is_commit(commit) or not (snap := base / "snapshots" / commit).is_dir():
            return None
        files = []
        for path in sorted(snap.rglob("*")):
            if path.is_symlink() and path.exists():
                blob = Path(os.path.realpath(path))
                sha256 = blob.name if is_sha256(blob.name) else None  # small files: a git sha1
                files.append(RepoFile(path.relative_to(snap).as_posix(), blob.stat().st_size, sha256))
        return RepoListing(repo, commit, files)

    return fetch
