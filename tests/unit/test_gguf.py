import struct

import pytest

from localgw.errors import StoreError
from localgw.gguf import read_gguf, split_siblings
from tests.helpers import smollm2_path


def test_reads_real_model_metadata_without_loading():
    info = read_gguf(smollm2_path())
    assert info.architecture == "llama"
    assert info.context_length == 8192
    assert info.quantization == "Q4_1"
    assert info.license == "apache-2.0"
    assert 130_000_000 < info.n_params < 140_000_000
    assert "<|im_start|>" in info.chat_template
    assert info.token_text("eos") == "<|im_end|>"
    assert info.n_layers == 30


def test_rejects_files_that_are_not_gguf(tmp_path):
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"NOPE" + b"\0" * 100)
    with pytest.raises(StoreError, match="bad magic"):
        read_gguf(bad)


def test_truncated_header_is_a_clear_error(tmp_path):
    src = smollm2_path().read_bytes()[:4096]
    bad = tmp_path / "cut.gguf"
    bad.write_bytes(src)
    with pytest.raises(StoreError, match="truncated"):
        read_gguf(bad)


def test_split_siblings(tmp_path):
    first = tmp_path / "m-q4_k_m-00001-of-00003.gguf"
    assert [p.name for p in split_siblings(first)] == [
        "m-q4_k_m-00001-of-00003.gguf", "m-q4_k_m-00002-of-00003.gguf",
        "m-q4_k_m-00003-of-00003.gguf"]
    assert split_siblings(tmp_path / "single.gguf") == [tmp_path / "single.gguf"]


def test_header_fields_parse(tmp_path):
    # a minimal hand-made GGUF: version 3, no tensors, two keys
    def s(text):
        raw = text.encode()
        return struct.pack("<Q", len(raw)) + raw
    kv = s("general.architecture") + struct.pack("<I", 8) + s("qwen2")
    kv += s("qwen2.context_length") + struct.pack("<I", 4) + struct.pack("<I", 32768)
    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 2) + kv)
    info = read_gguf(path)
    assert info.architecture == "qwen2" and info.context_length == 32768 and info.n_params == 0
