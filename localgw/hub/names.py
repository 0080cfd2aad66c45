"""What the Hub may name: repo ids, revisions, commits, sha256 values and file paths.

Each of these becomes part of a path in the cache (`models--org--name/snapshots/<commit>/<path>`,
`blobs/<sha256>`, `refs/<revision>`), so a listing from a broken or hostile mirror is checked
before anything is written: a file name with a `..` segment would otherwise write outside it.
"""

from __future__ import annotations

import re

from localgw.errors import HubError, InvalidRequest

REPO_ID = re.compile(r"[A-Za-z0-9][\w.\-]*/[\w.\-]+")
COMMIT = re.compile(r"[0-9a-f]{40}")
SHA256 = re.compile(r"[0-9a-f]{64}")


def path_problem(path) -> str | None:
    """Why `path` is not a relative POSIX path that stays where it is put; None when it is."""
    if not isinstance(path, str) or not path:
        return "is empty"
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        return "has a control character"
    if "\\" in path:
        return "has a backslash"
    if path.startswith("/"):
        return "is an absolute path"
    if any(part in ("", ".", "..") for part in path.split("/")):
        return "has an empty, '.' or '..' segment"
    return None


def repo_id_problem(repo) -> str | None:
    """Why `repo` is not an `org/name` id (Hugging Face's rules: no `--` or `..` either)."""
    if not isinstance(repo, str) or not REPO_ID.fullmatch(repo):
        return "is not of the form org/name"
    if "--" in repo or ".." in repo:
        return "has '--' or '..'"
    return None


def check_revision(revision: str | None) -> str | None:
    """A branch, tag or commit: a relative path under `refs/` (branches may hold a '/')."""
    if revision is not None and (problem := path_problem(revision)):
        raise InvalidRequest(f"revision {revision!r} {problem}", param="revision")
    return revision


def is_commit(value) -> bool:
    return isinstance(value, str) and COMMIT.fullmatch(value) is not None


def is_sha256(value) -> bool:
    return isinstance(value, str) and SHA256.fullmatch(value) is not None


def _bad(repo: str, entry: str, why: str) -> HubError:
    return HubError(f"the Hub's listing of {repo} is unusable: {entry} {why}; nothing was written",
                    code="bad_listing")


def check_commit(repo: str, commit) -> str:
    """The commit the Hub names a snapshot by: 40 lower-case hex digits, or a HubError."""
    if not is_commit(commit):
        raise _bad(repo, f"commit {commit!r}", "is not 40 lower-case hex digits")
    return commit


def check_files(repo: str, files) -> None:
    """Refuse a listing whose paths, sizes or sha256 values cannot be trusted in the cache.

    `files` are RepoFile entries; a missing sha256 is allowed here (the download refuses it).
    """
    paths = {f.path for f in files}
    for f in files:
        if problem := path_problem(f.path):
            raise _bad(repo, f"file {f.path!r}", problem)
        if f.sha256 is not None and not is_sha256(f.sha256):
            raise _bad(repo, f"sha256 {f.sha256!r} of {f.path!r}", "is not 64 lower-case hex digits")
        if not isinstance(f.size, int) or isinstance(f.size, bool) or f.size < 0:
            raise _bad(repo, f"size {f.size!r} of {f.path!r}", "is not a byte count")
        parts = f.path.split("/")
        if any("/".join(parts[:i]) in paths for i in range(1, len(parts))):
            raise _bad(repo, f"file {f.path!r}", "lies under another listed file")
