"""Pick GGUF files out of a repo listing. Pure functions over (path, size, sha256) entries."""

from __future__ import annotations

import re
from dataclasses import dataclass

from localgw.errors import HubError

DEFAULT_QUANT = "Q4_K_M"
FALLBACK_QUANTS = ["Q4_K_S", "Q5_K_M", "Q6_K", "Q8_0"]
DECOY_PREFIXES = ("mmproj", "imatrix", "mtp-", "eagle3-", "dflash-", "dspark-")

_SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
_BYTE_SPLIT = re.compile(r"\.gguf\.part\d+of\d+$", re.IGNORECASE)
_QUANT_TOKEN = re.compile(
    r"(?:^|[-._/])((?:UD-)?(?:I?Q\d(?:_[A-Z0-9]+)*|BF16|F16|F32|MXFP4(?:_MOE)?|TQ\d_\d))(?=$|[-._/])",
    re.IGNORECASE)


@dataclass(frozen=True)
class RepoFile:
    path: str
    size: int
    sha256: str | None


@dataclass
class Selection:
    files: list[RepoFile]  # the first is what llama.cpp opens
    quant: str | None

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def _base(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def is_decoy(path: str) -> bool:
    name = _base(path).lower()
    return name.startswith(DECOY_PREFIXES) or "mmproj" in name or "imatrix" in name


def model_files(listing: list[RepoFile]) -> list[RepoFile]:
    return [f for f in listing if f.path.lower().endswith(".gguf") and not is_decoy(f.path)]


def quant_of(path: str) -> str | None:
    """The quant tag in a file name, upper case (`…-q4_k_m-00001-of-00002.gguf` → Q4_K_M)."""
    stem = _SHARD.sub(".gguf", path)
    found = _QUANT_TOKEN.findall(stem[:-5] if stem.lower().endswith(".gguf") else stem)
    return found[-1].upper() if found else None


def available_quants(listing: list[RepoFile]) -> list[str]:
    return sorted({q for f in model_files(listing) if (q := quant_of(f.path))})


def matches_quant(path: str, quant: str) -> bool:
    pattern = r"(?:^|[-._/])" + re.escape(quant) + r"(?=$|[-._/])"
    return re.search(pattern, _SHARD.sub(".gguf", path), re.IGNORECASE) is not None


def _sets(files: list[RepoFile]) -> list[list[RepoFile]]:
    """Group shards into complete sets; incomplete sets are refused, not half-pulled."""
    singles, shards = [], {}
    for f in files:
        m = _SHARD.search(f.path)
        if m is None:
            singles.append([f])
        else:
            shards.setdefault((f.path[:m.start()], int(m.group(2))), {})[int(m.group(1))] = f
    out = singles
    for (prefix, total), parts in sorted(shards.items()):
        if sorted(parts) != list(range(1, total + 1)):
            missing = sorted(set(range(1, total + 1)) - set(parts))
            raise HubError(f"split set {prefix}-*-of-{total:05d}.gguf is incomplete on the Hub "
                           f"(missing part {', '.join(map(str, missing))})")
        out.append([parts[i] for i in range(1, total + 1)])
    return out


def select_quant(listing: list[RepoFile], quant: str) -> Selection | None:
    """The files of `quant` in a listing: a single file if there is one, else a complete split set."""
    byte_split = [f for f in listing if _BYTE_SPLIT.search(f.path) and matches_quant(
        f.path.rsplit(".gguf", 1)[0] + ".gguf", quant)]
    candidates = [f for f in model_files(listing) if matches_quant(f.path, quant)]
    if not candidates and byte_split:
        raise HubError(f"{quant} is only published as byte-split parts ({_base(byte_split[0].path)}, …) "
                       "that must be concatenated by hand; pick another quant or repo")
    if not candidates:
        return None
    sets = _sets(candidates)
    sets.sort(key=lambda s: (len(s), len(s[0].path), s[0].path))  # single file first
    return Selection(sets[0], quant.upper())


def select_file(listing: list[RepoFile], filename: str) -> Selection | None:
    """A named file (`REPO:file.gguf`): exact path or base name; a shard brings its whole set."""
    wanted = filename.lower()
    matches = [f for f in listing if f.path.lower() == wanted or _base(f.path).lower() == wanted]
    if not matches:
        return None
    f = matches[0]
    if _SHARD.search(f.path):
        prefix = f.path[:_SHARD.search(f.path).start()]
        for group in _sets([g for g in listing if g.path.startswith(prefix) and _SHARD.search(g.path)]):
            if f in group:
                return Selection(group, quant_of(f.path))
    return Selection([f], quant_of(f.path))
