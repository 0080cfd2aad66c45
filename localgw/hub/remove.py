"""Removing a model: its manifest always; its files only when localgw downloaded them and no
other model uses them (imported files belong to the user and are never deleted)."""

from __future__ import annotations

import os
from pathlib import Path

from localgw.store import ModelStore


def remove_model(store: ModelStore, model_id: str) -> int:
    """Unregister `model_id`; returns the bytes freed."""
    manifest = store.remove(model_id)
    if manifest.source != "hub":
        return 0
    in_use = {os.path.realpath(f.path) for m in store.list() for f in m.files}
    freed = 0
    for f in manifest.files:
        link = Path(f.path)
        blob = Path(os.path.realpath(link))
        if str(blob) in in_use:
            continue
        if blob.exists():
            freed += blob.stat().st_size
            blob.unlink()
        if link.is_symlink() or link.exists():
            link.unlink()
    return freed
