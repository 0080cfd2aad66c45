"""Native libraries as llama.cpp's libraries find them: one libggml, and the shared C++ runtime
first in the global symbol scope (localgw.engine's docstring says why). Each check runs in a
fresh interpreter, where the import order is the one it names."""

import subprocess
import sys

# Which library the global scope (dlopen(NULL): the program and every RTLD_GLOBAL library, in
# order) resolves std::locale::classic() to, or "none".
_GLOBAL_DEFINER = """
import ctypes
class Info(ctypes.Structure):
    _fields_ = [("fname", ctypes.c_char_p), ("fbase", ctypes.c_void_p),
                ("sname", ctypes.c_char_p), ("saddr", ctypes.c_void_p)]
scope = ctypes.CDLL(None)
try:
    addr = ctypes.cast(scope._ZNSt6locale7classicEv, ctypes.c_void_p).value
except AttributeError:
    print("none")
else:
    try:
        dladdr = scope.dladdr
    except AttributeError:
        dladdr = ctypes.CDLL("libdl.so.2").dladdr
    info = Info()
    dladdr(ctypes.c_void_p(addr), ctypes.byref(info))
    print(info.fname.decode())
"""


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=120).stdout.strip()


def test_the_shared_cxx_runtime_leads_the_global_scope_whatever_came_first():
    """numpy first (the server's order), then the engine, then llama.cpp: calls into the C++
    runtime resolve to libstdc++ itself, before llama.cpp's libraries are even loaded."""
    before = _run("import numpy\nimport localgw.engine\n" + _GLOBAL_DEFINER)
    after = _run("import numpy\nimport localgw.engine.model\n" + _GLOBAL_DEFINER)
    assert "libstdc++.so" in before, before
    assert "libstdc++.so" in after, after


def test_without_the_engine_numpy_leaves_the_runtime_out_of_the_global_scope():
    """The state the engine mends: numpy loads libstdc++ privately (RTLD_LOCAL), so nothing
    in the global scope answers for the C++ runtime until llama.cpp's libraries do."""
    assert _run("import numpy\n" + _GLOBAL_DEFINER) == "none"


def test_one_libggml_is_loaded_where_devices_are_listed():
    """localgw asks ggml's backend registry for devices and their memory; that must be the
    registry llama.cpp runs on, not a second copy of the library under another file name."""
    out = _run("from localgw.engine import devices; devices.list_devices(); "
               "import re; print(sorted({l.split()[-1] for l in open('/proc/self/maps') "
               "if re.search(r'/libggml\\.so', l)}))")
    assert out.count("libggml.so") == 1, out
