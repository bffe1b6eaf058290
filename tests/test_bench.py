"""Tests for `colorjax bench` and its harness: quick-run output, reports, PyTorch mirrors.

FLOP counting itself is tested in test_cost.py.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import use_reference_layer_forms

from colorjax import bench
from colorjax.cli import bench as bench_cli
from colorjax.cli import main as cli_main
from colorjax.errors import ConfigError

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

# Fields that must be real positive numbers on every successful timing record of these kinds.
TIMED_FIELDS = ("median_s", "min_s", "max_s", "images_per_s", "images_per_s_best")
COMPILED_KINDS = ("train", "infer_latency", "infer_throughput")


def _positive_finite(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """One CI-sized `colorjax bench --quick` run shared by the output tests."""
    out = tmp_path_factory.mktemp("bench")
    argv = [
        "bench",
        "--quick",
        "--models",
        "colornet-tiny",
        "--resolutions",
        "32",
        "--batch-sizes",
        "2",
    ]
    argv += ["--latency-samples", "6", "--photo-sizes", "80x48", "--out", str(out)]
    # XLA's cost analysis is compared with the analytic count below; it is only a fair reference
    # for the networks' plain forms (on CPU a per-sample scan would be counted once).
    with pytest.MonkeyPatch.context() as mp:
        use_reference_layer_forms(mp)
        rc = cli_main(argv)
    return out, rc


def test_quick_run_writes_complete_sane_records(quick_run: tuple[Path, int]) -> None:
    out, rc = quick_run
    assert rc == 0
    lines = (out / "results.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    kinds = {r["kind"] for r in records}
    assert {"train", "train_e2e", "loader", "infer_latency", "infer_throughput"} <= kinds
    assert "colorize" in kinds
    for rec in records:
        assert set(bench.RECORD_FIELDS) <= set(rec), set(bench.RECORD_FIELDS) - set(rec)
        assert rec["status"] == "ok", rec["note"]
        for key, value in rec.items():
            # Every null carries a reason, so a missing number is never silent.
            if value is None:
                assert key in rec["null_reasons"], key
        for key in TIMED_FIELDS:
            assert _positive_finite(rec[key]), (rec["kind"], key, rec[key])
        assert rec["min_s"] <= rec["median_s"] <= rec["max_s"]
        assert rec["iqr_s"] >= 0
        assert len(rec["times_s"]) == rec["trials"]
        assert rec["p50_ms"] <= rec["p90_ms"] <= rec["p99_ms"]
        meta = rec["meta"]
        for key in ("device_kind", "backend", "jax", "jaxlib", "flax", "hostname", "date"):
            assert meta[key], key
        assert meta["device_count"] == rec["device_count"] == 1
        # Thread count in every record's meta; XLA's CPU pool really has that many threads.
        assert meta["threads"] == len(meta["cpu_affinity"]) == meta["xla_cpu_pool_threads"]
        if rec["kind"] != "loader":
            assert rec["threads"] == meta["threads"]
            assert _positive_finite(rec["cpu_per_wall"])
        if rec["kind"] in COMPILED_KINDS:
            for key in ("lower_s", "compile_s", "achieved_tflops", "compiled_memory_bytes"):
                assert _positive_finite(rec[key]), (rec["kind"], key, rec[key])
            assert rec["flops_per_step_analytic"] > 0
            # CPU has no known peak: MFU must be null with a reason, not a made-up number.
            assert rec["mfu"] is None and "mfu" in rec["null_reasons"]
    train = next(r for r in records if r["kind"] == "train")
    assert train["train_step"] == "colorjax.train.steps.make_train_step"
    assert _positive_finite(train["loader_images_per_s"])
    latency = next(r for r in records if r["kind"] == "infer_latency")
    assert latency["batch_size"] == 1 and latency["trials"] == 6


@pytest.fixture(scope="module")
def report():  # noqa: ANN201 - benchmarks/report.py, a script module outside the package
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import report as module
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


def test_report_and_plots_from_the_quick_run(quick_run: tuple[Path, int], report, tmp_path) -> None:  # noqa: ANN001
    out, _ = quick_run
    records = bench.read_jsonl(out / "results.jsonl")
    report.write_markdown(records, tmp_path / "results.md")
    text = (tmp_path / "results.md").read_text()
    assert text.count("| train |") == 1
    assert "- threads: `" in text and "- device_kind: `" in text
    written = report.write_plots(records, tmp_path)
    assert [p.name for p in written] == ["throughput_vs_batch.png", "latency.png"]
    assert (tmp_path / "throughput_vs_batch.png").stat().st_size > 0
    assert (tmp_path / "latency.png").stat().st_size > 0


def test_models_table_and_bench_report_the_same_flops(quick_run: tuple[Path, int]) -> None:
    # One cost reader (colorjax.models.cost) behind both: the `colorjax models` GFLOPs of one
    # forward pass equals the bench's cost-analysis FLOPs of a batch-1 predict_ab (a forward
    # pass for a regression model), and the analytic count of both agrees too.
    from colorjax.cli.models import model_rows
    from colorjax.models import build_model
    from colorjax.models.cost import abstract_variables, analytic_flops

    out, _ = quick_run
    records = bench.read_jsonl(out / "results.jsonl")
    latency = next(r for r in records if r["kind"] == "infer_latency")
    assert (latency["model"], latency["resolution"], latency["batch_size"]) == (
        "colornet-tiny", 32, 1,
    )  # fmt: skip
    (row,) = model_rows(["colornet-tiny"], 32)
    assert latency["flops_per_step_analytic"] == pytest.approx(row["gflops"] * 1e9, rel=1e-9)
    model = build_model("colornet-tiny")
    x = jnp.zeros((1, 32, 32, 1), jnp.float32)
    forward = analytic_flops(
        lambda v, l_norm: model.apply(v, l_norm), abstract_variables(model, 32), x
    )
    assert latency["flops_per_step_analytic"] == forward


def test_train_flops_agree_with_cost_analysis(quick_run: tuple[Path, int]) -> None:
    out, _ = quick_run
    records = bench.read_jsonl(out / "results.jsonl")
    for rec in records:
        if rec["kind"] in COMPILED_KINDS and rec["flops_per_step_cost_analysis"] is not None:
            # XLA also counts elementwise work (norms, Adam, Lab): a little above the conv count.
            assert 0.9 <= rec["flops_ratio_cost_to_analytic"] <= 1.5, rec


def test_summarize_times_percentiles_ordered() -> None:
    times = np.random.default_rng(0).lognormal(size=200)
    stats = bench.summarize_times(times)
    assert stats["p50_ms"] <= stats["p90_ms"] <= stats["p99_ms"]
    assert stats["min_s"] <= stats["q25_s"] <= stats["median_s"] <= stats["q75_s"] <= stats["max_s"]
    assert stats["median_s"] == pytest.approx(float(np.median(times)))
    with pytest.raises(ValueError):
        bench.summarize_times([])


def test_peak_table_and_override() -> None:
    assert bench.lookup_peak_tflops("NVIDIA H100 80GB HBM3", "bf16") == 989.0
    assert bench.lookup_peak_tflops("NVIDIA H100 PCIe", "bf16") == 756.0
    assert bench.lookup_peak_tflops("NVIDIA H200", "f32") == 67.0
    assert bench.lookup_peak_tflops("cpu", "f32") is None
    assert bench.lookup_peak_tflops("cpu", "f32", override=1.5) == 1.5


def test_unknown_model_is_a_config_error() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    bench_cli.configure_parser(parser)
    args = parser.parse_args(["--models", "no-such-model"])
    with pytest.raises(ConfigError, match="no-such-model"):
        bench_cli.config_from_args(args)


def test_torch_without_the_module_file_is_one_clear_error(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    with pytest.raises(ConfigError, match="--torch-module"):
        bench.load_module(tmp_path / "no_torch_bench.py")


@pytest.fixture(scope="module")
def torch_models():  # noqa: ANN201 - returns a module loaded from the benchmarks folder
    pytest.importorskip("torch")
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import torch_models as module
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


def test_torch_param_counts_equal_flax(torch_models) -> None:  # noqa: ANN001
    from colorjax import models
    from colorjax.models.cost import abstract_variables

    for name in models.list_models():
        if models.get_spec(name).family not in torch_models.MIRRORED_FAMILIES:
            continue  # no mirror; create_torch_model says so
        model = models.build_model(name)
        variables = abstract_variables(model, max(model.stride, 64))
        flax_count = models.count_params(variables["params"])
        assert torch_models.count_params(torch_models.create_torch_model(name)) == flax_count, name


@pytest.mark.parametrize(
    "name",
    [
        "colornet-tiny",
        "colornet-tiny-cls",
        "colornet-small-cls4",
        "colornet-small-cls4-film",
        "deepcolorization-small",
    ],
)
def test_torch_mirror_computes_the_same_function(torch_models, name: str) -> None:  # noqa: ANN001
    import torch

    from colorjax import models

    model = models.build_model(name)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 1)).astype(np.float32)
    # jit: op-by-op dispatch of a whole network is much slower than one compile on CPU.
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.asarray(x))
    if "fusion_film" in variables["params"]:  # zero at init: draw it so the FiLM path counts
        film = variables["params"]["fusion_film"]
        rng = np.random.default_rng(2)
        film = {k: jnp.asarray(rng.normal(0, 0.1, v.shape), jnp.float32) for k, v in film.items()}
        variables = {"params": {**variables["params"], "fusion_film": film}}
    want = np.asarray(jax.jit(model.apply)(variables, jnp.asarray(x)))
    net = torch_models.load_flax_params(torch_models.create_torch_model(name), variables["params"])
    with torch.no_grad():
        got = net.eval()(torch.as_tensor(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(got, want, atol=2e-4)
    if name.startswith("deepcolorization"):
        ab = np.random.default_rng(1).uniform(-1, 1, (2, 32, 32, 2)).astype(np.float32)
        disc = jax.jit(lambda v, a, b: model.apply(v, a, b, method="discriminate"))
        want_d = np.asarray(disc(variables, jnp.asarray(x), jnp.asarray(ab)))
        with torch.no_grad():
            got_d = net.discriminator(
                torch.as_tensor(x).permute(0, 3, 1, 2), torch.as_tensor(ab).permute(0, 3, 1, 2)
            )
        np.testing.assert_allclose(got_d.permute(0, 2, 3, 1).numpy(), want_d, atol=2e-4)


def _random_params(model, x: jax.Array, seed: int = 3) -> dict:  # noqa: ANN001
    """Random params of the model's shapes, without compiling its init (20 s for Lite2 on CPU).

    Kernels are LeCun-normal; every scale, shift and bias is drawn too, so a frozen
    BatchNorm that init would leave the identity (scale 1, shift 0) is tested as well.
    """
    from flax import traverse_util

    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)["params"]
    rng = np.random.default_rng(seed)
    flat = {}
    for key, leaf in traverse_util.flatten_dict(shapes).items():
        if key[-1] == "kernel":  # (..., in, out): fan_in is every axis but the last
            value = rng.normal(0.0, 1.0, leaf.shape) / math.sqrt(math.prod(leaf.shape[:-1]))
        elif key[-1] == "scale":
            value = rng.uniform(0.5, 1.5, leaf.shape)
        else:
            value = rng.normal(0.0, 0.1, leaf.shape)
        flat[key] = jnp.asarray(value, jnp.float32)
    return traverse_util.unflatten_dict(flat)


@pytest.mark.parametrize("name", ["colornet-lite0-cls4", "colornet-lite2-cls4"])
def test_torch_lite_mirror_computes_the_same_logits(torch_models, name: str) -> None:  # noqa: ANN001
    import torch

    from colorjax import models

    model = models.build_model(name)
    # Non-square, and 96 / 32 = 3 is odd: TF 'SAME' pads stride-2 convs asymmetrically here.
    x = np.random.default_rng(0).uniform(-1, 1, (2, 64, 96, 1)).astype(np.float32)
    params = _random_params(model, jnp.asarray(x))
    want = np.asarray(jax.jit(model.apply)({"params": params}, jnp.asarray(x)))
    net = torch_models.load_flax_params(torch_models.create_torch_model(name), params)
    assert torch_models.count_params(net) == models.count_params(params)
    with torch.no_grad():
        got = net.eval()(torch.as_tensor(x).permute(0, 3, 1, 2))
    got = got.permute(0, 2, 3, 1).numpy()
    assert got.shape == want.shape == (2, 16, 24, want.shape[-1])
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * scale)


@pytest.mark.parametrize("name", ["deepcolorization-colornet", "deepcolorization-lite2"])
def test_torch_gan_mirror_generates_the_same_ab(torch_models, name: str) -> None:  # noqa: ANN001
    # generate: the bin generator's H/4 logits, decoded by annealed mean and upsampled to H x W.
    import torch

    from colorjax import models

    model = models.build_model(name)
    x = np.random.default_rng(1).uniform(-1, 1, (2, 64, 96, 1)).astype(np.float32)
    params = _random_params(model, jnp.asarray(x))
    gen = jax.jit(lambda p, v: model.apply({"params": p}, v, temperature=0.5, method="generate"))
    want_ab, want_logits = (np.asarray(a) for a in gen(params, jnp.asarray(x)))
    net = torch_models.load_flax_params(torch_models.create_torch_model(name), params)
    with torch.no_grad():
        ab, logits = net.eval().generate(torch.as_tensor(x).permute(0, 3, 1, 2), temperature=0.5)
    assert ab.shape == (2, 2, 64, 96)
    scale = max(1.0, float(np.abs(want_logits).max()))
    np.testing.assert_allclose(
        logits.permute(0, 2, 3, 1).numpy(), want_logits, rtol=0, atol=1e-4 * scale
    )
    np.testing.assert_allclose(ab.permute(0, 2, 3, 1).numpy(), want_ab, rtol=0, atol=1e-4)


@pytest.mark.parametrize(
    "name", ["colornet-lite0-cls4", "colornet-lite2-cls4", "deepcolorization-lite2"]
)
def test_torch_lite_mirrors_count_flax_params_and_freeze_the_encoder(  # noqa: ANN001
    torch_models, name: str
) -> None:
    from colorjax import models
    from colorjax.models.cost import abstract_variables

    model = models.build_model(name)
    flax_count = models.count_params(abstract_variables(model, 64)["params"])
    net = torch_models.create_torch_model(name)
    parts = [net.generator, net.discriminator] if hasattr(net, "generator") else [net]
    assert sum(torch_models.count_params(part) for part in parts) == flax_count
    # Frozen (the default): the encoder's scalars are counted but get no gradient.
    encoder = parts[0].encoder
    assert not any(p.requires_grad for p in encoder.parameters())
    others = [p for n, p in net.named_parameters() if ".encoder." not in f".{n}"]
    assert others and all(p.requires_grad for p in others)


def test_torch_lab_conversion_matches_colorjax() -> None:
    torch = pytest.importorskip("torch")
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import torch_bench
    finally:
        sys.path.remove(str(BENCHMARKS))
    from colorjax import color

    rgb = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    want_l, want_ab = color.rgb_uint8_to_lab_inputs(jnp.asarray(rgb))
    got_l, got_ab = torch_bench.rgb_uint8_to_lab_inputs(torch.as_tensor(rgb))
    np.testing.assert_allclose(got_l.permute(0, 2, 3, 1).numpy(), want_l, atol=1e-4)
    np.testing.assert_allclose(got_ab.permute(0, 2, 3, 1).numpy(), want_ab, atol=1e-4)


def test_speedups_pair_rows_of_the_same_configuration() -> None:
    def row(framework: str, mode: str, seconds: float, batch: int = 8) -> dict:
        fields = bench.throughput_fields([seconds, seconds * 1.1, seconds * 0.9], batch)
        base = dict(kind="train", framework=framework, mode=mode, model="m", resolution=64)
        return bench.make_record(**base, batch_size=batch, dtype="f32", **fields)

    ours = row("colorjax", "jit", 0.1)
    ours.update(flops_per_step_analytic=10**12, peak_tflops=100.0)
    eager, compiled = row("torch", "eager", 0.4), row("torch", "compile", 0.2)
    other_batch = row("torch", "eager", 0.01, batch=16)
    bench.attach_speedups([ours, eager, compiled, other_batch])
    assert ours["speedup_vs_torch_eager"] == pytest.approx(4.0)
    assert ours["speedup_vs_torch_compile"] == pytest.approx(2.0)
    # PyTorch rows get achieved TFLOP/s and MFU from the shared analytic FLOP count.
    assert compiled["achieved_tflops"] == pytest.approx(1e12 / 0.2 / 1e12)
    assert compiled["mfu"] == pytest.approx(5.0 / 100.0)
    assert "mfu" not in compiled["null_reasons"]
    assert other_batch["mfu"] is None


def test_cpu_use_check_flags_waiting_and_extra_threads() -> None:
    assert bench.check_cpu_use(0.98, 1, "cpu") is None
    assert bench.check_cpu_use(1.7, 2, "cpu") is None
    assert "waited" in bench.check_cpu_use(0.4, 1, "cpu")
    assert "more compute threads" in bench.check_cpu_use(1.8, 1, "cpu")
    # Accelerator rows: the host thread mostly waits on the device; nothing to check.
    assert bench.check_cpu_use(0.1, 1, "gpu") is None


def test_pinning_more_threads_than_allowed_is_a_config_error() -> None:
    import os

    with pytest.raises(ConfigError, match="--threads"):
        bench.pin_threads(len(os.sched_getaffinity(0)) + 1)


def test_speedups_refused_when_a_row_fails_the_thread_check() -> None:
    def row(framework: str, mode: str, seconds: float, check: str | None) -> dict:
        fields = bench.throughput_fields([seconds], 8)
        base = dict(kind="train", framework=framework, mode=mode, model="m", resolution=64)
        return bench.make_record(**base, batch_size=8, dtype="f32", thread_check=check, **fields)

    ours = row("colorjax", "jit", 0.1, None)
    bench.attach_speedups([ours, row("torch", "eager", 0.4, "CPU/wall 0.40 < 1: waited")])
    assert ours["speedup_vs_torch_eager"] is None
    assert "thread check failed" in ours["null_reasons"]["speedup_vs_torch_eager"]


def test_cpu_devices_shard_the_bench_train_step(tmp_path: Path) -> None:
    # A subprocess: the CPU must be split before JAX starts, and this process's JAX runs.
    out = tmp_path / "bench"
    argv = ["bench", "--cpu-devices", "2", "--quick", "--models", "colornet-tiny"]
    argv += ["--resolutions", "32", "--batch-sizes", "2", "--kinds", "train", "--out", str(out)]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    cmd = [sys.executable, "-m", "colorjax.cli", *argv]
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=600)
    (rec,) = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert rec["status"] == "ok", rec["note"]
    assert rec["device_count"] == rec["meta"]["device_count"] == 2
    assert "--xla_cpu_multi_thread_eigen=false" in rec["meta"]["xla_flags"]
    # malloc reuse is on by default (glibc) and recorded, as it holds for both frameworks.
    assert rec["meta"]["malloc_reuse"] is (platform.libc_ver()[0] == "glibc")
    bad = subprocess.run(
        [sys.executable, "-m", "colorjax.cli", "bench", "--cpu-devices", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "positive integer or 'auto'" in bad.stderr
