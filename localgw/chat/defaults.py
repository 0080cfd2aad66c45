"""A model's own sampling defaults: what a request gets for a sampling field it leaves out.

Resolution is per field, first found wins (api.md, "Model defaults"):
1. the GGUF's `general.sampling.*` keys (llama.cpp's own convention, written by converters);
2. the original repo's `generation_config.json`, captured into the manifest at pull time;
3. the catalogue's entry for the model (from the model cards);
4. llama.cpp's defaults;
5. localgw's own: a repetition penalty of 1.1 over the last 64 tokens when nothing above sets
   one. Small models loop without it (SmolLM2 answered "Say hello" with an emoji repeated to
   the output cap for a quarter of seeds; with it, none did), and Ollama and LM Studio apply the
   same by default. A request that sends `repetition_penalty: 1` turns it off.
What the request sends always wins over all of these (see `chat.prompt.sampling_params`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

FIELDS = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty")

LLAMA_CPP_DEFAULTS = {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05}
LOCALGW_DEFAULTS = {"repetition_penalty": 1.1}  # see the module docstring

# llama.cpp's GGUF keys (LLM_KV_GENERAL_SAMPLING_*) → our field names
GGUF_KEYS = {
    "general.sampling.temp": "temperature",
    "general.sampling.top_p": "top_p",
    "general.sampling.top_k": "top_k",
    "general.sampling.min_p": "min_p",
    "general.sampling.penalty_repeat": "repetition_penalty",
}


@dataclass(frozen=True)
class DefaultSampling:
    values: dict = field(default_factory=dict)   # field → value, every field of FIELDS that is set
    sources: dict = field(default_factory=dict)  # field → "gguf" | "generation_config" | ...

    def get(self, name: str, fallback=None):
        return self.values.get(name, fallback)


def _number(name: str, value) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if name == "top_k":
        return int(value)
    return float(value)


def from_gguf(metadata: dict | None) -> dict:
    out = {}
    for key, name in GGUF_KEYS.items():
        value = _number(name, (metadata or {}).get(key))
        if value is not None:
            out[name] = value
    return out


def from_generation_config(config: dict | None) -> dict:
    """transformers' generation_config.json: `do_sample: false` means greedy."""
    if not isinstance(config, dict):
        return {}
    out = {}
    for name in FIELDS:
        value = _number(name, config.get(name))
        if value is not None:
            out[name] = value
    if config.get("do_sample") is False:
        out["temperature"] = 0.0
    return out


def resolve_defaults(*, gguf_metadata: dict | None = None, generation_config: dict | None = None,
                     catalogue: dict | None = None) -> DefaultSampling:
    values: dict = {}
    sources: dict = {}
    for source, found in (("gguf", from_gguf(gguf_metadata)),
                          ("generation_config", from_generation_config(generation_config)),
                          ("catalogue", dict(catalogue or {})),
                          ("llama.cpp", LLAMA_CPP_DEFAULTS),
                          ("localgw", LOCALGW_DEFAULTS)):
        for name, value in found.items():
            if name in FIELDS and name not in values:
                values[name] = value
                sources[name] = source
    return DefaultSampling(values, sources)


def defaults_for_manifest(manifest, *, thinking: bool = True) -> DefaultSampling:
    """A registered (or served) model's defaults: its GGUF header, its captured
    generation_config.json, its catalogue entry. `thinking=False` when a hybrid model's request
    turned thinking off and its card recommends other values then."""
    from localgw.gguf import read_gguf
    from localgw.catalog import catalog_entry_for

    try:
        metadata = read_gguf(manifest.path).metadata
    except (OSError, ValueError):
        metadata = {}
    entry = catalog_entry_for(manifest.hugging_face_id, manifest.id)
    catalogue = entry.sampling if entry else None
    if entry and not thinking and entry.sampling_no_thinking:
        catalogue = entry.sampling_no_thinking
    return resolve_defaults(gguf_metadata=metadata, generation_config=manifest.generation_config,
                            catalogue=catalogue)
