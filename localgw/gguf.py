"""Read GGUF metadata (key/values and tensor shapes) without loading the weights.

Pure Python over `mmap`: a 5 GB file costs a few page faults, not a load.
Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
"""

from __future__ import annotations

import mmap
from functools import lru_cache
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from localgw.errors import StoreError

GGUF_MAGIC = b"GGUF"

# value type id -> (struct format, size) for fixed-size scalars
_SCALARS = {0: ("<B", 1), 1: ("<b", 1), 2: ("<H", 2), 3: ("<h", 2), 4: ("<I", 4), 5: ("<i", 4),
            6: ("<f", 4), 7: ("<?", 1), 10: ("<Q", 8), 11: ("<q", 8), 12: ("<d", 8)}
_STRING, _ARRAY = 8, 9

# llama_ftype (general.file_type) -> quantization name
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
    29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0",
    38: "MXFP4_MOE",
}

# String arrays we keep (the vocabulary, for BOS/EOS text); others are skipped.
_KEEP_STRING_ARRAYS = {"tokenizer.ggml.tokens"}
# Numeric arrays longer than this are skipped (scores, token types).
_MAX_NUMERIC_ARRAY = 64

SPLIT_RE = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)


@dataclass
class GGUFInfo:
    """What localgw needs to know about a GGUF file (or a complete split set)."""

    path: str
    version: int
    metadata: dict = field(repr=False)
    n_tensors: int = 0
    n_params: int = 0
    tensor_bytes: int = 0  # bytes of tensor data (weights), summed over shards

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", "unknown"))

    @property
    def name(self) -> str | None:
        return self.metadata.get("general.name")

    @property
    def context_length(self) -> int | None:
        value = self.metadata.get(f"{self.architecture}.context_length")
        return int(value) if value is not None else None

    @property
    def n_layers(self) -> int | None:
        value = self.metadata.get(f"{self.architecture}.block_count")
        return int(value) if value is not None else None

    @property
    def quantization(self) -> str | None:
        file_type = self.metadata.get("general.file_type")
        if file_type is None:
            return None
        return FILE_TYPES.get(int(file_type), f"type{file_type}")

    @property
    def chat_template(self) -> str | None:
        return self.metadata.get("tokenizer.chat_template")

    @property
    def license(self) -> str | None:
        return self.metadata.get("general.license") or self.metadata.get("general.license.name")

    @property
    def split_count(self) -> int:
        return int(self.metadata.get("split.count", 1) or 1)

    def token_text(self, key: str) -> str | None:
        """Text of a special token named by `tokenizer.ggml.<key>_token_id`, e.g. 'bos'."""
        token_id = self.metadata.get(f"tokenizer.ggml.{key}_token_id")
        tokens = self.metadata.get("tokenizer.ggml.tokens")
        if token_id is None or not tokens or not 0 <= int(token_id) < len(tokens):
            return None
        return tokens[int(token_id)]

    def summary(self) -> dict:
        return {"architecture": self.architecture, "name": self.name,
                "parameters": self.n_params, "context_length": self.context_length,
                "layers": self.n_layers, "quantization": self.quantization,
                "license": self.license, "size_bytes": self.tensor_bytes}


class _Cursor:
    def __init__(self, buf, path: str):
        self.buf, self.pos, self.path = buf, 0, path

    def _need(self, n: int) -> None:
        if self.pos + n > len(self.buf):
            raise StoreError(f"{self.path}: truncated GGUF file (header ends early)")

    def scalar(self, type_id: int):
        fmt, size = _SCALARS[type_id]
        self._need(size)
        value = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += size
        return value

    def u32(self) -> int:
        return self.scalar(4)

    def u64(self) -> int:
        return self.scalar(10)

    def string(self) -> str:
        n = self.u64()
        self._need(n)
        raw = self.buf[self.pos:self.pos + n]
        self.pos += n
        return bytes(raw).decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        n = self.u64()
        self._need(n)
        self.pos += n

    def value(self, type_id: int, key: str):
        if type_id in _SCALARS:
            return self.scalar(type_id)
        if type_id == _STRING:
            return self.string()
        if type_id == _ARRAY:
            item_type, count = self.u32(), self.u64()
            if item_type == _STRING:
                if key in _KEEP_STRING_ARRAYS:
                    return [self.string() for _ in range(count)]
                for _ in range(count):
                    self.skip_string()
                return None
            if item_type in _SCALARS:
                size = _SCALARS[item_type][1]
                if count > _MAX_NUMERIC_ARRAY:
                    self._need(size * count)
                    self.pos += size * count
                    return None
                return [self.scalar(item_type) for _ in range(count)]
            raise StoreError(f"{self.path}: unsupported nested GGUF array in {key!r}")
        raise StoreError(f"{self.path}: unknown GGUF value type {type_id} for {key!r}")


