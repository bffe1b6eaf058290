"""In-process A/B of an XLA CPU compiler option on colorjax's real train step, steps interleaved.

The host is shared and noisy: two processes timed minutes apart differ by up to 30 %. Here the
same jitted step is compiled twice (without / with the option, `Lowered.compile`'s
compiler_options) and the two executables alternate step by step on the same state, so both
see the same noise. Pin it:

    taskset -c 1 python benchmarks/xla_flag_ab.py deepcolorization-small --batch 4 --size 128 \
        --option xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence

import jax
import numpy as np

from colorjax.bench import real_train_step
from colorjax.bench.records import collect_metadata
from colorjax.parallel import make_mesh


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: print one JSON line with both medians and their ratio."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--option", required=True, help="NAME=VALUE of an XLA debug option")
    p.add_argument("--out", help="append the JSON line to this file too")
    args = p.parse_args(argv)
    name, _, text = args.option.partition("=")
    # Typed like the option: XLA rejects the string "false" for a bool option.
    value: str | bool | int = {"true": True, "false": False}.get(text.lower(), text)
    if isinstance(value, str) and value.lstrip("-").isdigit():
        value = int(value)
    tb = real_train_step(args.model, args.size, args.batch, "f32", make_mesh(1))
    rgb = np.random.default_rng(0).integers(0, 256, (args.batch, args.size, args.size, 3), np.uint8)
    data = {"rgb": jax.device_put(rgb)}
    lowered = tb.step.lower(tb.state, data)
    steps = {"base": lowered.compile(), "option": lowered.compile(compiler_options={name: value})}
    state = tb.state
    times: dict[str, list[float]] = {k: [] for k in steps}
    for i in range(args.steps + 2):
        for key, step in steps.items() if i % 2 else reversed(steps.items()):
            t0 = time.perf_counter()
            state, metrics = step(state, data)
            jax.block_until_ready(metrics)
            if i >= 2:  # the first two rounds warm up both executables
                times[key].append(time.perf_counter() - t0)
    base, opt = (1e3 * statistics.median(times[k]) for k in ("base", "option"))
    row = {
        "model": args.model,
        "batch": args.batch,
        "size": args.size,
        "option": args.option,
        "steps": args.steps,
        "base_ms": round(base, 2),
        "option_ms": round(opt, 2),
        "option_over_base": round(opt / base, 3),
        **collect_metadata(jax.devices()[:1], "f32", with_torch=False),
    }
    line = json.dumps(row)
    print(line)
    if args.out:
        with open(args.out, "a") as f:
            f.write(line + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
