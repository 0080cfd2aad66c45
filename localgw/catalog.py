"""The built-in catalogue: original model ids → GGUF repos that publish them (first tried first)."""

from __future__ import annotations

from dataclasses import dataclass, field

# Sampling defaults from each family's model card / generation_config.json (see chat.defaults).
QWEN25 = {"temperature": 0.7, "top_p": 0.8, "top_k": 20, "min_p": 0.0, "repetition_penalty": 1.05}
QWEN3_THINKING = {"temperature": 0.6, "top_p": 0.95, "top_k": 20, "min_p": 0.0}
QWEN3_NON_THINKING = {"temperature": 0.7, "top_p": 0.8, "top_k": 20, "min_p": 0.0}
LLAMA3 = {"temperature": 0.6, "top_p": 0.9, "top_k": 0, "min_p": 0.0}
DEEPSEEK_R1 = {"temperature": 0.6, "top_p": 0.95, "top_k": 0, "min_p": 0.0}
MISTRAL_7B = {"temperature": 0.7, "top_p": 1.0, "top_k": 0, "min_p": 0.0}
MISTRAL_NEMO = {"temperature": 0.3, "top_p": 1.0, "top_k": 0, "min_p": 0.0}
SMOLLM2 = {"temperature": 0.2, "top_p": 0.9, "top_k": 0, "min_p": 0.0}


@dataclass(frozen=True)
class CatalogEntry:
    id: str
    repos: tuple[str, ...]
    q4_k_m_gb: float
    family: str
    notes: str = ""
    sampling: dict = field(default_factory=dict, hash=False, compare=False)
    # for hybrid thinking models, when the request turns thinking off (enable_thinking: false)
    sampling_no_thinking: dict | None = field(default=None, hash=False, compare=False)
    kind: str = "chat"  # "chat", "embedding" (/v1/embeddings) or "reranker" (/v1/rerank)


def _bart(name: str, new_style: str | None = None) -> tuple[str, ...]:
    repos = [f"bartowski/{name}-GGUF"]
    if new_style:
        repos.append(f"bartowski/{new_style}-GGUF")
    return tuple(repos)