# ggml type id -> (block size in elements, bytes per block); for tensor byte counts.
_GGML_BLOCKS = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24),
                8: (32, 34), 9: (32, 36), 10: (256, 84), 11: (256, 110), 12: (256, 144),
                13: (256, 176), 14: (256, 210), 15: (256, 292), 16: (256, 66), 17: (256, 74),
                18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110), 22: (256, 82),
                23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8),
                29: (256, 56), 30: (1, 2), 34: (256, 54), 35: (256, 66), 39: (32, 17)}


def _read_one(path: Path) -> tuple[int, dict, int, int, int]:
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, 2)
            if size < 24:
                raise StoreError(f"{path}: not a GGUF file (too small)")
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                if buf[:4] != GGUF_MAGIC:
                    raise StoreError(f"{path}: not a GGUF file (bad magic)")
                cur = _Cursor(buf, str(path))
                cur.pos = 4
                version = cur.u32()
                if version < 2:
                    raise StoreError(f"{path}: GGUF version {version} is too old")
                n_tensors, n_kv = cur.u64(), cur.u64()
                meta: dict = {}
                for _ in range(n_kv):
                    key = cur.string()
                    meta[key] = cur.value(cur.u32(), key)
                n_params = n_bytes = 0
                for _ in range(n_tensors):
                    cur.skip_string()
                    dims = [cur.u64() for _ in range(cur.u32())]
                    ggml_type = cur.u32()
                    cur.u64()  # offset
                    count = 1
                    for d in dims:
                        count *= d
                    n_params += count
                    block, block_bytes = _GGML_BLOCKS.get(ggml_type, (1, 1))
                    n_bytes += count // block * block_bytes
                return version, meta, n_tensors, n_params, n_bytes
    except OSError as exc:
        raise StoreError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except (ValueError, struct.error) as exc:
        raise StoreError(f"{path}: corrupt GGUF header ({exc})") from exc


def split_siblings(path: Path) -> list[Path]:
    """All shards of a `-00001-of-0000N.gguf` set (the path itself when not split)."""
    m = SPLIT_RE.search(path.name)
    if not m:
        return [path]
    total = int(m.group(2))
    stem = path.name[:m.start()]
    return [path.with_name(f"{stem}-{i:05d}-of-{total:05d}.gguf") for i in range(1, total + 1)]


def read_gguf(path: str | Path) -> GGUFInfo:
    """Metadata of a GGUF file; for the first shard of a split set, tensors of all shards.

    Cached per file version: the server reads a model's header at start, to plan its memory
    and to describe it, and a large vocabulary takes a few hundred milliseconds to walk.
    """
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as exc:
        raise StoreError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    return _read_gguf(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=32)
def _read_gguf(path_text: str, mtime_ns: int, size: int) -> GGUFInfo:
    path = Path(path_text)
    version, meta, n_tensors, n_params, n_bytes = _read_one(path)
    info = GGUFInfo(str(path), version, meta, n_tensors, n_params, n_bytes)
    if info.split_count > 1:
        for shard in split_siblings(path)[1:]:
            if not shard.exists():
                raise StoreError(f"{path}: split set is incomplete, missing {shard.name}")
            _, _, t, p, b = _read_one(shard)
            info.n_tensors += t
            info.n_params += p
            info.tensor_bytes += b
    return info
