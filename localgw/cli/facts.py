"""The machine facts `localgw doctor` prints and `serve` logs at start."""

from __future__ import annotations

import shutil
from pathlib import Path

from localgw import config


def _disk_free(path: Path) -> int:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return shutil.disk_usage(candidate).free
    return 0


def machine_facts() -> dict:
    from localgw.engine.devices import build_backends, list_devices
    from localgw.engine.runner import gpu_offload_supported, system_info
    from localgw.engine.threads import available_cpus, default_threads

    info = system_info()
    decode, prompt = default_threads()
    home, cache = config.home(), config.hf_hub_cache()
    return {"backends": build_backends(info), "gpu_offload": gpu_offload_supported(),
            "system_info": info, "cpus": available_cpus(),
            "threads": {"decode": decode, "prompt": prompt},
            "devices": [d.__dict__ for d in list_devices()],
            "home": {"path": str(home), "disk_free": _disk_free(home)},
            "hf_cache": {"path": str(cache), "disk_free": _disk_free(cache)}}
