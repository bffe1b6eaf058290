"""PyTorch side of the benchmark: the same train step / inference as colorjax, eager or compiled.

Loaded by file path (`colorjax bench --torch [--torch-module PATH]`, benchmarks/report.py's
`load_torch_bench`). Each function returns a dict of raw timings (seconds per call) and
metadata; colorjax.bench turns it into a result record.
The train step does the same work as colorjax's: uint8 RGB -> Lab on the device, forward,
loss (L1 regression / rebalanced soft-encoded cross-entropy / pix2pix D + G), backward, Adam.
`mode='compile'` wraps the network in torch.compile (backward and Adam stay eager, fused where
the device allows); on CUDA, models and inputs use channels_last.

On CUDA the baseline is the strongest fair one we know (see _cuda_setup and _cuda_*_step):
cudnn.benchmark, channels_last, bf16 autocast (f32 params, like Flax dtype=bfloat16), f32 at
XLA's default TF32 precision, fused Adam, and torch.compile of the whole loss computation (Lab
conversion + network + loss; AOTAutograd compiles the backward) with
`mode=$COLORJAX_TORCH_COMPILE_MODE` (default "max-autotune": Triton/cuDNN autotuning and CUDA
graphs; "max-autotune-no-cudagraphs" if graphs fail), dynamo reset per configuration so every
batch size gets its own static-shape compile.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


def _sibling(name: str) -> Any:
    """Import benchmarks/<name>.py, which sits next to this file, whatever sys.path holds."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # one copy, shared with scripts that import it by name
    spec.loader.exec_module(module)
    return module


torch_models = _sibling("torch_models")

_XYZ_FROM_RGB = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
_WHITE_D65 = (0.95047, 1.0, 1.08883)
L_SCALE, AB_SCALE = 50.0, 110.0


def device() -> torch.device:
    """CUDA if present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def set_threads(threads: int) -> int:
    """Use `threads` intra-op compute threads (and one inter-op thread); return the count set.

    Called once before any torch work, so the pools start at this size; the process's CPU
    affinity (set by colorjax.bench) also bounds them.
    """
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already started: only the intra-op count matters for these nets
        pass
    return torch.get_num_threads()


def rgb_uint8_to_lab_inputs(rgb_u8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N,H,W,3) -> (l_norm (N,1,H,W), ab_norm (N,2,H,W)), as colorjax.color does."""
    c = rgb_u8.float() / 255.0
    lin = torch.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    m = torch.tensor(_XYZ_FROM_RGB, device=c.device)
    xyz = lin @ m.T / torch.tensor(_WHITE_D65, device=c.device)
    f = torch.where(xyz > 0.008856, xyz.clamp_min(1e-12) ** (1 / 3), 7.787 * xyz + 16 / 116)
    fx, fy, fz = f.unbind(-1)
    l_norm = ((116.0 * fy - 16.0) / L_SCALE - 1.0)[:, None]
    ab = torch.stack([500.0 * (fx - fy), 200.0 * (fy - fz)], dim=1) / AB_SCALE
    return l_norm, ab


def _autocast(dtype: str, dev: torch.device) -> Any:
    """bf16 autocast (f32 params, bf16 compute, like Flax dtype=bfloat16) or a no-op."""
    return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dtype == "bf16")


def _prepare(module: torch.nn.Module, dev: torch.device, mode: str) -> Callable[..., Any]:
    """Move to device (channels_last on CUDA) and optionally torch.compile."""
    module.to(dev)
    if dev.type == "cuda":
        module.to(memory_format=torch.channels_last)
        if mode == "compile":
            return torch.compile(module, mode=cuda_compile_mode(), dynamic=False)
    return torch.compile(module) if mode == "compile" else module


# ----------------------------------------------------------------------------- CUDA path

DEFAULT_CUDA_COMPILE_MODE = "max-autotune"


def cuda_compile_mode() -> str:
    """torch.compile mode on CUDA: $COLORJAX_TORCH_COMPILE_MODE or max-autotune."""
    return os.environ.get("COLORJAX_TORCH_COMPILE_MODE") or DEFAULT_CUDA_COMPILE_MODE


def cuda_tf32() -> bool:
    """Whether f32 convs/matmuls may use TF32 ($COLORJAX_BENCH_TF32, default on).

    XLA's default precision runs f32 convolutions and matmuls in TF32 on Ampere and later, so
    PyTorch gets the same; set COLORJAX_BENCH_TF32=0 together with
    JAX_DEFAULT_MATMUL_PRECISION=highest to compare strict f32 on both sides.
    """
    return os.environ.get("COLORJAX_BENCH_TF32", "1") != "0"


