"""Where localgw keeps its state, read from the environment (one variable moves everything)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def home() -> Path:
    """localgw's own state: manifests, chat history, logs. `LOCALGW_HOME` overrides."""
    env = os.environ.get("LOCALGW_HOME")
    return Path(env).expanduser() if env else Path(platformdirs.user_data_dir("localgw"))


def hf_hub_cache() -> Path:
    """The standard Hugging Face cache, shared with other tools."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    hf_home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(hf_home).expanduser() / "hub"


def debug() -> bool:
    return os.environ.get("LOCALGW_DEBUG", "") not in ("", "0", "false")
