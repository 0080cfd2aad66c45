"""REF → the GGUF file(s) to pull: catalogue, then naming rules, then REF itself."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from localgw.errors import HubError, InvalidRequest
from localgw.catalog import catalog_entry, naming_rule_repos
from localgw.hub.names import check_commit, check_files, repo_id_problem
from localgw.hub.select import (DEFAULT_QUANT, FALLBACK_QUANTS, RepoFile, Selection,
                                available_quants, model_files, select_file, select_quant)

_PREFIXES = ("https://huggingface.co/", "http://huggingface.co/", "huggingface.co/", "hf.co/")


@dataclass(frozen=True)
class PullRef:
    ident: str                 # org/name: an original model id or a GGUF repo
    quant: str | None = None
    filename: str | None = None

    @property
    def is_gguf_repo(self) -> bool:
        return "gguf" in self.ident.lower().rsplit("/", 1)[-1]

    @property
    def model_id(self) -> str:
        """The id the model is registered under: the catalogue's spelling, else the ident."""
        entry = catalog_entry(self.ident)
        return entry.id if entry else self.ident

    def candidates(self) -> list[str]:
        entry = catalog_entry(self.ident)
        if entry:
            return list(entry.repos)
        if self.is_gguf_repo:
            return [self.ident]
        return naming_rule_repos(self.ident) + [self.ident]


def parse_ref(ref: str, quant: str | None = None) -> PullRef:
    """`[hf.co/]org/name[:QUANT|:file.gguf]`; `--quant` is the same as the tag."""
    text = ref.strip()
    for prefix in _PREFIXES:
        if text.lower().startswith(prefix):
            text = text[len(prefix):]
            break
    text = text.strip("/")
    tag = None
    if ":" in text:
        text, tag = text.split(":", 1)
    if repo_id_problem(text):
        raise InvalidRequest(f"{ref!r} is not a Hugging Face model id (expected org/name, e.g. "
                             "Qwen/Qwen2.5-7B-Instruct or bartowski/Qwen2.5-7B-Instruct-GGUF:Q5_K_M)")
    if tag and quant and tag.lower() != quant.lower():
        raise InvalidRequest(f"{ref!r} names {tag} but --quant says {quant}; give one")
    tag = tag or quant
    if tag and tag.lower().endswith(".gguf"):
        return PullRef(text, filename=tag)
    return PullRef(text, quant=tag.upper() if tag else None)


@dataclass
class RepoListing:
    repo: str
    commit: str
    files: list[RepoFile]
    license: str | None = None


@dataclass
class Resolved:
    ref: PullRef
    listing: RepoListing
    selection: Selection
    tried: list[str] = field(default_factory=list)

    @property
    def model_id(self) -> str:
        return self.ref.model_id

    @property
    def hugging_face_id(self) -> str:
        return self.ref.model_id


class Lister:
    """Fetches and memoises repo listings; `None` for a repo that does not exist."""

    def __init__(self, fetch):
        self.fetch, self.cache, self.missing, self.gated = fetch, {}, [], []

    def __call__(self, repo: str) -> RepoListing | None:
        if repo not in self.cache:
            try:
                self.cache[repo] = self.fetch(repo)
            except GatedRepo as exc:
                self.gated.append(exc)
                self.cache[repo] = None
            if self.cache[repo] is None:
                self.missing.append(repo)
        return self.cache[repo]


class GatedRepo(HubError):
    status = 403


def resolve(ref: PullRef, fetch) -> Resolved:
    """Choose the repo and files; `fetch(repo)` returns a RepoListing, None, or raises GatedRepo."""
    lister = Lister(fetch)
    repos = ref.candidates()
    if ref.filename:
        for repo in repos:
            listing = lister(repo)
            if listing and (sel := select_file(listing.files, ref.filename)):
                return Resolved(ref, listing, sel, lister.missing)
        _fail(ref, repos, lister, f"no file {ref.filename!r}")
    quants = [ref.quant] if ref.quant else [DEFAULT_QUANT, *FALLBACK_QUANTS]
    for quant in quants:
        for repo in repos:
            listing = lister(repo)
            if listing and (sel := select_quant(listing.files, quant)):
                return Resolved(ref, listing, sel, lister.missing)
    _fail(ref, repos, lister, f"no {ref.quant} file" if ref.quant else
          f"none of {', '.join([DEFAULT_QUANT, *FALLBACK_QUANTS])}")


