#!/usr/bin/env bash
# Speculative decoding on a GPU, side by side in one run: localgw --spec off/auto/ngram/draft and
# auto with a draft model, against llama-server without speculation, with its look-up modes
# (ngram-simple, ngram-map-k, ngram-mod) and with the same draft model; then llama-bench's cost of
# batches of 1-32 rows. Models: scripts/gpu/mkpair.py (a 1B-cost random target whose layers past
# the second add nothing, and its first two layers as the draft: they agree).
#
# Here, from the repo root, once per commit to measure (the device machine has no network):
#     ../shared/gpu/make-bundle.sh
#     python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#       -d .gpu-bundle/wheels httptools          # serve's HTTP protocol; the bundle lacks it
# There (device tool: carry [".gpu-bundle"], about 9 minutes with the build):
#     OUT=$OUT bash scripts/gpu/spec_side.sh
# On a machine kept warm after a run, a second run reuses the build and the models.
# DRY=1: on a CPU machine, no build (the venv's llama_cpp; LS_BIN/LB_BIN name llama-server and
# llama-bench), a small pair: checks the script before device time is spent on it.
set -u -o pipefail
R=$(pwd); B=$R/.gpu-bundle; S=$R/scripts/gpu
OUT=${OUT:-/tmp/gs-out}; mkdir -p "$OUT" /tmp/gslogs
exec > >(tee -a "$OUT/log.txt") 2>&1
T0=$(date +%s)
el() { echo $(( $(date +%s) - T0 )); }
say() { echo "=== [$(el)s] $*"; }
export PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_ROOT_USER_ACTION=ignore
export PIP_CONFIG_FILE=/dev/null HF_HUB_OFFLINE=1 LOCALGW_HOME=/tmp/gslgw
DRY=${DRY:-0}
REPEATS=${REPEATS:-3}
STAGES=${STAGES:-lookups draft rows}  # the benches to run (a second call on a warm machine: the rest)
# DEADLINE: seconds; a bench that could end past it is skipped (the device call's limit minus a margin)
PIDS=""
cleanup() { for p in $PIDS; do kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null; done; sleep 2
            for p in $PIDS; do kill -KILL -- "-$p" 2>/dev/null; done; say "end"; }
trap cleanup EXIT

if [ "$DRY" = 1 ]; then
  PY=${PY:-$R/.venv/bin/python}
  GGUFPY=$($PY -c "import gguf,os;print(os.path.dirname(os.path.dirname(gguf.__file__)))")
  PAIR=(--shape smol --layers 6 --keep 2)
  NGL=()
  $PY "$S/mkpair.py" /tmp/gs_t.gguf /tmp/gs_d.gguf "${PAIR[@]}" --meta "$B/tokenizer-meta.json.gz" --gguf-py "$GGUFPY"
  export PYTHONPATH=$R
