"""The devices llama.cpp can use, and their free memory (ggml's backend registry, via ctypes),
plus system memory. Everything else sees them as plain `fit.Device` records."""

from __future__ import annotations

import ctypes
import os
import re
from functools import lru_cache

from localgw.engine.fit import Device

_TYPES = {0: "cpu", 1: "gpu", 2: "igpu", 3: "accel"}


@lru_cache(maxsize=1)
def _ggml():
    lib = _loaded_libggml()
    lib.ggml_backend_dev_count.restype = ctypes.c_size_t
    lib.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
    lib.ggml_backend_dev_get.restype = ctypes.c_void_p
    lib.ggml_backend_dev_name.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_dev_name.restype = ctypes.c_char_p
    lib.ggml_backend_dev_description.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_dev_description.restype = ctypes.c_char_p
    lib.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_dev_type.restype = ctypes.c_int
    lib.ggml_backend_dev_memory.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t),
                                            ctypes.POINTER(ctypes.c_size_t)]
    lib.ggml_backend_dev_memory.restype = None
    return lib


def _loaded_libggml() -> ctypes.CDLL:
    """The libggml that libllama itself uses. Its directory holds the library under several names
    as separate files (libggml.so, libggml.so.0, ...: wheels hold no links), and libllama loads
    it by its soname; opening another name would load a second copy of ggml, with a backend
    registry of its own, beside the one llama.cpp runs on. On Linux the soname's path is the
    same object; elsewhere llama-cpp-python's own handle."""
    import llama_cpp  # libllama, and through it its libggml, are loaded first

    soname = os.path.join(os.path.dirname(llama_cpp.__file__), "lib", "libggml.so.0")
    if os.path.exists(soname):
        return ctypes.CDLL(soname, mode=ctypes.RTLD_GLOBAL)
    from llama_cpp import _ggml as ggml_mod  # importing it opens libggml by its plain name

    return ggml_mod.libggml


def system_memory() -> tuple[int, int]:
    """(total, available) bytes of RAM."""
    try:
        info = {}
        with open("/proc/meminfo") as fh:
            for line in fh:
                key, value = line.split(":", 1)
                info[key] = int(value.split()[0]) * 1024
        return info["MemTotal"], info.get("MemAvailable", info["MemFree"])
    except (OSError, KeyError, ValueError):
        pass
    page = os.sysconf("SC_PAGE_SIZE")
    total = page * os.sysconf("SC_PHYS_PAGES")
    try:
        free = page * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError):
        free = total // 2  # macOS: no cheap figure; assume half is usable
    return total, free


def list_devices() -> list[Device]:
    """llama.cpp's accelerator devices with free memory, and system RAM as the CPU device."""
    total, free = system_memory()
    devices = [Device("RAM", "cpu", total, free)]
    try:
        lib = _ggml()
        for i in range(lib.ggml_backend_dev_count()):
            dev = lib.ggml_backend_dev_get(i)
            kind = _TYPES.get(lib.ggml_backend_dev_type(dev), "other")
            if kind == "cpu":
                continue  # its memory is the system's, counted above
            f, t = ctypes.c_size_t(0), ctypes.c_size_t(0)
            lib.ggml_backend_dev_memory(dev, ctypes.byref(f), ctypes.byref(t))
            name = (lib.ggml_backend_dev_description(dev) or lib.ggml_backend_dev_name(dev) or b"?")
            devices.append(Device(name.decode("utf-8", "replace"), kind, t.value, f.value))
    except (OSError, AttributeError):
        pass  # an older libggml without the device registry: CPU only
    return devices


def build_backends(system_info: str) -> list[str]:
    """Which backends this llama.cpp build has: CPU always, plus CUDA/Metal/Vulkan/… found."""
    found = ["CPU"]
    for name in ("CUDA", "Metal", "Vulkan", "ROCm", "HIP", "SYCL", "OpenCL", "BLAS"):
        if re.search(rf"\b{name}\b", system_info, re.IGNORECASE):
            found.append(name)
    try:
        for d in list_devices()[1:]:
            label = d.name.split()[0]
            if all(label.lower() not in f.lower() for f in found):
                found.append(label)
    except Exception:  # noqa: BLE001 - reporting must not fail
        pass
    return found
