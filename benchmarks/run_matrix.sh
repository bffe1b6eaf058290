#!/usr/bin/env bash
# One command per machine for the committed benchmark matrices.
#   bash benchmarks/run_matrix.sh cpu    # the small CPU matrix (shared 2-core box friendly)
#   bash benchmarks/run_matrix.sh gpu    # H100/H200: every model, 64/256/512 px, bf16 and f32
#   bash benchmarks/run_matrix.sh gpu-core  # the two flagship nets at 256 px (~15 min of GPU)
# Results go to benchmarks/results/<device>-<date>/[<dtype>/] (JSONL + Markdown + PNGs).
set -euo pipefail
preset="${1:-cpu}"
cd "$(dirname "$0")/.."
date="$(date -u +%Y-%m-%d)"
device="$(python -c 'import jax; print(jax.devices()[0].device_kind.replace(" ", "_"))')"
root="benchmarks/results/${device}-${date}"
case "$preset" in
  cpu)
    # One compute thread for both frameworks: on a shared, oversubscribed box PyTorch's OpenMP
    # threads spin-wait and stall (100x outliers), which would measure the neighbours, not us.
    # TORCHINDUCTOR_COMPILE_THREADS=1: no compile worker pool fighting for the same cores.
    OMP_NUM_THREADS=1 TORCHINDUCTOR_COMPILE_THREADS=1 \
    XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \
    python -m colorjax.bench \
      --models colornet-tiny deepcolorization-small --resolutions 64 --batch-sizes 4 8 \
      --dtype f32 --trials 3 --iters 2 --warmup 1 --latency-samples 20 \
      --photo-sizes 1024x768 --torch --out "$root"
    ;;
  gpu)
    for dtype in bf16 f32; do
      python -m colorjax.bench --resolutions 64 256 512 --batch-sizes 16 64 256 \
        --dtype "$dtype" --trials 5 --iters 10 --warmup 3 --latency-samples 200 \
        --photo-sizes 1024x1024 4000x3000 --torch --out "$root/$dtype" ||
        echo "some $dtype configurations failed (status=error rows, e.g. out of memory)" >&2
    done
    ;;
  gpu-core)
    for dtype in bf16 f32; do
      python -m colorjax.bench --models colornet-base deepcolorization-unet256 \
        --resolutions 256 --batch-sizes 16 64 --dtype "$dtype" --trials 5 --iters 10 \
        --warmup 3 --latency-samples 100 --photo-sizes 1024x1024 4000x3000 --torch \
        --out "$root/$dtype" ||
        echo "some $dtype configurations failed (status=error rows)" >&2
    done
    ;;
  *)
    echo "usage: $0 cpu|gpu|gpu-core" >&2
    exit 2
    ;;
esac
