"""Split a real GGUF into a `-0000i-of-0000N.gguf` set the way `llama-gguf-split` does.

Test data only: every shard is a valid GGUF; the first keeps all metadata, each carries
`split.no`, `split.count` and `split.tensors.count`, and tensor data offsets are per shard.
"""

from __future__ import annotations

import struct
from pathlib import Path

_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


class _Reader:
    def __init__(self, data: bytes):
        self.d, self.p = data, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.d, self.p)
        self.p += struct.calcsize(fmt)
        return v[0]

    def string(self):
        n = self.take("<Q")
        s = self.d[self.p:self.p + n]
        self.p += n
        return s.decode()

    def skip_value(self, t):
        if t in _SIZES:
            self.p += _SIZES[t]
        elif t == 8:
            n = self.take("<Q")
            self.p += n
        elif t == 9:
            it, n = self.take("<I"), self.take("<Q")
            for _ in range(n):
                self.skip_value(it)


def _str(s: str) -> bytes:
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def _kv(key: str, type_: int, fmt: str, value) -> bytes:
    return _str(key) + struct.pack("<I", type_) + struct.pack(fmt, value)


def _pad(n: int, align: int) -> int:
    return (align - n % align) % align


def split_gguf(src: Path, out_dir: Path, stem: str, parts: int) -> list[Path]:
    data = src.read_bytes()
    r = _Reader(data)
    assert data[:4] == b"GGUF"
    r.p = 4
    r.take("<I")
    n_tensors, n_kv = r.take("<Q"), r.take("<Q")
    kv_raw, align = [], 32
    for _ in range(n_kv):
        start = r.p
        key = r.string()
        t = r.take("<I")
        if key == "general.alignment":
            align = struct.unpack_from("<I", data, r.p)[0]
        r.skip_value(t)
        kv_raw.append(data[start:r.p])
    tensors = []
    for _ in range(n_tensors):
        name = r.string()
        dims = [r.take("<Q") for _ in range(r.take("<I"))]
        ttype, offset = r.take("<I"), r.take("<Q")
        tensors.append([name, dims, ttype, offset])
    data_start = r.p + _pad(r.p, align)
    order = sorted(range(n_tensors), key=lambda i: tensors[i][3])
    ends = [tensors[j][3] for j in order[1:]] + [len(data) - data_start]
    blobs = {}
    for i, end in zip(order, ends):
        blobs[i] = data[data_start + tensors[i][3]:data_start + end]
    per = -(-n_tensors // parts)
    paths = []
    for k in range(parts):
        idx = list(range(k * per, min((k + 1) * per, n_tensors)))
        kvs = (kv_raw if k == 0 else []) + [
            _kv("split.no", 2, "<H", k), _kv("split.count", 2, "<H", parts),
            _kv("split.tensors.count", 5, "<i", n_tensors)]
        infos, body, off = b"", b"", 0
        for i in idx:
            name, dims, ttype, _ = tensors[i]
            infos += _str(name) + struct.pack("<I", len(dims)) + b"".join(
                struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", ttype, off)
            chunk = blobs[i]
            body += chunk + b"\0" * _pad(len(chunk), align)
            off = len(body)
        head = b"GGUF" + struct.pack("<IQQ", 3, len(idx), len(kvs)) + b"".join(kvs) + infos
        head += b"\0" * _pad(len(head), align)
        path = out_dir / f"{stem}-{k + 1:05d}-of-{parts:05d}.gguf"
        path.write_bytes(head + body)
        paths.append(path)
    return paths
