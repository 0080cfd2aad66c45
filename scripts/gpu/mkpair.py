#!/usr/bin/env python3
"""A target and a draft that agree, for measuring draft-model speculation on a GPU.

    python3 mkpair.py TARGET.gguf DRAFT.gguf --keep 2 [--shape 1b|smol] [--meta ...] [--gguf-py ...]

The target has the full shape (1b: 16 layers of 2048, ~1.07B parameters, F16), random weights as
mkmodel.py makes them, except that from layer KEEP on its attention output and FFN down
projections are zero: those layers still run every product (a 1B model's cost per token) but add
nothing to the residual stream. The draft is the same embedding and first KEEP layers. So the
target's logits are the draft's, up to the rounding of the kernels: a draft that is right nearly
always and costs a fraction of the target, the best case of draft-model speculation, measured
without a trained pair of models. Also usable for look-up speculation (any target will do).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".gpu-bundle"))
import mkmodel  # noqa: E402  (the devcheck's generator: shapes, tokenizer metadata)


def write(out: str, hp: dict, meta: dict, n_layer: int, zero_from: int, gguf, out_scale: float,
          seed: int = 0) -> None:
    from gguf import GGUFValueType as VT

    n_vocab = len(meta["tokenizer.ggml.tokens"]["value"])
    n_embd, n_head, n_head_kv, n_ff = hp["n_embd"], hp["n_head"], hp["n_head_kv"], hp["n_ff"]
    head_dim = n_embd // n_head
    w = gguf.GGUFWriter(out, "llama")
    w.add_name(f"localgw spec pair {n_layer} layers, {zero_from} computing")
    w.add_type("model")
    w.add_block_count(n_layer)
    w.add_context_length(hp["n_ctx"])
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_rope_freq_base(hp["rope_theta"])
    w.add_layer_norm_rms_eps(hp["rms_eps"])
    w.add_vocab_size(n_vocab)
    w.add_rope_dimension_count(head_dim)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for key, item in meta.items():
        if key.startswith("tokenizer."):
            w.add_key_value(key, item["value"], VT[item["type"]], VT[item["sub"]] if item["sub"] else None)
    specs = [("token_embd.weight", (n_vocab, n_embd))]
    for i in range(n_layer):
        p = f"blk.{i}."
        specs += [(p + "attn_norm.weight", (n_embd,)),
                  (p + "attn_q.weight", (n_head * head_dim, n_embd)),
                  (p + "attn_k.weight", (n_head_kv * head_dim, n_embd)),
                  (p + "attn_v.weight", (n_head_kv * head_dim, n_embd)),
                  (p + "attn_output.weight", (n_embd, n_head * head_dim)),
                  (p + "ffn_norm.weight", (n_embd,)),
                  (p + "ffn_gate.weight", (n_ff, n_embd)),
                  (p + "ffn_up.weight", (n_ff, n_embd)),
                  (p + "ffn_down.weight", (n_embd, n_ff))]
    specs.append(("output_norm.weight", (n_embd,)))
    for name, shape in specs:
        dtype = np.float32 if len(shape) == 1 else np.float16
        w.add_tensor_info(name, shape, np.dtype(dtype), int(np.prod(shape)) * np.dtype(dtype).itemsize)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    rng = np.random.default_rng(seed)
    for name, shape in specs:
        if len(shape) == 1:
            scale = out_scale if name == "output_norm.weight" else 1.0
            w.write_tensor_data(np.full(shape, scale, dtype=np.float32))
            continue
        layer = int(name.split(".")[1]) if name.startswith("blk.") else -1
        if layer >= zero_from and name.endswith(("attn_output.weight", "ffn_down.weight")):
            w.write_tensor_data(np.zeros(shape, dtype=np.float16))
            continue
        buf = rng.standard_normal(int(np.prod(shape)), dtype=np.float32)
        buf *= 0.02
        w.write_tensor_data(buf.astype(np.float16).reshape(shape))
    w.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("target")
    ap.add_argument("draft")
    ap.add_argument("--keep", type=int, default=2)
    ap.add_argument("--shape", choices=("1b", "smol"), default="1b")
    ap.add_argument("--layers", type=int, help="target layers (default: the shape's)")
    ap.add_argument("--meta", default=str(Path(mkmodel.HERE) / "tokenizer-meta.json.gz"))
    ap.add_argument("--gguf-py", default=None)
    ap.add_argument("--out-scale", type=float, default=40.0,
                    help="output norm weight: random logits are flat (a top token at a few per "
                         "cent); scaled, the models are as sure of their choices as trained ones")
    args = ap.parse_args()
    sys.path.insert(0, mkmodel.find_gguf_py(args.gguf_py))
    import gguf

    meta = mkmodel.load_meta(Path(args.meta))
    hp = mkmodel.smol_shape(meta) if args.shape == "smol" else dict(mkmodel.SHAPES[args.shape])
    n_layer = args.layers or hp["n_layer"]
    t0 = time.perf_counter()
    write(args.target, hp, meta, n_layer, args.keep, gguf, args.out_scale)
    write(args.draft, hp, meta, args.keep, args.keep, gguf, args.out_scale)
    print(f"mkpair: {args.target} ({n_layer} layers, {args.keep} computing) and {args.draft} "
          f"({args.keep} layers) in {time.perf_counter() - t0:.1f}s", flush=True)


if __name__ == "__main__":
    main()
