"""Which way of loading a model with llama.cpp crashes in this environment: each case in its own
process (faulthandler on, llama.cpp's log through localgw's callback where localgw loads it).
usage: python3 scripts/gpu/probe_load.py MODEL.gguf (PYTHONPATH holding localgw and llama_cpp)"""
import subprocess
import sys

T = sys.argv[1]
PLAIN = ("import llama_cpp; from llama_cpp import _internals as internals; "
         "p = llama_cpp.llama_model_default_params(); p.n_gpu_layers = -1; "
         "m = internals.LlamaModel(path_model=%r, params=p, verbose=True); print('LOADED', flush=True)" % T)
RUNNER = ("from localgw.engine.types import LoadOptions; from localgw.engine.runner import LlamaRunner; "
          "r = LlamaRunner('m', %r, LoadOptions(spec='off')); print('LOADED', flush=True)" % T)
LOG = "import logging; logging.basicConfig(level=logging.DEBUG, format='%(name)s %(message)s')\n"
BEFORE = {  # what runs before the load
    "plain": "",
    "backend_init": "import llama_cpp; llama_cpp.llama_backend_init()",
    "llamalog": "import localgw.engine.llamalog",
    "devices": "from localgw.engine import devices; print(devices.list_devices())",
    "server_imports": "import localgw.server, localgw.cli.app",
    "numpy_first": "import numpy",
}


def threaded(code: str) -> str:
    return "import threading; t = threading.Thread(target=lambda: exec(%r, globals())); t.start(); t.join()" % code


def executor(code: str) -> str:
    return ("import asyncio, uvloop\nasync def main():\n    await asyncio.get_running_loop()"
            ".run_in_executor(None, lambda: exec(%r, globals()))\nuvloop.run(main())" % code)


CASES = {f"{name} {where}": f"{pre}\n{wrap(PLAIN)}" for name, pre in BEFORE.items()
         for where, wrap in (("main", str), ("thread", threaded))}
CASES |= {"runner main": LOG + RUNNER, "runner thread": LOG + threaded(RUNNER),
          "plain uvloop executor": executor(PLAIN), "runner uvloop executor": LOG + executor(RUNNER)}
for name, code in CASES.items():
    r = subprocess.run([sys.executable, "-X", "faulthandler", "-c", code], capture_output=True,
                       text=True, timeout=90)
    out = r.stdout + r.stderr
    print(f"### {name}: rc={r.returncode} loaded={'LOADED' in out}", flush=True)
    if "LOADED" not in out:
        print("\n".join([line for line in out.splitlines() if line.strip()][-45:]), flush=True)
