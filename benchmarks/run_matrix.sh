#!/usr/bin/env bash
# One command per machine for the committed benchmark matrices.
#   bash benchmarks/run_matrix.sh cpu    # the CPU matrix, 1 thread and all cores (TORCH_MODES,
#                                        # BENCH_NOTE env vars: torch modes, a meta note)
#   bash benchmarks/run_matrix.sh gpu    # H100/H200: every model, 64/256/512 px, bf16 and f32
#   bash benchmarks/run_matrix.sh gpu-core  # the two flagship nets at 256 px (~15 min of GPU)
# Results go to benchmarks/results/<device>-<date>/[<dtype>/]: results.jsonl from the bench,
# results.md + PNGs from benchmarks/plot.py.
set -euo pipefail
preset="${1:-cpu}"
cd "$(dirname "$0")/.."
date="$(date -u +%Y-%m-%d)"
device="$(python -c 'import jax; print(jax.devices()[0].device_kind.replace(" ", "_"))')"
root="benchmarks/results/${device}-${date}"
case "$preset" in
  cpu)
    # Equal compute threads for both frameworks, enforced and verified: `--threads N` pins the
    # process to N CPUs before JAX starts (XLA sizes its CPU pool from the affinity mask) and
    # sets torch.set_num_threads(N); every row records CPU/wall and is re-timed or flagged
    # when it does not fit N. Run for 1 thread and for every core of the box.
    # TORCHINDUCTOR_COMPILE_THREADS=1: no compile worker pool fighting for the same cores.
    # `--cpu-devices N`: colorjax splits the N cores into N JAX devices and shards the batch
    # over them (data parallelism, one thread per device), its best use of several cores; the
    # 1-thread run is one device.
    ncpu="$(python -c 'import os; print(len(os.sched_getaffinity(0)))')"
    for threads in 1 "$ncpu"; do
      OMP_NUM_THREADS="$threads" TORCHINDUCTOR_COMPILE_THREADS=1 \
      python -m colorjax.cli bench --threads "$threads" --cpu-devices "$threads" \
        --models colornet-tiny deepcolorization-small --resolutions 64 128 --batch-sizes 4 8 \
        --dtype f32 --trials 5 --iters 2 --warmup 2 --latency-samples 20 \
        --kinds train infer --torch --torch-modes ${TORCH_MODES:-eager} \
        --note "${BENCH_NOTE:-}" --out "$root/threads-$threads"
      python benchmarks/plot.py "$root/threads-$threads/results.jsonl"
    done
    ;;
  gpu)
    for dtype in bf16 f32; do
      python -m colorjax.cli bench --resolutions 64 256 512 --batch-sizes 16 64 256 \
        --dtype "$dtype" --trials 5 --iters 10 --warmup 3 --latency-samples 200 \
        --photo-sizes 1024x1024 4000x3000 --torch --out "$root/$dtype" ||
        echo "some $dtype configurations failed (status=error rows, e.g. out of memory)" >&2
      python benchmarks/plot.py "$root/$dtype/results.jsonl"
    done
    ;;
  gpu-core)
    for dtype in bf16 f32; do
      python -m colorjax.cli bench --models colornet-base deepcolorization-unet256 \
        --resolutions 256 --batch-sizes 16 64 --dtype "$dtype" --trials 5 --iters 10 \
        --warmup 3 --latency-samples 100 --photo-sizes 1024x1024 4000x3000 --torch \
        --out "$root/$dtype" ||
        echo "some $dtype configurations failed (status=error rows)" >&2
      python benchmarks/plot.py "$root/$dtype/results.jsonl"
    done
    ;;
  *)
    echo "usage: $0 cpu|gpu|gpu-core" >&2
    exit 2
    ;;
esac
