"""Will this model fit, and how: a memory estimate from GGUF metadata, and the choice of context
size and GPU layers for the devices at hand. Pure: devices come in as data, so the GPU logic is
tested with fake device lists.
"""

from __future__ import annotations

from dataclasses import dataclass

from localgw.errors import InsufficientMemory
from localgw.gguf import GGUFInfo

MIB = 1024 * 1024
GIB = 1024 * MIB
MIN_DEFAULT_CTX = 4096
OVERHEAD = 16 * MIB          # per-context bookkeeping, output buffer, tokenizer caches
GPU_RESERVE = 0.08           # leave this share of each GPU's free memory alone


@dataclass(frozen=True)
class Device:
    name: str
    kind: str                # "cpu", "gpu", "igpu"
    total: int
    free: int


@dataclass(frozen=True)
class ModelShape:
    """The few numbers of a GGUF that decide its memory use."""

    weights: int
    n_layers: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim_k: int
    head_dim_v: int
    n_vocab: int
    n_ff: int
    trained_ctx: int

    @classmethod
    def from_gguf(cls, info: GGUFInfo) -> "ModelShape":
        m, a = info.metadata, info.architecture

        def num(key, default=0):
            value = m.get(f"{a}.{key}", default)
            if isinstance(value, list):  # per-layer values (some hybrids): take the largest
                value = max(value) if value else default
            return int(value or default)

        n_embd = num("embedding_length", 4096)
        n_head = num("attention.head_count", 32) or 1
        n_head_kv = num("attention.head_count_kv", n_head) or n_head
        tokens = m.get("tokenizer.ggml.tokens")
        n_vocab = num("vocab_size") or (len(tokens) if tokens else 32000)
        return cls(weights=info.tensor_bytes, n_layers=num("block_count", 32), n_embd=n_embd,
                   n_head=n_head, n_head_kv=n_head_kv,
                   head_dim_k=num("attention.key_length", n_embd // n_head),
                   head_dim_v=num("attention.value_length", n_embd // n_head),
                   n_vocab=n_vocab, n_ff=num("feed_forward_length", 4 * n_embd),
                   trained_ctx=info.context_length or 4096)

    def kv_bytes(self, n_ctx: int) -> int:
        """f16 K and V for every layer and position."""
        return n_ctx * self.n_layers * self.n_head_kv * (self.head_dim_k + self.head_dim_v) * 2

    def compute_bytes(self, n_ctx: int, n_ubatch: int = 512) -> int:
        """llama.cpp's compute buffer: logits, attention scores and activations of one ubatch.

        Fitted to the buffers llama.cpp reports (see tests/integration/test_models_on_hardware).
        """
        return int(4 * n_ubatch * (0.8 * self.n_vocab + 0.62 * n_ctx * self.n_head + self.n_ff))


@dataclass(frozen=True)
class Estimate:
    n_ctx: int               # per slot: what one request may use
    n_gpu_layers: int
    weights: int
    kv: int                  # all slots: n_parallel x n_ctx cells
    compute: int
    gpu: int                 # bytes on the GPU(s)
    cpu: int                 # bytes in system memory
    n_parallel: int = 1

    @property
    def total(self) -> int:
        return self.weights + self.kv + self.compute + OVERHEAD

    def to_dict(self) -> dict:
        return {"context_length": self.n_ctx, "parallel": self.n_parallel,
                "gpu_layers": self.n_gpu_layers,
                "weights_bytes": self.weights, "kv_cache_bytes": self.kv,
                "compute_bytes": self.compute, "gpu_bytes": self.gpu, "cpu_bytes": self.cpu,
                "total_bytes": self.total}


def estimate(shape: ModelShape, n_ctx: int, n_gpu_layers: int, n_ubatch: int = 512,
             n_parallel: int = 1) -> Estimate:
    """Memory for this context, slots and offload; layer weights and KV split by layer."""
    layers = min(max(n_gpu_layers, 0), shape.n_layers + 1)  # +1: the output layer
    per_layer_w = shape.weights / (shape.n_layers + 1)
    kv = shape.kv_bytes(n_ctx * n_parallel)  # one KV stream per slot
    per_layer_kv = kv / shape.n_layers
    compute = shape.compute_bytes(n_ctx, n_ubatch)
    gpu = 0
    if layers:
        gpu = int(per_layer_w * layers + per_layer_kv * min(layers, shape.n_layers) + compute)
    cpu = int(shape.weights + kv + compute + OVERHEAD - gpu + (compute // 4 if layers else 0))
    return Estimate(n_ctx, layers, shape.weights, kv, compute, gpu, max(cpu, 0), n_parallel)


def _gpu_free(devices: list[Device]) -> int:
    return int(sum(d.free for d in devices if d.kind in ("gpu", "igpu")) * (1 - GPU_RESERVE))


def _ram_free(devices: list[Device]) -> int:
    return sum(d.free for d in devices if d.kind == "cpu")


def best_offload(shape: ModelShape, n_ctx: int, devices: list[Device], requested: int | None,
                 offload_supported: bool, n_parallel: int = 1) -> int:
    """As many layers on the GPU as fit (all when they do); what the user asked, when asked."""
    if requested is not None and requested >= 0:
        return min(requested, shape.n_layers + 1)
    if not offload_supported or not _gpu_free(devices):
        return 0
    free = _gpu_free(devices)
    for layers in range(shape.n_layers + 1, 0, -1):
        if estimate(shape, n_ctx, layers, n_parallel=n_parallel).gpu <= free:
            return layers
    return 0


def fits(est: Estimate, devices: list[Device]) -> bool:
    gpu_ok = est.gpu <= _gpu_free(devices) or est.n_gpu_layers == 0
    return gpu_ok and est.cpu <= _ram_free(devices)


DEFAULT_SLOTS = (4, 2)       # tried in order, for each context size


def plan(shape: ModelShape, devices: list[Device], *, n_ctx: int | None = None,
         n_gpu_layers: int | None = None, offload_supported: bool = False,
         ctx_cap: int | None = None, n_parallel: int | None = None) -> Estimate:
    """Context size, slots and offload that fit; a clear error naming the numbers when nothing does.

    Context and slots are chosen together (KV = slots x context). Without a requested context:
    the trained context, halved until it fits, never below 4,096 (or the trained context, if
    smaller); for each size 4 slots, else 2 (`n_parallel` fixes the count).
    """
    if n_ctx:
        candidates = [n_ctx]
    else:
        top = min(shape.trained_ctx, ctx_cap) if ctx_cap else shape.trained_ctx
        floor = min(MIN_DEFAULT_CTX, shape.trained_ctx)
        candidates = []
        c = top
        while c > floor:
            candidates.append(c)
            c //= 2
        candidates.append(floor)
    slot_counts = (n_parallel,) if n_parallel else DEFAULT_SLOTS
    last = None
    for ctx in candidates:
        for slots in slot_counts:
            layers = best_offload(shape, ctx, devices, n_gpu_layers, offload_supported, slots)
            last = estimate(shape, ctx, layers, n_parallel=slots)
            if fits(last, devices):
                return last
    gpu_free, ram_free = _gpu_free(devices), _ram_free(devices)
    raise InsufficientMemory(
        f"the model needs about {last.total / GIB:.2f} GiB at context {last.n_ctx} x "
        f"{last.n_parallel} slots (weights {last.weights / GIB:.2f}, KV cache "
        f"{last.kv / GIB:.2f}, compute {last.compute / GIB:.2f}); {ram_free / GIB:.2f} GiB of RAM"
        + (f" and {gpu_free / GIB:.2f} GiB of GPU memory" if gpu_free else "")
        + " are free. Use a smaller --ctx, fewer --parallel slots, a smaller quant, or unload "
        "other models.")