def _fail(ref: PullRef, repos: list[str], lister: Lister, what: str):
    found = [lister.cache[r] for r in repos if lister.cache.get(r)]
    if not found:
        if lister.gated:
            raise lister.gated[0]
        raise HubError(f"no GGUF repo found for {ref.ident} (tried {', '.join(repos)}); "
                       "name a GGUF repo directly, e.g. someone/Model-GGUF", code="repo_not_found")
    with_gguf = [l for l in found if model_files(l.files)]
    if not with_gguf:
        raise HubError(f"no GGUF files for {ref.ident} in {', '.join(l.repo for l in found)}",
                       code="no_gguf")
    offers = "; ".join(f"{l.repo}: {', '.join(available_quants(l.files)) or 'unnamed files'}"
                       for l in with_gguf)
    raise HubError(f"{what} for {ref.ident}. Available: {offers}", code="quant_not_found")


def hub_fetcher(endpoint: str | None, token: str | None, revision: str | None):
    """A `fetch(repo)` over huggingface_hub's HfApi that maps its errors to ours."""
    from huggingface_hub import HfApi
    from huggingface_hub import errors as hf_errors

    api = HfApi(endpoint=endpoint, token=token)

    def fetch(repo: str) -> RepoListing | None:
        try:
            info = api.model_info(repo, revision=revision)
            commit = check_commit(repo, info.sha)  # it names a folder: checked before any use
            entries = api.list_repo_tree(repo, revision=commit, recursive=True)
            files = [RepoFile(e.path, e.lfs.size if e.lfs else e.size,
                              e.lfs.sha256 if e.lfs else None)
                     for e in entries if hasattr(e, "size")]
        except hf_errors.GatedRepoError:
            hint = ("your HF_TOKEN has no access: accept the licence on the model page" if token
                    else "accept its licence on huggingface.co and set HF_TOKEN")
            raise GatedRepo(f"{repo} is a gated repo: {hint}", code="gated_repo") from None
        except hf_errors.RevisionNotFoundError:
            raise HubError(f"{repo} has no revision {revision!r}", code="revision_not_found") from None
        except hf_errors.RepositoryNotFoundError:
            return None
        except hf_errors.HfHubHTTPError as exc:
            raise HubError(f"the Hub answered an error for {repo}: {exc}") from None
        except (OSError, ConnectionError) as exc:
            raise HubError(f"cannot reach the Hub at {endpoint or 'https://huggingface.co'} "
                           f"({type(exc).__name__}); check the network or set HF_HUB_OFFLINE=1 "
                           "to use only what is cached") from None
        except Exception as exc:  # httpx errors are not OSErrors
            if type(exc).__module__.startswith(("httpx", "httpcore", "requests", "urllib3")):
                raise HubError(f"cannot reach the Hub at {endpoint or 'https://huggingface.co'} "
                               f"({type(exc).__name__}); check the network or set "
                               "HF_HUB_OFFLINE=1 to use only what is cached") from None
            raise
        check_files(repo, files)
        return RepoListing(repo, commit, files, _licence(info.card_data))

    return fetch


def _licence(card) -> str | None:
    """The model card's licence as one printable line (a card may list several; a bad mirror
    may send anything, and it is printed to the terminal)."""
    if card is None:
        return None
    value = getattr(card, "license", None) or (card.get("license") if hasattr(card, "get") else None)
    if isinstance(value, list):
        value = ", ".join(v for v in value if isinstance(v, str))
    if not isinstance(value, str):
        return None
    text = "".join(c for c in value if c.isprintable())[:200]
    return text or None


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
