"""Tiny random-weight BERT GGUFs for the embedding and reranking tests.

No embedding or reranker GGUF ships in a package, so the tests build their own with the `gguf`
package: a two-layer BERT encoder (32-wide, llama.cpp's tensor names and hyper-parameter keys,
as convert_hf_to_gguf.py writes them) over a small WordPiece vocabulary. `write_bert(path)`
writes an embedding model (mean or cls pooling); `write_bert(path, reranker=True)` adds the
classification head (`cls`, `cls.output`, one output) with rank pooling, as a BERT
cross-encoder is converted. The weights are seeded, so a file's vectors are the same every run.
Words are the vocabulary's whole-word tokens; anything else falls to `[UNK]` or word pieces.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PAD, UNK, CLS, SEP, MASK = range(5)
WORDS = ("the a an of to in on is are was and or for with what where who how why which "
         "cat cats dog dogs bird fish horse cow sheep animal animals pet pets "
         "paris france london england berlin germany rome italy city capital country "
         "sun moon star sky rain snow wind cloud weather warm cold hot "
         "apple banana orange bread cheese milk food eat eats cook "
         "car train plane ship bus road travel fast slow "
         "python code program computer data search index model server "
         "red green blue black white big small good bad new old "
         "run runs jump sleep sleeps read write play . , ? !").split()
PIECES = ["s", "ed", "ing", "er", "ly"]  # "##" word pieces, written without the "##"
N_EMBD, N_HEAD, N_FF, N_LAYER, N_CTX = 32, 4, 64, 2, 512


def vocabulary() -> list[str]:
    """Tokens in llama.cpp's WordPiece spelling: a word starts with U+2581, a piece without it."""
    return SPECIALS + ["\u2581" + w for w in WORDS] + PIECES


def _tensors(rng: np.random.Generator, n_vocab: int, reranker: bool) -> dict[str, np.ndarray]:
    def w(*shape, scale=0.2):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    def norm(n):
        return (1.0 + w(n, scale=0.05)), w(n, scale=0.05)

    t = {"token_embd.weight": w(n_vocab, N_EMBD, scale=1.0),
         "token_types.weight": w(2, N_EMBD, scale=0.1),
         "position_embd.weight": w(N_CTX, N_EMBD, scale=0.1)}
    t["token_embd_norm.weight"], t["token_embd_norm.bias"] = norm(N_EMBD)
    for i in range(N_LAYER):
        b = f"blk.{i}."
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            t[b + name + ".weight"], t[b + name + ".bias"] = w(N_EMBD, N_EMBD), w(N_EMBD, scale=0.02)
        t[b + "attn_output_norm.weight"], t[b + "attn_output_norm.bias"] = norm(N_EMBD)
        t[b + "ffn_up.weight"], t[b + "ffn_up.bias"] = w(N_FF, N_EMBD), w(N_FF, scale=0.02)
        t[b + "ffn_down.weight"], t[b + "ffn_down.bias"] = w(N_EMBD, N_FF), w(N_EMBD, scale=0.02)
        t[b + "layer_output_norm.weight"], t[b + "layer_output_norm.bias"] = norm(N_EMBD)
    if reranker:
        t["cls.weight"], t["cls.bias"] = w(N_EMBD, N_EMBD), w(N_EMBD, scale=0.02)
        t["cls.output.weight"], t["cls.output.bias"] = w(1, N_EMBD, scale=1.0), w(1, scale=0.1)
    return t


def write_bert(path: Path, *, reranker: bool = False, pooling: str = "mean",
               seed: int = 27, name: str | None = None) -> Path:
    """Write a tiny BERT GGUF at `path`: an embedding model pooled by `pooling` (mean or cls),
    or a reranker (classification head, rank pooling)."""
    arch = "bert"
    writer = gguf.GGUFWriter(str(path), arch)
    tokens = vocabulary()
    writer.add_name(name or ("tiny-bert-reranker" if reranker else f"tiny-bert-{pooling}"))
    writer.add_context_length(N_CTX)
    writer.add_embedding_length(N_EMBD)
    writer.add_feed_forward_length(N_FF)
    writer.add_block_count(N_LAYER)
    writer.add_head_count(N_HEAD)
    writer.add_layer_norm_eps(1e-12)
    writer.add_causal_attention(False)
    pooling_type = gguf.PoolingType.RANK if reranker else gguf.PoolingType[pooling.upper()]
    writer.add_pooling_type(pooling_type)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    if reranker:
        writer.add_classifier_output_labels(["LABEL_0"])
    writer.add_tokenizer_model("bert")
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * len(tokens))
    writer.add_token_types([gguf.TokenType.CONTROL if t in SPECIALS else gguf.TokenType.NORMAL
                            for t in tokens])
    writer.add_token_type_count(2)
    writer.add_bos_token_id(CLS)
    writer.add_sep_token_id(SEP)
    writer.add_pad_token_id(PAD)
    writer.add_unk_token_id(UNK)
    writer.add_mask_token_id(MASK)
    writer.add_add_bos_token(True)
    writer.add_add_sep_token(True)
    writer.add_add_eos_token(False)
    rng = np.random.default_rng(seed)
    for tensor_name, data in _tensors(rng, len(tokens), reranker).items():
        writer.add_tensor(tensor_name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
