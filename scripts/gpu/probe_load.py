"""Which step of localgw's model load crashes llama.cpp here: each case in its own process."""
import subprocess, sys
T = sys.argv[1]
PRE = {
    "plain": "",
    "backend_init": "llama_cpp.llama_backend_init()",
    "llamalog": "import localgw.engine.llamalog",
    "devices": "from localgw.engine import devices; print(devices.list_devices())",
    "libggml_so0": "from localgw.engine import devices; devices._ggml()",
    "all": "import localgw.engine.llamalog; from localgw.engine import devices; devices.list_devices(); llama_cpp.llama_backend_init()",
}
LOAD = ("p = llama_cpp.llama_model_default_params(); p.n_gpu_layers = -1; "
        "m = internals.LlamaModel(path_model=%r, params=p, verbose=True); print('LOADED', flush=True)" % T)
for thread in (False, True):
    for name, pre in PRE.items():
        body = LOAD if not thread else ("import threading; t = threading.Thread(target=lambda: exec(%r, globals())); t.start(); t.join()" % LOAD)
        code = "import llama_cpp; from llama_cpp import _internals as internals\n%s\n%s" % (pre, body)
        r = subprocess.run([sys.executable, "-X", "faulthandler", "-c", code], capture_output=True, text=True, timeout=90)
        tail = [l for l in (r.stdout + r.stderr).splitlines() if l.strip()]
        print(f"### {name} thread={thread}: rc={r.returncode} loaded={'LOADED' in r.stdout}", flush=True)
        if "LOADED" not in r.stdout:
            print("\n".join(tail[-25:]), flush=True)
