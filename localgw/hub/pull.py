"""`localgw pull`: resolve, download, verify, register — all or nothing."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from localgw import config
from localgw.errors import HubError
from localgw.gguf import read_gguf
from localgw.hub.cache import cached_fetcher
from localgw.hub.download import Job, already_have, download_all
from localgw.hub.names import check_revision
from localgw.hub.resolve import PullRef, Resolved, hub_fetcher, offline, parse_ref, resolve
from localgw.store import Manifest, ModelFile, ModelStore, manifest_from_gguf


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_token() -> str | None:
    return os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN") or None


@dataclass
class PullPlan:
    resolved: Resolved
    to_download: int  # bytes not yet in the cache

    def describe(self) -> dict:
        r = self.resolved
        return {"id": r.model_id, "repo": r.listing.repo, "commit": r.listing.commit,
                "quantization": r.selection.quant,
                "files": [{"path": f.path, "size": f.size, "sha256": f.sha256}
                          for f in r.selection.files],
                "size": r.selection.size, "to_download": self.to_download,
                "license": r.listing.license}


def already_pulled(store: ModelStore, ref: PullRef) -> Manifest | None:
    """The registered model this ref names, when its files are all still on disk."""
    manifest = store.get(ref.model_id)
    if manifest is None or manifest.source != "hub":
        return None
    if ref.quant and (manifest.quantization or "").upper() != ref.quant:
        return None
    if ref.filename and not any(Path(f.path).name.lower() == Path(ref.filename).name.lower()
                                for f in manifest.files):
        return None
    return manifest if all(os.path.exists(f.path) for f in manifest.files) else None


def fetch_generation_config(repo: str, headers: dict[str, str]) -> dict | None:
    """The original repo's generation_config.json (the model's own sampling defaults).

    A few hundred bytes; best effort: a gated repo without a token, a repo without the file,
    or any network fault leaves it out (the catalogue or llama.cpp's defaults apply then).
    """
    import httpx

    url = f"{hub_endpoint()}/{repo}/resolve/main/generation_config.json"
    try:
        resp = httpx.get(url, headers=headers, timeout=15, follow_redirects=True)
        if resp.status_code != 200 or len(resp.content) > 64 * 1024:
            return None
        data = resp.json()
    except (httpx.HTTPError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def plan(ref: PullRef, revision: str | None = None) -> PullPlan:
    """Resolve `ref` (offline: from the cache only) and count the bytes still to download."""
    cache = config.hf_hub_cache()
    check_revision(revision)
    if offline():
        try:
            resolved = resolve(ref, cached_fetcher(cache, revision))
        except HubError:
            raise HubError(f"HF_HUB_OFFLINE=1 and {ref.ident} is not in the local cache "
                           f"({cache}); unset HF_HUB_OFFLINE to download it",
                           code="offline") from None
    else:
        resolved = resolve(ref, hub_fetcher(hub_endpoint(), hub_token(), revision))
    jobs = _jobs(resolved)
    missing = sum(j.file.size for j in jobs if not already_have(cache, j))
    return PullPlan(resolved, missing)


def _jobs(resolved: Resolved) -> list[Job]:
    return [Job(resolved.listing.repo, resolved.listing.commit, f) for f in resolved.selection.files]


def execute(p: PullPlan, store: ModelStore, revision: str | None = None,
            on_bytes: Callable[[int], None] = lambda n: None) -> Manifest:
    """Download what is missing, verify, and register. Nothing is registered on any failure."""
    r = p.resolved
    headers = {"User-Agent": "localgw"}
    if hub_token():
        headers["Authorization"] = f"Bearer {hub_token()}"
    paths = download_all(hub_endpoint(), headers, config.hf_hub_cache(), _jobs(r),
                         revision or "main", on_bytes)
    # llama.cpp finds the other shards next to the first: keep the snapshot path, never resolve()
    first = Path(os.path.abspath(paths[0]))
    info = read_gguf(first)
    files = [ModelFile(path=os.path.abspath(path), size=f.size, sha256=f.sha256)
             for path, f in zip(paths, r.selection.files)]
    manifest = manifest_from_gguf(r.model_id, info, files, source="hub", repo=r.listing.repo,
                                  commit=r.listing.commit, hugging_face_id=r.hugging_face_id)
    if r.listing.license and not manifest.license:
        manifest.license = r.listing.license
    manifest.quantization = r.selection.quant or manifest.quantization
    if not offline():
        manifest.generation_config = fetch_generation_config(r.hugging_face_id, headers)
    store.save(manifest)
    return manifest


__all__ = ["parse_ref", "plan", "execute", "already_pulled", "PullPlan"]
