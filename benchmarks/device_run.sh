#!/usr/bin/env bash
# One device-tool call: install carried wheels, print the device and versions, run a preset
# inside one call's 10 minutes, and leave results + metadata + plots in $OUT (at most 8 files)
# or, when OUT is unset (a local run), in benchmarks/results/<device>-<date>/<preset>/.
#
#   bash benchmarks/device_run.sh smoke          # tiny everything: checks the plumbing (CPU too)
#   bash benchmarks/device_run.sh gpu-core-bf16  # colornet-base (reg + cls), unet256 G+D, 256 px,
#                                                # batch 16/64/256: JAX vs torch eager vs compile
#   bash benchmarks/device_run.sh gpu-core-f32   # the same in f32 (TF32 on both sides)
#   bash benchmarks/device_run.sh gpu-core       # both dtypes (needs more than one call's time)
#   bash benchmarks/device_run.sh gpu-infer      # batch-1 latency, throughput, 4000x3000 colorize
#   bash benchmarks/device_run.sh gpu-profile    # jax.profiler trace + top kernels + HLO layouts
#   bash benchmarks/device_run.sh gpu-loader     # multi-process Grain, 256 px crops of big JPEGs
#
# Environment: BUDGET_S (seconds for the whole call, default 540: the tool kills at 600),
# MODELS / BATCHES (override a preset's lists), JAX_CACHE=1 (persistent compilation + autotune
# cache in .cache/, compile_s then measures cache hits), COLORJAX_TORCH_COMPILE_MODE
# (default max-autotune), COLORJAX_BENCH_TF32=0 (strict f32 on both sides), PHOTOS=DIR (real
# full-size photos for gpu-loader, e.g. a carried .data/photos), PYTHON.
# Every step runs under the remaining budget (SIGINT, then KILL): a stopped bench still leaves
# its finished configurations (results.partial.jsonl), and the report is always written.
set -uo pipefail
preset="${1:-smoke}"
cd "$(dirname "$0")/.."
start=$(date +%s)
budget="${BUDGET_S:-540}"
py="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"

# --- carried wheels (.whl/, from benchmarks/fetch_wheels.sh) and the source checkout -------------
site=/tmp/colorjax-site
# Only where Grain is missing (the device image): a local venv keeps its own versions.
if compgen -G ".whl/*.whl" >/dev/null && ! "$py" -c 'import grain' 2>/dev/null; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" .whl/*.whl || { echo "installing .whl/ failed" >&2; exit 3; }
  export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-1}"
if [ "${JAX_CACHE:-0}" = 1 ]; then
  mkdir -p .cache/jax .cache/xla-autotune .cache/inductor
  export JAX_COMPILATION_CACHE_DIR="$PWD/.cache/jax"
  export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=0
  export TORCHINDUCTOR_CACHE_DIR="$PWD/.cache/inductor"
  export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_per_fusion_autotune_cache_dir=$PWD/.cache/xla-autotune"
fi

backend="$("$py" -c 'import jax; print(jax.default_backend())' 2>/dev/null || echo none)"
device="$("$py" -c 'import jax; print(jax.devices()[0].device_kind.replace(" ", "_"))' \
  2>/dev/null || echo unknown)"
out="${OUT:-benchmarks/results/${device}-$(date -u +%Y-%m-%d)/${preset}}"
mkdir -p "$out"
scratch="$(mktemp -d /tmp/colorjax-devrun.XXXXXX)"
log="$out/log.txt"
: >"$log"
say() { echo "$*" | tee -a "$log"; }

