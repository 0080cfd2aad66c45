"""The built-in catalogue: original model ids → GGUF repos that publish them (first tried first)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CatalogEntry:
    id: str
    repos: tuple[str, ...]
    q4_k_m_gb: float
    family: str
    notes: str = ""


def _bart(name: str, new_style: str | None = None) -> tuple[str, ...]:
    repos = [f"bartowski/{name}-GGUF"]
    if new_style:
        repos.append(f"bartowski/{new_style}-GGUF")
    return tuple(repos)


CATALOG: list[CatalogEntry] = [
    *[CatalogEntry(f"Qwen/Qwen2.5-{size}-Instruct",
                   (f"Qwen/Qwen2.5-{size}-Instruct-GGUF", *_bart(f"Qwen2.5-{size}-Instruct")),
                   gb, "qwen2.5", note)
      for size, gb, note in [("0.5B", 0.4, ""), ("1.5B", 1.1, ""),
                             ("3B", 2.0, "Qwen research licence: non-commercial"),
                             ("7B", 4.7, "official Q4_K_M is a 2-file split set"),
                             ("14B", 9.0, "official Q4_K_M is a split set")]],
    CatalogEntry("Qwen/Qwen2.5-Coder-7B-Instruct",
                 ("Qwen/Qwen2.5-Coder-7B-Instruct-GGUF", *_bart("Qwen2.5-Coder-7B-Instruct")),
                 4.7, "qwen2.5", "single file preferred over the split set"),
    *[CatalogEntry(f"Qwen/Qwen3-{size}",
                   (f"Qwen/Qwen3-{size}-GGUF", f"unsloth/Qwen3-{size}-GGUF",
                    f"bartowski/Qwen_Qwen3-{size}-GGUF"), gb, "qwen3", "hybrid thinking")
      for size, gb in [("0.6B", 0.5), ("1.7B", 1.1), ("4B", 2.5), ("8B", 5.0), ("14B", 9.0)]],
    CatalogEntry("Qwen/Qwen3.5-4B", ("unsloth/Qwen3.5-4B-GGUF", "bartowski/Qwen_Qwen3.5-4B-GGUF"),
                 3.0, "qwen3.5", "thinking"),
    *[CatalogEntry(f"meta-llama/Llama-3.2-{size}-Instruct",
                   (f"bartowski/Llama-3.2-{size}-Instruct-GGUF", f"unsloth/Llama-3.2-{size}-Instruct-GGUF",
                    f"lmstudio-community/Llama-3.2-{size}-Instruct-GGUF"), gb, "llama3",
                   "Llama 3.2 community licence")
      for size, gb in [("1B", 0.8), ("3B", 2.0)]],
    CatalogEntry("meta-llama/Llama-3.1-8B-Instruct",
                 ("bartowski/Meta-Llama-3.1-8B-Instruct-GGUF", "unsloth/Llama-3.1-8B-Instruct-GGUF"),
                 4.9, "llama3", "Llama 3.1 community licence"),
    *[CatalogEntry(f"deepseek-ai/DeepSeek-R1-Distill-{name}",
                   (f"bartowski/DeepSeek-R1-Distill-{name}-GGUF", f"unsloth/DeepSeek-R1-Distill-{name}-GGUF",
                    f"lmstudio-community/DeepSeek-R1-Distill-{name}-GGUF"), gb, "deepseek-r1",
                   "always thinks; MIT")
      for name, gb in [("Qwen-1.5B", 1.1), ("Qwen-7B", 4.7), ("Qwen-14B", 9.0), ("Llama-8B", 4.9)]],
    CatalogEntry("deepseek-ai/DeepSeek-R1-0528-Qwen3-8B",
                 ("unsloth/DeepSeek-R1-0528-Qwen3-8B-GGUF", "bartowski/deepseek-ai_DeepSeek-R1-0528-Qwen3-8B-GGUF"),
                 5.0, "deepseek-r1", "always thinks; MIT"),
    CatalogEntry("mistralai/Mistral-7B-Instruct-v0.3",
                 ("bartowski/Mistral-7B-Instruct-v0.3-GGUF", "lmstudio-community/Mistral-7B-Instruct-v0.3-GGUF"),
                 4.4, "mistral", "Apache-2.0; [TOOL_CALLS] tools"),
    CatalogEntry("mistralai/Mistral-Nemo-Instruct-2407", ("bartowski/Mistral-Nemo-Instruct-2407-GGUF",),
                 7.5, "mistral", "Apache-2.0"),
    CatalogEntry("HuggingFaceTB/SmolLM2-135M-Instruct",
                 ("HuggingFaceTB/SmolLM2-135M-Instruct-GGUF", "bartowski/SmolLM2-135M-Instruct-GGUF"),
                 0.1, "chatml", "Apache-2.0; the embedded default"),
]

_BY_ID = {e.id.lower(): e for e in CATALOG}


def catalog_entry(model_id: str) -> CatalogEntry | None:
    return _BY_ID.get(model_id.lower())


def naming_rule_repos(model_id: str) -> list[str]:
    """GGUF repos that usually publish `org/name`, for ids not in the catalogue."""
    org, _, name = model_id.partition("/")
    return [f"{org}/{name}-GGUF", f"bartowski/{name}-GGUF", f"bartowski/{org}_{name}-GGUF",
            f"unsloth/{name}-GGUF", f"lmstudio-community/{name}-GGUF", f"ggml-org/{name}-GGUF"]
