#!/usr/bin/env bash
# Why `localgw serve` segfaults at model load on the CUDA build: build llama-cpp-python (CUDA, no
# tools), a random model with SmolLM2's vocabulary, then serve under an LD_PRELOAD handler that
# prints the native stack and the mapped files (segv.c), and variants that isolate the cause.
# There (device tool: carry [".gpu-bundle"]): OUT=$OUT bash scripts/gpu/crash_probe.sh
set -u
R=$(pwd); B=$R/.gpu-bundle; S=$R/scripts/gpu; OUT=${OUT:-/tmp/cp-out}; mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
T0=$(date +%s); say() { echo "=== [$(( $(date +%s) - T0 ))s] $*"; }
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_ROOT_USER_ACTION=ignore PIP_CONFIG_FILE=/dev/null
export HF_HUB_OFFLINE=1 LOCALGW_HOME=/tmp/cplgw PATH=$PATH:/usr/local/cuda/bin
command -v nvcc && export CUDACXX=$(command -v nvcc)
PY=${PY:-python3}
if [ "${DRY:-0}" = 1 ]; then export PYTHONPATH=$R; T=/tmp/gs_t.gguf
elif [ ! -d /tmp/cpsite/llama_cpp ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/cpsite "$B"/wheels/*.whl
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/cpbuild "$B"/buildwheels/*.whl
  mkdir -p /tmp/cpsrc; tar -xzf "$B/llama_cpp_python-0.3.36.tar.gz" -C /tmp/cpsrc
  SRC=/tmp/cpsrc/llama_cpp_python-0.3.36
  export CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DGGML_CUDA_FA=OFF -DGGML_CUDA_NCCL=OFF"
  export CMAKE_BUILD_PARALLEL_LEVEL=16
  say build
  PYTHONPATH=/tmp/cpsite:/tmp/cpbuild $PY -m pip install -q --no-index --no-build-isolation --no-deps \
    --target /tmp/cpsite --config-settings=build-dir=/tmp/cpkb "$SRC" > /tmp/cpbuild.log 2>&1 &
  BP=$!
  PYTHONPATH=/tmp/cpsite $PY "$S/mkpair.py" /tmp/cp_t.gguf /tmp/cp_d.gguf --shape smol --layers 4 --keep 2 \
    --meta "$B/tokenizer-meta.json.gz" --gguf-py "$SRC/vendor/llama.cpp/gguf-py"
  wait $BP; say "build rc=$?"; tail -n 5 /tmp/cpbuild.log
fi
gcc -shared -fPIC -O1 -w -o /tmp/segv.so "$S/segv.c"
[ "${DRY:-0}" = 1 ] || { export PYTHONPATH=$R:/tmp/cpsite; T=/tmp/cp_t.gguf; }
serve() {  # NAME env/cmd prefix...: serve T for a few seconds; did the model load?
  local name=$1; shift
  timeout 25 env "$@" serve --model $T --port 8100 --spec off > "$OUT/$name.txt" 2>&1 &
  local p=$!
  for i in $(seq 40); do grep -q "listening on\|Segmentation\|Fatal" "$OUT/$name.txt" && break; sleep 0.5; done
  sleep 0.5; kill $p 2>/dev/null; wait $p 2>/dev/null
  echo "$name: $(grep -c 'listening on' "$OUT/$name.txt") listening, $(grep -c 'Fatal Python error' "$OUT/$name.txt") fatal"
}
say probes
serve native LD_PRELOAD=/tmp/segv.so $PY -m localgw
sed -n '/NATIVE/,/MAPS/p' "$OUT/native.txt" | cut -c1-240 | head -60
sed -n '/MAPS/,$p' "$OUT/native.txt" | awk '{print $6}' | grep '\.so' | sort -u > "$OUT/maps.txt"
grep -i "stdc++\|libgcc\|cuda\|ggml\|llama" "$OUT/maps.txt"
serve plain_c LC_ALL=C LANG=C $PY -m localgw
serve bigstack $PY -c "import threading,sys; threading.stack_size(256<<20); sys.argv[0]='localgw'; from localgw.cli import main; sys.exit(main())"
serve httptools_first $PY -c "import httptools, uvloop, sys; sys.argv[0]='localgw'; from localgw.cli import main; sys.exit(main())"
serve libstdcxx LD_PRELOAD=$(/sbin/ldconfig -p | awk '/libstdc\+\+.so.6 .*x86-64/{print $NF; exit}') $PY -m localgw
ldd /tmp/cpsite/llama_cpp/lib/libllama.so | head -20
say done
