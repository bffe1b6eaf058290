"""Benchmark harness: throughput, latency, compile time, memory, FLOPs, MFU (`colorjax bench`).

- `threads`: fair CPU timing (pinning, CPU/wall per row, re-time or flag);
- `records`: the record schema, metadata, speedups, JSONL files and the summary table;
- `measure`: one measurement per kind, timing the real `colorjax.train` step;
- `harness`: the driver over the model x resolution x batch matrix.

FLOP and memory numbers come from `colorjax.models.cost`; reports with plots and the PyTorch
reference nets live in the checkout's `benchmarks/`.
"""

from colorjax.bench.harness import load_module, run_benchmarks
from colorjax.bench.measure import DTYPES, BenchConfig, real_train_step
from colorjax.bench.records import (
    PEAK_TFLOPS,
    RECORD_FIELDS,
    SCHEMA_VERSION,
    attach_speedups,
    flops_fields,
    lookup_peak_tflops,
    make_record,
    markdown_table,
    read_jsonl,
    summarize_times,
    throughput_fields,
    write_jsonl,
)
from colorjax.bench.threads import check_cpu_use, pin_threads, time_calls

__all__ = [
    "DTYPES",
    "PEAK_TFLOPS",
    "RECORD_FIELDS",
    "SCHEMA_VERSION",
    "BenchConfig",
    "attach_speedups",
    "check_cpu_use",
    "flops_fields",
    "load_module",
    "lookup_peak_tflops",
    "make_record",
    "markdown_table",
    "pin_threads",
    "read_jsonl",
    "real_train_step",
    "run_benchmarks",
    "summarize_times",
    "throughput_fields",
    "time_calls",
    "write_jsonl",
]