CATALOG: list[CatalogEntry] = [
    *[CatalogEntry(f"Qwen/Qwen2.5-{size}-Instruct",
                   (f"Qwen/Qwen2.5-{size}-Instruct-GGUF", *_bart(f"Qwen2.5-{size}-Instruct")),
                   gb, "qwen2.5", note, QWEN25)
      for size, gb, note in [("0.5B", 0.4, ""), ("1.5B", 1.1, ""),
                             ("3B", 2.0, "Qwen research licence: non-commercial"),
                             ("7B", 4.7, "official Q4_K_M is a 2-file split set"),
                             ("14B", 9.0, "official Q4_K_M is a split set")]],
    CatalogEntry("Qwen/Qwen2.5-Coder-7B-Instruct",
                 ("Qwen/Qwen2.5-Coder-7B-Instruct-GGUF", *_bart("Qwen2.5-Coder-7B-Instruct")),
                 4.7, "qwen2.5", "single file preferred over the split set", QWEN25),
    *[CatalogEntry(f"Qwen/Qwen3-{size}",
                   (f"Qwen/Qwen3-{size}-GGUF", f"unsloth/Qwen3-{size}-GGUF",
                    f"bartowski/Qwen_Qwen3-{size}-GGUF"), gb, "qwen3", "hybrid thinking",
                   QWEN3_THINKING, QWEN3_NON_THINKING)
      for size, gb in [("0.6B", 0.5), ("1.7B", 1.1), ("4B", 2.5), ("8B", 5.0), ("14B", 9.0)]],
    CatalogEntry("Qwen/Qwen3.5-4B", ("unsloth/Qwen3.5-4B-GGUF", "bartowski/Qwen_Qwen3.5-4B-GGUF"),
                 3.0, "qwen3.5", "thinking", QWEN3_THINKING, QWEN3_NON_THINKING),
    *[CatalogEntry(f"meta-llama/Llama-3.2-{size}-Instruct",
                   (f"bartowski/Llama-3.2-{size}-Instruct-GGUF", f"unsloth/Llama-3.2-{size}-Instruct-GGUF",
                    f"lmstudio-community/Llama-3.2-{size}-Instruct-GGUF"), gb, "llama3",
                   "Llama 3.2 community licence", LLAMA3)
      for size, gb in [("1B", 0.8), ("3B", 2.0)]],
    CatalogEntry("meta-llama/Llama-3.1-8B-Instruct",
                 ("bartowski/Meta-Llama-3.1-8B-Instruct-GGUF", "unsloth/Llama-3.1-8B-Instruct-GGUF"),
                 4.9, "llama3", "Llama 3.1 community licence", LLAMA3),
    *[CatalogEntry(f"deepseek-ai/DeepSeek-R1-Distill-{name}",
                   (f"bartowski/DeepSeek-R1-Distill-{name}-GGUF", f"unsloth/DeepSeek-R1-Distill-{name}-GGUF",
                    f"lmstudio-community/DeepSeek-R1-Distill-{name}-GGUF"), gb, "deepseek-r1",
                   "always thinks; MIT", DEEPSEEK_R1)
      for name, gb in [("Qwen-1.5B", 1.1), ("Qwen-7B", 4.7), ("Qwen-14B", 9.0), ("Llama-8B", 4.9)]],
    CatalogEntry("deepseek-ai/DeepSeek-R1-0528-Qwen3-8B",
                 ("unsloth/DeepSeek-R1-0528-Qwen3-8B-GGUF", "bartowski/deepseek-ai_DeepSeek-R1-0528-Qwen3-8B-GGUF"),
                 5.0, "deepseek-r1", "always thinks; MIT", DEEPSEEK_R1),
    CatalogEntry("mistralai/Mistral-7B-Instruct-v0.3",
                 ("bartowski/Mistral-7B-Instruct-v0.3-GGUF", "lmstudio-community/Mistral-7B-Instruct-v0.3-GGUF"),
                 4.4, "mistral", "Apache-2.0; [TOOL_CALLS] tools", MISTRAL_7B),
    CatalogEntry("mistralai/Mistral-Nemo-Instruct-2407", ("bartowski/Mistral-Nemo-Instruct-2407-GGUF",),
                 7.5, "mistral", "Apache-2.0", MISTRAL_NEMO),
    CatalogEntry("HuggingFaceTB/SmolLM2-135M-Instruct",
                 ("HuggingFaceTB/SmolLM2-135M-Instruct-GGUF", "bartowski/SmolLM2-135M-Instruct-GGUF"),
                 0.1, "chatml", "Apache-2.0; the embedded default", SMOLLM2),
    # Embedding models and rerankers (README, "Embeddings and reranking"): no chat, no sampling.
    CatalogEntry("nomic-ai/nomic-embed-text-v1.5", ("nomic-ai/nomic-embed-text-v1.5-GGUF",),
                 0.1, "nomic-bert", "Apache-2.0; 768 dims (Matryoshka: dimensions 64-768); prefix "
                 "inputs with 'search_query: ' or 'search_document: '", kind="embedding"),
    CatalogEntry("BAAI/bge-m3", ("gpustack/bge-m3-GGUF", "lm-kit/bge-m3-gguf"), 0.4, "bert",
                 "MIT; 1024 dims, 8192-token inputs, multilingual; no prefixes", kind="embedding"),
    CatalogEntry("Qwen/Qwen3-Embedding-0.6B", ("Qwen/Qwen3-Embedding-0.6B-GGUF",), 0.6, "qwen3",
                 "Apache-2.0; 1024 dims (Matryoshka: 32-1024), last-token pooling; official repo "
                 "ships Q8_0 and f16; prefix queries with 'Instruct: <task>\\nQuery:'",
                 kind="embedding"),
    CatalogEntry("BAAI/bge-reranker-v2-m3", ("gpustack/bge-reranker-v2-m3-GGUF",), 0.4, "bert",
                 "Apache-2.0; reranker, multilingual; scores are raw logits", kind="reranker"),
    CatalogEntry("Qwen/Qwen3-Reranker-0.6B", ("ggml-org/Qwen3-Reranker-0.6B-Q8_0-GGUF",), 0.6,
                 "qwen3", "Apache-2.0; reranker (scores are P(yes)); use a GGUF converted with "
                 "its classification head (community ones without it score garbage)",
                 kind="reranker"),
]

_BY_ID = {e.id.lower(): e for e in CATALOG}


def catalog_entry(model_id: str) -> CatalogEntry | None:
    return _BY_ID.get(model_id.lower())


def catalog_entry_for(*names: str | None) -> CatalogEntry | None:
    """The entry for a model known by its id, its HF id, or a file stem such as
    `SmolLM2-135M-Instruct.Q4_1` (matched on the name after the org, before a quant suffix)."""
    for name in names:
        if not name:
            continue
        entry = catalog_entry(name)
        if entry is not None:
            return entry
        stem = name.rsplit("/", 1)[-1].lower()
        for candidate in CATALOG:
            short = candidate.id.rsplit("/", 1)[-1].lower()
            if stem == short or stem.startswith((short + ".", short + "-q", short + "-f", short + "-bf")):
                return candidate
    return None


def naming_rule_repos(model_id: str) -> list[str]:
    """GGUF repos that usually publish `org/name`, for ids not in the catalogue."""
    org, _, name = model_id.partition("/")
    return [f"{org}/{name}-GGUF", f"bartowski/{name}-GGUF", f"bartowski/{org}_{name}-GGUF",
            f"unsloth/{name}-GGUF", f"lmstudio-community/{name}-GGUF", f"ggml-org/{name}-GGUF"]