def _cuda_setup() -> str:
    """Per-configuration CUDA settings; returns a note for the record."""
    # A fresh dynamo cache per configuration: otherwise the second batch size of the same
    # model recompiles with dynamic shapes (slower kernels, no per-shape autotuning) and the
    # 9th hits the recompile limit and silently runs eager.
    torch._dynamo.reset()
    torch.backends.cudnn.benchmark = True
    tf32 = cuda_tf32()
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    return f"cudnn.benchmark, channels_last, tf32={tf32}, compile mode {cuda_compile_mode()}"


def _maybe_compile(fn: Callable[..., Any], mode: str) -> Callable[..., Any]:
    """torch.compile a function (static shapes, the CUDA compile mode) in 'compile' mode."""
    if mode != "compile":
        return fn
    return torch.compile(fn, mode=cuda_compile_mode(), dynamic=False)


def _cuda_colornet_step(
    model: Any, rgb: Any, dev: Any, dtype: str, mode: str, compile_fn: Callable = _maybe_compile
) -> Callable:
    """ColorNet step with the whole loss computation (Lab, forward, loss) compiled as one graph."""
    fmt = torch.channels_last if dev.type == "cuda" else torch.contiguous_format
    model.to(dev, memory_format=fmt)
    opt = _adam(model.parameters(), dev)
    cls_loss = _classification_loss(dev) if model.head_kind == "classification" else None

    def loss_fn(rgb_u8: torch.Tensor) -> torch.Tensor:
        l_norm, ab = rgb_uint8_to_lab_inputs(rgb_u8)
        with _autocast(dtype, dev):
            out = model(l_norm.contiguous(memory_format=fmt))
        return cls_loss(out, ab) if cls_loss is not None else (out.float() - ab).abs().mean()

    compiled = compile_fn(loss_fn, mode)

    def step() -> torch.Tensor:
        loss = compiled(rgb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    return step


def _cuda_gan_step(
    model: Any, rgb: Any, dev: Any, dtype: str, mode: str, compile_fn: Callable = _maybe_compile
) -> Callable:
    """pix2pix step as three compiled graphs: G forward (with Lab), D loss, G loss."""
    fmt = torch.channels_last if dev.type == "cuda" else torch.contiguous_format
    model.to(dev, memory_format=fmt)
    gen, disc = model.generator, model.discriminator
    opt_g = _adam(gen.parameters(), dev)
    opt_d = _adam(disc.parameters(), dev)
    bce = F.binary_cross_entropy_with_logits

    def generate(rgb_u8: torch.Tensor) -> tuple[torch.Tensor, ...]:
        l_norm, ab = rgb_uint8_to_lab_inputs(rgb_u8)
        l_norm = l_norm.contiguous(memory_format=fmt)
        with _autocast(dtype, dev):
            fake = gen(l_norm)
        if model.bin_generator:  # ColorNet(-Lite) logits at H/4 -> annealed-mean ab at H
            fake = model.decode(fake, tuple(l_norm.shape[-2:]))
        return l_norm, ab, fake

    def d_loss_fn(l_norm: torch.Tensor, ab: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        with _autocast(dtype, dev):
            real_logits = disc(l_norm, ab)
            fake_logits = disc(l_norm, fake)
        return 0.5 * (
            bce(real_logits, torch.ones_like(real_logits))
            + bce(fake_logits, torch.zeros_like(fake_logits))
        )

    def g_loss_fn(l_norm: torch.Tensor, ab: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        with _autocast(dtype, dev):
            adv_logits = disc(l_norm, fake)
        return bce(adv_logits, torch.ones_like(adv_logits)) + 100.0 * (fake - ab).abs().mean()

    gen_c, d_loss_c, g_loss_c = (compile_fn(f, mode) for f in (generate, d_loss_fn, g_loss_fn))

    def step() -> tuple[torch.Tensor, torch.Tensor]:
        l_norm, ab, fake = gen_c(rgb)
        loss_d = d_loss_c(l_norm, ab, fake.detach())
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        loss_g = g_loss_c(l_norm, ab, fake)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        return loss_d, loss_g

    return step


def _adam(params: Any, dev: torch.device) -> torch.optim.Optimizer:
    """Adam with the fastest implementation the device offers (fused on CUDA)."""
    if dev.type == "cuda":
        return torch.optim.Adam(params, lr=1e-4, fused=True)
    return torch.optim.Adam(params, lr=1e-4, foreach=True)


def _sync(dev: torch.device) -> None:
    """Wait for queued device work."""
    if dev.type == "cuda":
        torch.cuda.synchronize()


def _time(
    step: Callable[[], Any],
    dev: torch.device,
    warmup: int,
    trials: int,
    iters: int,
    usage: dict | None = None,
) -> list:
    """Seconds per call for each trial, warm-up excluded, synchronised (CPU/wall in `usage`)."""
    for _ in range(warmup):
        step()
    _sync(dev)
    times = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(trials):
        start = time.perf_counter()
        for _ in range(iters):
            step()
        _sync(dev)
        times.append((time.perf_counter() - start) / iters)
    if usage is not None:
        usage["cpu_per_wall"] = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    return times


def _rgb(batch: int, size: int, dev: torch.device) -> torch.Tensor:
    """Random uint8 RGB batch already on the device."""
    rng = np.random.default_rng(0)
    return torch.as_tensor(rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)).to(dev)


def _classification_loss(dev: torch.device) -> Callable[..., torch.Tensor]:
    """Rebalanced soft-encoded CE (5 nearest bins, sigma 5), as the colorjax classification loss."""
    from colorjax.gamut import ab_bin_centers, default_prior, rebalancing_weights

    centers = torch.tensor(np.asarray(ab_bin_centers()), device=dev)
    weights = torch.tensor(np.asarray(rebalancing_weights(default_prior())), device=dev)

    def loss(logits: torch.Tensor, ab_norm: torch.Tensor) -> torch.Tensor:
        if ab_norm.shape[-1] != logits.shape[-1]:
            # Heads at H/k (head_stride 4, ColorNet-Lite) learn block-mean targets, as colorjax
            # (losses.area_downsample).
            ab_norm = F.avg_pool2d(ab_norm, ab_norm.shape[-1] // logits.shape[-1])
        ab = (ab_norm * AB_SCALE).permute(0, 2, 3, 1)
        d2 = ((ab[..., None, :] - centers) ** 2).sum(-1)
        neg, idx = torch.topk(-d2, 5, dim=-1)
        w = torch.softmax((neg - neg[..., :1]) / (2 * 25.0), dim=-1)
        target = torch.zeros_like(d2).scatter_(-1, idx, w)
        logp = F.log_softmax(logits.float().permute(0, 2, 3, 1), dim=-1)
        ce = -(target * logp).sum(-1)
        return (weights[idx[..., 0]] * ce).mean()

    return loss


def _bench_train(
    name: str, size: int, batch: int, dtype: str, mode: str, warmup: int, trials: int, iters: int
) -> dict[str, Any]:
    """Train-step timings for one configuration (GAN: D update + G update = one step)."""
    dev = device()
    _reset_peak(dev)
    torch.manual_seed(0)
    model = torch_models.create_torch_model(name)
    params = torch_models.count_params(model)
    rgb = _rgb(batch, size, dev)
    fmt = torch.channels_last if dev.type == "cuda" else torch.contiguous_format
    gan = isinstance(model, torch_models.DeepColorization)
    setup = ""
    if dev.type == "cuda":
        setup = "; " + _cuda_setup()
        step = (_cuda_gan_step if gan else _cuda_colornet_step)(model, rgb, dev, dtype, mode)
    elif gan:
        step = _gan_step(model, rgb, dev, dtype, mode, fmt)
    else:
        step = _colornet_step(model, rgb, dev, dtype, mode, fmt)
    start = time.perf_counter()
    step()  # first call: torch.compile traces and compiles here
    _sync(dev)
    first_s = time.perf_counter() - start
    usage: dict = {}
    times = _time(step, dev, warmup, trials, iters, usage)
    peak = _peak_mem(dev)
    return {
        "kind": "train",
        "mode": mode,
        "params": params,
        "compile_s": first_s,
        "times_s": times,
        "trials": trials,
        "iters_per_trial": iters,
        "warmup": warmup + 1,
        "peak_memory_bytes": peak,
        "cpu_per_wall": usage["cpu_per_wall"],
        "train_step": "torch "
        + ("eager" if mode != "compile" else "compiled loss" if setup else "compiled model"),
        "note": f"compile_s = first call (trace + compile + one step); "
        f"torch threads {torch.get_num_threads()}{setup}",
    }


def _colornet_step(model: Any, rgb: Any, dev: Any, dtype: str, mode: str, fmt: Any) -> Callable:
    """ColorNet step: Lab -> forward -> L1 or rebalanced CE -> backward -> Adam."""
    net = _prepare(model, dev, mode)
    opt = _adam(model.parameters(), dev)
    cls = model.head_kind == "classification"
    cls_loss = _classification_loss(dev) if cls else None

    def step() -> None:
        l_norm, ab = rgb_uint8_to_lab_inputs(rgb)
        with _autocast(dtype, dev):
            out = net(l_norm.contiguous(memory_format=fmt))
        loss = cls_loss(out, ab) if cls else (out.float() - ab).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _gan_step(model: Any, rgb: Any, dev: Any, dtype: str, mode: str, fmt: Any) -> Callable:
    """pix2pix step: fake = G(L); D update on (real, fake.detach()); G update through new D."""
    gen = _prepare(model.generator, dev, mode)
    disc = _prepare(model.discriminator, dev, mode)
    opt_g = _adam(model.generator.parameters(), dev)
    opt_d = _adam(model.discriminator.parameters(), dev)
    bce = F.binary_cross_entropy_with_logits

    def step() -> None:
        l_norm, ab = rgb_uint8_to_lab_inputs(rgb)
        l_norm = l_norm.contiguous(memory_format=fmt)
        with _autocast(dtype, dev):
            fake = gen(l_norm)
            if model.bin_generator:  # ColorNet(-Lite) logits at H/4 -> annealed-mean ab at H
                fake = model.decode(fake, tuple(l_norm.shape[-2:]))
            real_logits = disc(l_norm, ab)
            fake_logits = disc(l_norm, fake.detach())
        loss_d = 0.5 * (
            bce(real_logits, torch.ones_like(real_logits))
            + bce(fake_logits, torch.zeros_like(fake_logits))
        )
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        with _autocast(dtype, dev):
            adv_logits = disc(l_norm, fake)
        loss_g = bce(adv_logits, torch.ones_like(adv_logits)) + 100.0 * (fake - ab).abs().mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()

    return step


def _bench_infer(
    name: str,
    size: int,
    batch: int,
    dtype: str,
    mode: str,
    warmup: int,
    trials: int,
    iters: int,
    latency_samples: int,
) -> list[dict[str, Any]]:
    """Batch-1 latency samples and large-batch throughput of the eval forward (ab prediction)."""
    dev = device()
    _reset_peak(dev)
    setup = "; " + _cuda_setup() if dev.type == "cuda" else ""
    torch.manual_seed(0)
    model = torch_models.create_torch_model(name).eval()
    params = torch_models.count_params(model)
    net = _prepare(model.generator if hasattr(model, "generator") else model, dev, mode)
    fmt = torch.channels_last if dev.type == "cuda" else torch.contiguous_format
    out = []
    for kind, n in (("infer_latency", 1), ("infer_throughput", batch)):
        x = torch.rand(n, 1, size, size, device=dev).mul(2).sub(1).contiguous(memory_format=fmt)

        def call(x: torch.Tensor = x) -> None:
            with torch.inference_mode(), _autocast(dtype, dev):
                net(x)

        start = time.perf_counter()
        call()
        _sync(dev)
        first_s = time.perf_counter() - start
        usage: dict = {}
        if kind == "infer_latency":
            times = _time(call, dev, warmup, latency_samples, 1, usage)
            t, i = latency_samples, 1
        else:
            times = _time(call, dev, warmup, trials, iters, usage)
            t, i = trials, iters
        out.append(
            {
                "kind": kind,
                "mode": mode,
                "batch_size": n,
                "params": params,
                "compile_s": first_s,
                "times_s": times,
                "trials": t,
                "iters_per_trial": i,
                "warmup": warmup + 1,
                "peak_memory_bytes": _peak_mem(dev),
                "cpu_per_wall": usage["cpu_per_wall"],
                "note": "logits only for -cls heads (colorjax adds the annealed mean)" + setup,
            }
        )
    return out


def _release(dev: torch.device) -> None:
    """Hand cached CUDA blocks back so the next JAX configuration can use them."""
    if dev.type == "cuda":
        torch.cuda.empty_cache()


def _reset_peak(dev: torch.device) -> None:
    """Start a fresh peak-memory window for this configuration."""
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_mem(dev: torch.device) -> int | None:
    """Peak CUDA memory allocated so far (None on CPU)."""
    return int(torch.cuda.max_memory_allocated()) if dev.type == "cuda" else None


def bench_train(*args: Any) -> dict[str, Any]:
    """Train-step timings (see _bench_train); CUDA cache released afterwards for JAX."""
    try:
        return _bench_train(*args)
    finally:
        _release(device())


def bench_infer(*args: Any) -> list[dict[str, Any]]:
    """Inference timings (see _bench_infer); CUDA cache released afterwards for JAX."""
    try:
        return _bench_infer(*args)
    finally:
        _release(device())
