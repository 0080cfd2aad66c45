"""Which part of localgw's load path crashes here: each case in its own process, llama.cpp's log on."""
import subprocess, sys
T = sys.argv[1]
RUNNER = ("from localgw.engine.types import LoadOptions; from localgw.engine.runner import LlamaRunner; "
          "r = LlamaRunner('gs_t', %r, LoadOptions(spec='off')); print('LOADED', flush=True)" % T)
PLAIN = ("import llama_cpp; from llama_cpp import _internals as internals; p = llama_cpp.llama_model_default_params(); "
         "p.n_gpu_layers = -1; m = internals.LlamaModel(path_model=%r, params=p, verbose=True); print('LOADED', flush=True)" % T)
LOG = "import logging; logging.basicConfig(level=logging.DEBUG, format='%(name)s %(message)s')\n"
CASES = {
    "runner_main": LOG + RUNNER,
    "runner_thread": LOG + "import threading; t = threading.Thread(target=lambda: exec(%r, globals())); t.start(); t.join()" % RUNNER,
    "server_imports_plain_thread": "import localgw.server, localgw.cli.app\nimport threading; t = threading.Thread(target=lambda: exec(%r, globals())); t.start(); t.join()" % PLAIN,
    "uvloop_executor_plain": "import asyncio, uvloop\nasync def main():\n    await asyncio.get_running_loop().run_in_executor(None, lambda: exec(%r, globals()))\nuvloop.run(main())" % PLAIN,
    "uvloop_executor_runner": LOG + "import asyncio, uvloop\nasync def main():\n    await asyncio.get_running_loop().run_in_executor(None, lambda: exec(%r, globals()))\nuvloop.run(main())" % RUNNER,
}
for name, code in CASES.items():
    r = subprocess.run([sys.executable, "-X", "faulthandler", "-c", code], capture_output=True, text=True, timeout=90)
    out = r.stdout + r.stderr
    print(f"### {name}: rc={r.returncode} loaded={'LOADED' in out}", flush=True)
    if "LOADED" not in out:
        lines = [l for l in out.splitlines() if l.strip()]
        print("\n".join(lines[-45:]), flush=True)
