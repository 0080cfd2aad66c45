"""Memory fit and GPU offload decisions, on fake device lists (no GPU needed)."""

import pytest

from localgw.durations import describe, parse_duration
from localgw.engine.fit import GIB, MIB, Device, ModelShape, estimate, plan
from localgw.errors import InsufficientMemory

# Llama-3.1-8B Q4_K_M, from its GGUF metadata
LLAMA8B = ModelShape(weights=int(4.58 * GIB), n_layers=32, n_embd=4096, n_head=32, n_head_kv=8,
                     head_dim_k=128, head_dim_v=128, n_vocab=128256, n_ff=14336, trained_ctx=131072)


def ram(gib):
    return Device("RAM", "cpu", 32 * GIB, int(gib * GIB))


def gpu(gib, name="NVIDIA RTX 4070"):
    return Device(name, "gpu", 12 * GIB, int(gib * GIB))


def test_kv_cache_matches_llama_cpp_arithmetic():
    # 8192 cells x 32 layers x 8 kv heads x (128 + 128) x f16 = 1 GiB, as llama.cpp reports
    assert LLAMA8B.kv_bytes(8192) == 1024 * MIB


def test_everything_on_a_big_gpu():
    est = plan(LLAMA8B, [ram(16), gpu(22)], n_ctx=8192, offload_supported=True)
    assert est.n_gpu_layers == 33 and est.cpu < 1 * GIB


def test_partial_offload_on_a_small_gpu():
    est = plan(LLAMA8B, [ram(16), gpu(4)], n_ctx=8192, offload_supported=True)
    assert 0 < est.n_gpu_layers < 33
    assert est.gpu <= 4 * GIB * 0.92
    more = plan(LLAMA8B, [ram(16), gpu(6)], n_ctx=8192, offload_supported=True)
    assert more.n_gpu_layers > est.n_gpu_layers


def test_cpu_build_offloads_nothing_even_with_a_gpu_present():
    assert plan(LLAMA8B, [ram(16), gpu(22)], n_ctx=8192, offload_supported=False).n_gpu_layers == 0


def test_user_choice_of_layers_is_kept():
    assert plan(LLAMA8B, [ram(16), gpu(22)], n_ctx=4096, n_gpu_layers=10,
                offload_supported=True).n_gpu_layers == 10


def test_default_context_is_capped_by_memory_but_not_below_4096():
    roomy = plan(LLAMA8B, [ram(30), gpu(22)], offload_supported=True)
    tight = plan(LLAMA8B, [ram(9)], offload_supported=False)
    assert roomy.n_ctx > tight.n_ctx >= 4096
    assert tight.total <= 9 * GIB


def test_small_trained_context_is_the_default():
    shape = ModelShape(**{**LLAMA8B.__dict__, "trained_ctx": 2048})
    assert plan(shape, [ram(16)]).n_ctx == 2048


def test_what_cannot_fit_is_an_error_with_the_numbers():
    with pytest.raises(InsufficientMemory) as err:
        plan(LLAMA8B, [ram(3)], n_ctx=8192)
    message = err.value.message
    assert "GiB at context 8192" in message and "3.00 GiB of RAM" in message
    assert "--ctx" in message


def test_gpu_estimate_grows_with_layers():
    sizes = [estimate(LLAMA8B, 4096, n).gpu for n in (0, 8, 16, 33)]
    assert sizes == sorted(sizes) and sizes[0] == 0


@pytest.mark.parametrize("text,seconds", [("5m", 300), ("30s", 30), ("1h30m", 5400), ("0", 0),
                                          ("-1", None), (-1, None), (90, 90), ("2.5s", 2.5)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["soon", "5 minutes", "", True, "m5"])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_describe():
    assert [describe(None), describe(42), describe(299), describe(3700)] == ["forever", "42s", "4m59s", "1h01m"]
