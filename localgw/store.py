"""The model store: one JSON manifest per registered model under `$LOCALGW_HOME/models`."""

from __future__ import annotations

import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel

from localgw import config
from localgw.chat.families import template_traits
from localgw.errors import StoreError
from localgw.gguf import GGUFInfo, read_gguf, split_siblings


class ModelFile(BaseModel):
    path: str
    size: int
    sha256: str | None = None


class Manifest(BaseModel):
    """A registered model. `files[0]` is what llama.cpp opens (the first shard of a split set)."""

    id: str
    source: str  # "import" or "hub"
    files: list[ModelFile]
    quantization: str | None = None
    architecture: str | None = None
    parameters: int | None = None
    context_length: int | None = None
    license: str | None = None
    template_family: str = "none"
    supports_tools: bool = False
    supports_reasoning: bool = False
    repo: str | None = None
    commit: str | None = None
    hugging_face_id: str | None = None
    created_at: str = ""
    # the original repo's generation_config.json, captured at pull time (sampling defaults)
    generation_config: dict | None = None

    @property
    def path(self) -> str:
        return self.files[0].path

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def manifest_from_gguf(model_id: str, info: GGUFInfo, files: list[ModelFile], **extra) -> Manifest:
    """Build a manifest from a file's GGUF metadata."""
    traits = template_traits(info.chat_template)
    return Manifest(id=model_id, files=files, quantization=info.quantization,
                    architecture=info.architecture, parameters=info.n_params,
                    context_length=info.context_length, license=info.license,
                    template_family=traits.family, supports_tools=traits.supports_tools,
                    supports_reasoning=traits.supports_reasoning, created_at=now_iso(), **extra)


def default_id_for_path(path: Path) -> str:
    """A file served or imported by path is known by its stem (without the shard suffix)."""
    name = path.name
    for shard_suffix in ("-00001-of-",):
        if shard_suffix in name:
            return name[:name.index(shard_suffix)]
    return path.stem


def atomic_write(path: Path, data: str) -> None:
    """Write a file so that readers see the old or the new content, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ModelStore:
    """Manifests on disk. Thread-safe enough for one user: each write is atomic."""

    def __init__(self, root: Path | None = None):
        self.root = (root or config.home()) / "models"

    def _file(self, model_id: str) -> Path:
        if not model_id or model_id.startswith(".") or "\\" in model_id or ".." in model_id:
            raise StoreError(f"invalid model id {model_id!r}")
        return self.root / (model_id.replace("/", "__") + ".json")

    def has(self, model_id: str) -> bool:
        try:
            return self._file(model_id).exists()
        except (StoreError, OSError, ValueError):  # not a valid id (or a NUL in it): no such model
            return False

    def get(self, model_id: str) -> Manifest | None:
        path = self._file(model_id)
        if not path.exists():
            return None
        return Manifest.model_validate_json(path.read_text(encoding="utf-8"))

    def require(self, model_id: str) -> Manifest:
        manifest = self.get(model_id)
        if manifest is None:
            raise StoreError(f"no model {model_id!r} in the store; `localgw list` shows what is there",
                             code="model_not_found")
        return manifest

    def list(self) -> list[Manifest]:
        if not self.root.exists():
            return []
        out = []
        for path in sorted(self.root.glob("*.json")):
            try:
                out.append(Manifest.model_validate_json(path.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                continue  # a foreign or damaged file never hides the rest
        return out

    def save(self, manifest: Manifest) -> None:
        atomic_write(self._file(manifest.id), manifest.model_dump_json(indent=2))

    def remove(self, model_id: str) -> Manifest:
        manifest = self.require(model_id)
        self._file(model_id).unlink()
        return manifest

    def import_file(self, path: str | Path, model_id: str | None = None) -> Manifest:
        """Register a local GGUF file (or split set, by its first shard) without copying it."""
        path = Path(os.path.abspath(Path(path).expanduser()))
        if not path.is_file():
            raise StoreError(f"{path}: no such file")
        if path.suffix.lower() != ".gguf":
            raise StoreError(f"{path}: not a .gguf file")
        info = read_gguf(path)
        shards = split_siblings(path) if info.split_count > 1 else [path]
        if shards[0] != path:
            raise StoreError(f"{path}: import the first shard of a split set ({shards[0].name})")
        model_id = model_id or default_id_for_path(path)
        self._file(model_id)  # validates the id
        files = [ModelFile(path=str(p), size=p.stat().st_size) for p in shards]
        manifest = manifest_from_gguf(model_id, info, files, source="import")
        self.save(manifest)
        return manifest
