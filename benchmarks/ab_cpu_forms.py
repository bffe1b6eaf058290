"""A/B colorjax's CPU layer forms against the plain ones, in one pinned process (TUNING.md).

    taskset -c 1 python benchmarks/ab_cpu_forms.py \
        deepcolorization-colornet --batch 32 --size 64 --variants all,phase,phase+gn+kg+uc

Each variant is the production train step (colorjax.train) compiled with some CPU forms
switched back to what other backends run, for the measurement only: `phase` = UpConv/DownConv
as XLA's own (transposed) convs, `gn` = flax's GroupNorm reduction, `kg` = XLA's kernel
gradient for ConvNormAct's 3x3 convs, `uc` = nearest upsampling then conv in ColorNet's
decoder, `1x1` = XLA's convolution for the 1x1 heads (Conv1x1), `narrow` = XLA's kernel
gradient for the UpConv/PatchConv layers with few outputs (no tap grams), `drop` = one random
word per element for the U-Net's dropout masks, `in` = the GAN's instance norm as flax computes
it; `all` switches nothing off.
Variants run in interleaved rounds, so a load change on a shared machine hits all of them
alike; CPU/wall is printed per variant.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Iterator

import jax
import numpy as np

from colorjax.bench import real_train_step
from colorjax.models import conv4x4, deepcolorization, layers
from colorjax.models.cpu import conv as cpu_conv
from colorjax.models.cpu import conv4x4 as cpu4
from colorjax.parallel import make_mesh


def _without_mesh(reference):
    """A layer's reference form with the CPU form's signature (the mesh is not needed)."""
    return lambda x, kernel, mesh=None: reference(x, kernel)


@contextlib.contextmanager
def plain_forms(off: str) -> Iterator[None]:
    """Switch the named CPU forms ('+'-separated) back to the default ones while tracing."""
    names = ("group_norm", "conv_same", "upsample_conv", "conv1x1", "conv_s2", "instance_norm")
    saved = {n: getattr(cpu_conv, n) for n in names}
    saved_up, saved_down = conv4x4.UpConv.cpu_form, conv4x4.DownConv.cpu_form
    saved_patch = conv4x4.PatchConv.cpu_form
    saved_mask = deepcolorization._half_keep_mask
    parts = set(off.split("+"))
    if "drop" in parts:
        deepcolorization._half_keep_mask = lambda key, shape: jax.random.bernoulli(key, 0.5, shape)
    if "narrow" in parts:
        conv4x4.UpConv.cpu_form = staticmethod(_without_mesh(cpu4.upconv_phases))
        conv4x4.PatchConv.cpu_form = staticmethod(_without_mesh(conv4x4._patchconv_lax))
    if "phase" in parts:
        conv4x4.UpConv.cpu_form = staticmethod(_without_mesh(conv4x4._upconv_lax))
        conv4x4.DownConv.cpu_form = staticmethod(_without_mesh(conv4x4._downconv_lax))
    if "gn" in parts:
        cpu_conv.group_norm = layers._group_norm_grouped
    if "in" in parts:
        cpu_conv.instance_norm = layers._instance_norm_reference
    if "kg" in parts:
        cpu_conv.conv_same = _without_mesh(layers._conv_same)
    if "uc" in parts:
        cpu_conv.upsample_conv = layers._upsample_conv
    if "kg2" in parts:
        cpu_conv.conv_s2 = _without_mesh(layers._conv_s2)
    if "1x1" in parts:
        cpu_conv.conv1x1 = layers._conv1x1_lax
    try:
        yield
    finally:
        for n, fn in saved.items():
            setattr(cpu_conv, n, fn)
        conv4x4.UpConv.cpu_form = staticmethod(saved_up)
        conv4x4.DownConv.cpu_form = staticmethod(saved_down)
        conv4x4.PatchConv.cpu_form = staticmethod(saved_patch)
        deepcolorization._half_keep_mask = saved_mask


def main() -> int:
    """Print median step ms, CPU ms per step and CPU/wall for every variant."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--variants", default="all,phase+gn+kg+uc")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--steps", type=int, default=5, help="steps per variant per round")
    args = p.parse_args()
    rgb = np.random.default_rng(0).integers(0, 256, (args.batch, args.size, args.size, 3))
    data = {"rgb": jax.device_put(rgb.astype(np.uint8))}
    runs = {}
    for variant in args.variants.split(","):
        with plain_forms(variant):
            tb = real_train_step(args.model, args.size, args.batch, "f32", make_mesh(1))
            step = tb.step.lower(tb.state, data).compile()
        state = tb.state
        for _ in range(2):
            state, metrics = step(state, data)
        jax.block_until_ready(metrics)
        runs[variant] = {"step": step, "state": state, "times": [], "cpu": 0.0, "wall": 0.0}
    for _ in range(args.rounds):
        for r in runs.values():
            cpu0, wall0 = time.process_time(), time.perf_counter()
            for _ in range(args.steps):
                t0 = time.perf_counter()
                r["state"], metrics = r["step"](r["state"], data)
                jax.block_until_ready(metrics)
                r["times"].append(time.perf_counter() - t0)
            r["cpu"] += time.process_time() - cpu0
            r["wall"] += time.perf_counter() - wall0
    for variant, r in runs.items():
        n = len(r["times"])
        print(
            f"{args.model} b{args.batch} {args.size}px off={variant}: median "
            f"{1e3 * statistics.median(r['times']):.1f} ms, cpu {1e3 * r['cpu'] / n:.1f} ms/step, "
            f"cpu/wall {r['cpu'] / r['wall']:.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