# --- device and versions -------------------------------------------------------------------------
{
  echo "# device_run.sh $preset  $(date -u +%Y-%m-%dT%H:%M:%SZ)  host $(hostname)"
  echo "## nvidia-smi"
  nvidia-smi 2>&1 || echo "(no nvidia-smi)"
  echo "## versions"
  "$py" - <<'EOF'
import importlib, os, platform, sys
print("python", platform.python_version(), sys.executable)
for name in ("jax", "jaxlib", "flax", "optax", "orbax.checkpoint", "numpy", "PIL", "torch",
             "triton", "grain", "matplotlib", "skimage"):
    try:
        mod = importlib.import_module(name)
        print(f"{name} {getattr(mod, '__version__', '?')}  {os.path.dirname(mod.__file__)}")
    except Exception as err:  # noqa: BLE001
        print(f"{name} MISSING ({type(err).__name__}: {err})")
try:
    import jax
    print("jax devices", jax.devices())
except Exception as err:  # noqa: BLE001
    print("jax devices: error", err)
try:
    import torch
    print("torch cuda", torch.cuda.is_available(), torch.version.cuda,
          torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
except Exception as err:  # noqa: BLE001
    print("torch: error", err)
EOF
  echo "## environment"
  env | grep -E '^(XLA_|JAX_|COLORJAX_|TORCH|CUDA_VISIBLE|OMP_|BUDGET_S|MODELS|BATCHES)' | sort
  echo "cpus $(nproc)  git $(git rev-parse --short HEAD 2>/dev/null || echo none)"
} 2>&1 | tee -a "$log"
has_grain=0
"$py" -c 'import grain' 2>/dev/null && has_grain=1
say "backend=$backend device=$device grain=$has_grain out=$out scratch=$scratch budget=${budget}s"

# --- steps under the deadline --------------------------------------------------------------------
remaining() { echo $((budget - ($(date +%s) - start))); }
step() {  # step NAME MIN_SECONDS CMD...: run CMD if MIN_SECONDS are left, stopped at the deadline
  local name="$1" need="$2"; shift 2
  local left; left="$(remaining)"
  if [ "$left" -lt "$need" ]; then
    say "== $name: skipped (${left}s left, needs ${need}s)"
    return 0
  fi
  say "== $name ($((left - 25))s max): $*"
  mkdir -p "$scratch/$name"
  # 25 s kept back for the report; SIGINT lets bench keep its finished configurations.
  timeout -s INT -k 15 "$((left - 25))" "$@" 2>&1 | tee -a "$log" | grep -vE '^\s*$' | tail -n 40
  say "== $name: exit ${PIPESTATUS[0]} after $(( $(date +%s) - start ))s"
}
bench() {  # bench NAME MIN_SECONDS ARGS...: one colorjax bench run into scratch/NAME
  local name="$1" need="$2"; shift 2
  step "$name" "$need" "$py" -m colorjax.cli bench --out "$scratch/$name" "$@"
}
loader_args=()
[ "$has_grain" = 1 ] || loader_args=(--kinds train infer colorize)

case "$preset" in
  smoke)
    if [ "$backend" = gpu ]; then size=64 modes=(eager compile); else size=32 modes=(eager); fi
    bench smoke-bench 30 --models ${MODELS:-colornet-tiny deepcolorization-small} \
      --resolutions "$size" --batch-sizes ${BATCHES:-2 4} --dtype f32 --trials 2 --iters 1 \
      --warmup 1 --latency-samples 5 --photo-sizes 256x192 --torch --torch-modes "${modes[@]}" \
      "${loader_args[@]}"
    step smoke-profile 20 "$py" benchmarks/profile_step.py --model colornet-tiny \
      --resolution "$size" --batch 4 --steps 2 --warmup 1 --out "$scratch/smoke-profile"
    if [ "$has_grain" = 1 ]; then
      step smoke-loader 20 "$py" benchmarks/loader_bench.py --configs large256 --workers 0 1 \
        --worker-type process --batch-size 4 --batches 2 --warmup 1 --steps 1 \
        --large-side 512 --out "$scratch/smoke-loader/loader.jsonl"
    fi
    ;;
  gpu-core | gpu-core-bf16 | gpu-core-f32)
    case "$preset" in gpu-core-bf16) dtypes=(bf16) ;; gpu-core-f32) dtypes=(f32) ;; *) dtypes=(bf16 f32) ;; esac
    # One bench run per (dtype, model): a deadline stop loses at most the rest of one model.
    for dtype in "${dtypes[@]}"; do
      for model in ${MODELS:-colornet-base colornet-base-cls deepcolorization-unet256}; do
        bench "train-$dtype-$model" 60 --models "$model" --resolutions 256 \
          --batch-sizes ${BATCHES:-16 64 256} --dtype "$dtype" --kinds train --trials 5 \
          --iters 10 --warmup 3 --torch
      done
    done
    ;;
  gpu-infer)
    for model in ${MODELS:-colornet-base colornet-base-cls deepcolorization-unet256}; do
      bench "infer-bf16-$model" 60 --models "$model" --resolutions 256 \
        --batch-sizes ${BATCHES:-256} --dtype bf16 --kinds infer colorize --trials 5 --iters 10 \
        --warmup 3 --latency-samples 200 --photo-sizes 1024x1024 4000x3000 --torch
    done
    ;;
  gpu-profile)
    for model in ${MODELS:-colornet-base deepcolorization-unet256}; do
      step "profile-bf16-$model" 60 "$py" benchmarks/profile_step.py --model "$model" \
        --resolution 256 --batch ${BATCHES:-64} --dtype bf16 --steps 5 --warmup 3 \
        --out "$scratch/profile-bf16-$model"
    done
    ;;
  gpu-loader)
    if [ "$has_grain" != 1 ]; then
      say "gpu-loader needs Grain: run benchmarks/fetch_wheels.sh here and carry .whl"
    else
      large=(--large-side 4000)
      [ -n "${PHOTOS:-}" ] && large=(--large-dir "$PHOTOS")
      step loader 60 "$py" benchmarks/loader_bench.py --configs large256 \
        --workers 0 4 8 16 --worker-type process --batch-size ${BATCHES:-64} --batches 40 \
        --warmup 8 --steps 20 --model ${MODELS:-colornet-base} "${large[@]}" \
        --note "device_run.sh gpu-loader" --out "$scratch/loader/loader.jsonl"
    fi
    ;;
  *)
    echo "usage: $0 smoke|gpu-core|gpu-core-bf16|gpu-core-f32|gpu-infer|gpu-profile|gpu-loader" >&2
    exit 2
    ;;
esac

plots=()
"$py" -c 'import matplotlib' 2>/dev/null || plots=(--no-plots)
"$py" benchmarks/device_report.py "$scratch" "$out" "${plots[@]}" 2>&1 | tee -a "$log"
say "done in $(( $(date +%s) - start ))s; files in $out: $(ls "$out" | tr '\n' ' ')"
rm -rf "$scratch"