else
  [ -x /opt/torch/.venv/bin/python3 ] && export PATH=/opt/torch/.venv/bin:$PATH
  export PATH=$PATH:/usr/local/cuda/bin
  command -v nvcc && export CUDACXX=$(command -v nvcc)
  PY=python3; NGL=(-ngl 99)
  nvidia-smi -L; nproc
  if [ -d /tmp/skb ] && [ -f /tmp/gs_t.gguf ] && [ -f /tmp/gs_d.gguf ]; then
    REUSE=1; say "reusing the build and the models"
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$B"/wheels/httptools*.whl
  else
    REUSE=0
  fi
  [ $REUSE = 1 ] || {
  say "wheels"
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$B"/wheels/*.whl
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/buildsite "$B"/buildwheels/*.whl
  mkdir -p /tmp/build; tar -xzf "$B/llama_cpp_python-0.3.36.tar.gz" -C /tmp/build
  SRC=/tmp/build/llama_cpp_python-0.3.36
  GGUFPY=$SRC/vendor/llama.cpp/gguf-py
  export CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_USE_PREBUILT_UI=OFF -DGGML_CUDA_FA=OFF -DGGML_CUDA_NCCL=OFF"
  export CMAKE_BUILD_PARALLEL_LEVEL=16
  say "build (background) and the pair of models meanwhile"
  setsid env PYTHONPATH=/tmp/site:/tmp/buildsite $PY -m pip install -v --no-index --no-build-isolation \
    --no-deps --no-cache-dir --target /tmp/site --config-settings=build-dir=/tmp/skb "$SRC" > /tmp/build.log 2>&1 &
  BP=$!; PIDS="$PIDS $BP"
  PAIR=(--shape 1b --keep 2)
  PYTHONPATH=/tmp/site timeout 200 $PY "$S/mkpair.py" /tmp/gs_t.gguf /tmp/gs_d.gguf "${PAIR[@]}" --meta "$B/tokenizer-meta.json.gz" --gguf-py "$GGUFPY"
  for i in $(seq 450); do kill -0 $BP 2>/dev/null || break; [ $((i % 30)) = 0 ] && echo "build +${i}s $(grep -aoE '^ *\[[0-9]+/[0-9]+\]' /tmp/build.log | tail -1)"; sleep 1; done
  wait $BP; rc=$?
  say "build rc=$rc"
  tail -n 30 /tmp/build.log > "$OUT/build_tail.txt"
  [ $rc = 0 ] || { tail -n 40 /tmp/build.log; exit 1; }
  }
  export PYTHONPATH=$R:/tmp/site
  LS_BIN=$(find /tmp/skb -type f -name llama-server -perm -u+x | head -1)
  LB_BIN=$(find /tmp/skb -type f -name llama-bench -perm -u+x | head -1)
  export LD_LIBRARY_PATH="$(dirname "$LS_BIN")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
$PY -c "import llama_cpp; print('llama_cpp', llama_cpp.__version__, 'gpu offload', llama_cpp.llama_supports_gpu_offload())"
# how the build links the C++ runtime (localgw.engine's docstring: a copy inside ggml's libraries)
LIBDIR=$($PY -c "import llama_cpp,os; print(os.path.join(os.path.dirname(llama_cpp.__file__), 'lib'))")
for f in libllama.so libggml-cuda.so.0; do [ -f "$LIBDIR/$f" ] && echo "$f needs: $(readelf -d "$LIBDIR/$f" | grep -o 'NEEDED.*' | grep -o '\[.*\]' | tr '\n' ' ')"; done
env | grep -i "^\(C\|CXX\|LD\|CUDA\|NVCC_\)*FLAGS=" || true
T=/tmp/gs_t.gguf; D=/tmp/gs_d.gguf

LGW_EXTRA=()  # what the probe below found localgw needs to start here
lgw() {  # NAME PORT args...
  local name=$1 port=$2; shift 2
  setsid $PY -m localgw serve --model $T --port "$port" --keep-alive 1h "${LGW_EXTRA[@]}" "$@" > /tmp/gslogs/$name.log 2>&1 &
  PIDS="$PIDS $!"; echo "$name $port $!" >> /tmp/gslogs/sides
}
lsv() {  # NAME PORT args...
  local name=$1 port=$2; shift 2
  setsid "$LS_BIN" -m $T "${NGL[@]}" -c 8192 --host 127.0.0.1 --port "$port" "$@" > /tmp/gslogs/$name.log 2>&1 &
  PIDS="$PIDS $!"; echo "$name $port $!" >> /tmp/gslogs/sides
}
wait_ready() {  # names...: poll each until it answers; drop the ones that never do
  for name in "$@"; do
    ok=0
    pid=$(grep "^$name " /tmp/gslogs/sides | cut -d' ' -f3)
    for i in $(seq ${POLLS:-240}); do
      get "$(url $name)/v1/models" > /dev/null && { ok=1; break; }
      kill -0 "$pid" 2>/dev/null || break   # it died: its log says why
      sleep 0.5
    done
    echo "$name ready=$ok after ${i} polls"
    [ $ok = 1 ] || { tail -n 20 /tmp/gslogs/$name.log; sed -i "/^$name /d" /tmp/gslogs/sides; }
  done
}
get() { $PY -c "import sys,urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())" "$1" 2>/dev/null; }
url() { echo "http://127.0.0.1:$(grep "^$1 " /tmp/gslogs/sides | cut -d' ' -f2)"; }
stop() {  # NAME: stop one side and forget it
  local pid; pid=$(grep "^$1 " /tmp/gslogs/sides | cut -d' ' -f3)
  [ -n "$pid" ] && { kill -TERM -- "-$pid" 2>/dev/null; sleep 1; kill -KILL -- "-$pid" 2>/dev/null; }
  sed -i "/^$1 /d" /tmp/gslogs/sides
}
# Probe: localgw alone with its defaults. If it does not start, its log (llama.cpp's last words,
# Python's stacks), the native stack at the fault, then settings that isolate the cause;
# the first that starts is used for every localgw side below.
say "probe"
: > /tmp/gslogs/sides
started() { grep -q "^$1 " /tmp/gslogs/sides; }
lgw probe-default 8100 --spec off; POLLS=120 wait_ready probe-default
if started probe-default; then stop probe-default
else
  { echo "localgw did not start with its defaults"; tail -n 60 /tmp/gslogs/probe-default.log; } > "$OUT/probe.txt"
  say "native stack"  # segv.c: the native stack and the mapped files at the fault (no gdb there)
  if gcc -shared -fPIC -O1 -w -o /tmp/segv.so "$S/segv.c"; then
    LD_PRELOAD=/tmp/segv.so timeout 40 $PY -m localgw serve --model $T --port 8099 --spec off \
      > /tmp/gslogs/native.log 2>&1 < /dev/null
    pkill -KILL -f "port 8099" 2>/dev/null  # one that started after all outlives its timeout
    sed -n '/NATIVE/,/MAPS/p' /tmp/gslogs/native.log | cut -c1-240 >> "$OUT/probe.txt"
    sed -n '/MAPS/,$p' /tmp/gslogs/native.log | awk '{print $6}' | grep '\.so' | sort -u >> "$OUT/probe.txt"
  fi
  for v in "--parallel 1" "--kv-unified" "--gpu-layers 0" "--parallel 1 --gpu-layers 0 --flash-attn off"; do
    name=probe-$(echo "$v" | tr -d ' -')
    lgw "$name" 8100 --spec off $v; POLLS=120 wait_ready "$name"
    if started "$name"; then echo "starts with: $v" | tee -a "$OUT/probe.txt"; stop "$name"
      read -r -a LGW_EXTRA <<< "$v"; break
    fi
    echo "fails with: $v" >> "$OUT/probe.txt"
  done
  ((${#LGW_EXTRA[@]})) || { say "localgw starts with none of the probe's settings: $OUT/probe.txt"; exit 1; }
fi
cat "$OUT/probe.txt" 2>/dev/null | tail -n 30
say "servers"
: > /tmp/gslogs/sides
lgw lgw-off 8101 --spec off
lgw lgw-ngram 8103 --spec ngram
lgw lgw-draft 8104 --spec draft --draft-model $D
if [ -n "${LS_BIN:-}" ]; then
  lsv ls-none 8201
  lsv ls-ngram-simple 8202 --spec-type ngram-simple
  lsv ls-ngram-map-k 8203 --spec-type ngram-map-k
  lsv ls-ngram-mod 8204 --spec-type ngram-mod
  lsv ls-draft 8205 -md $D --spec-type draft-simple --spec-draft-n-max 16 "${NGL[@]/-ngl/-ngld}"
fi
wait_ready $(cut -d' ' -f1 /tmp/gslogs/sides)
grep -q "^lgw-off " /tmp/gslogs/sides || { say "localgw did not start: its log is above"; exit 1; }
# auto times rows at load: alone on the device, not beside the others' loading
lgw lgw-auto 8102 --spec auto
wait_ready lgw-auto
lgw lgw-auto-draft 8105 --spec auto --draft-model $D
wait_ready lgw-auto-draft
say "servers ready"
for name in lgw-auto lgw-auto-draft; do get "$(url $name)/health" | $PY -c "import json,sys; print('$name', json.dumps(json.load(sys.stdin)['models'][0].get('speculative')))"; done
grep -h "timed at load\|not timed" /tmp/gslogs/lgw-*.log

side() { grep -q "^$1 " /tmp/gslogs/sides && echo "--side $2=$(url $1)"; }
bench() {  # OUTNAME sides...
  local out=$1; shift
  (( $(el) + ${BENCH_LIMIT:-200} <= ${DEADLINE:-100000} )) || { say "skip $out: past DEADLINE"; return; }
  say "bench $out"
  timeout ${BENCH_LIMIT:-200} $PY scripts/bench.py --spec-cases --gguf $T --model gs_t --url "$(url lgw-off)" \
    --repeats "$REPEATS" --json "$OUT/$out.json" "$@" 2>&1 | tail -n 30
}
[[ $STAGES == *draft* ]] && bench spec_draft $(side lgw-draft localgw-draft) $(side lgw-auto-draft localgw-auto+draft) \
  $(side ls-none ls-none) $(side ls-draft ls-md)
[[ $STAGES == *lookups* ]] && bench spec_lookups $(side lgw-auto localgw-auto) $(side lgw-ngram localgw-ngram) \
  $(side ls-none ls-none) $(side ls-ngram-simple ls-ngram-simple) $(side ls-ngram-map-k ls-map-k) \
  $(side ls-ngram-mod ls-mod)

say "counts"
for name in $(cut -d' ' -f1 /tmp/gslogs/sides); do
  case $name in
    lgw-*) get "$(url $name)/health" | $PY -c "import json,sys; print('$name', json.dumps(json.load(sys.stdin)['models'][0].get('speculative')))" ;;
  esac
done | tee "$OUT/counts.txt"
for name in $(cut -d' ' -f1 /tmp/gslogs/sides); do
  case $name in ls-*) echo "$name: $(grep -a 'draft acceptance\|acceptance rate\|n_draft\|accepted' /tmp/gslogs/$name.log | tail -n 3 | tr '\n' ' ')";; esac
done | tee -a "$OUT/counts.txt"

if [ -n "${LB_BIN:-}" ] && [[ $STAGES == *rows* ]] && (( $(el) + 90 <= ${DEADLINE:-100000} )); then
  say "llama-bench: what rows cost"
  timeout 90 "$LB_BIN" -m $T "${NGL[@]}" -p 1,2,4,8,17,32 -n 32 -r 3 -o md 2>/dev/null | tee "$OUT/llama_bench.md"
fi
for f in /tmp/gslogs/*.log; do echo "##### $f"; grep -av "^srv  \|^slot \|^que  " "$f" | tail -n 15; done > "$OUT/servers.txt"
say "done"
