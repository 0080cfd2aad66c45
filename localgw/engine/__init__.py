"""Engine: the only package that touches llama.cpp. One owner thread per llama context.

Before any module here loads llama.cpp's libraries, the shared C++ runtime (libstdc++) joins the
process's global symbol scope. A build of llama.cpp can carry its own copies of parts of the C++
runtime inside its libraries (a CUDA build of llama-cpp-python did: libllama needed no
libstdc++, and libggml-cuda exported std::codecvt and the locale's members). When another
extension loaded the shared runtime first (numpy does, and the server imports numpy before
llama.cpp), its locale data came from one copy while llama.cpp's calls went to another, and
the first std::regex llama.cpp compiled while loading a BPE vocabulary crashed the process.
With the shared runtime first in the global scope, every library's calls into the C++ runtime
reach that one copy, whatever was imported before. Where libllama links libstdc++ itself, as
most builds do, this changes nothing: the same library would join the scope with libllama.
"""

import ctypes
import sys


def _shared_cxx_runtime_first() -> None:
    if not sys.platform.startswith("linux"):
        return  # macOS and Windows builds use the system's one C++ runtime
    try:
        ctypes.CDLL("libstdc++.so.6", mode=ctypes.RTLD_GLOBAL)
    except OSError:
        pass  # no shared C++ runtime here: llama.cpp's libraries carry theirs whole


_shared_cxx_runtime_first()
