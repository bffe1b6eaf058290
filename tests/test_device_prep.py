"""GPU-session tooling: trace summary, HLO layout counts, report merge, torch CUDA-path steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from colorjax import bench

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import device_report  # noqa: E402
import profile_step  # noqa: E402
import report  # noqa: E402

sys.path.remove(str(BENCHMARKS))


def _meta(pid: int, name: str, tid: int | None = None) -> dict:
    if tid is None:
        return {"ph": "M", "pid": pid, "name": "process_name", "args": {"name": name}}
    return {"ph": "M", "pid": pid, "tid": tid, "name": "thread_name", "args": {"name": name}}


def _x(pid: int, tid: int, name: str, dur: float, **args: str) -> dict:
    return {"ph": "X", "pid": pid, "tid": tid, "ts": 0.0, "dur": dur, "name": name, "args": args}


def test_gpu_trace_summary_counts_stream_kernels_only() -> None:
    trace = {
        "traceEvents": [
            _meta(1, "/host:CPU"),
            _meta(2, "/device:GPU:0"),
            _meta(2, "Stream #7(Compute)", tid=7),
            _meta(2, "XLA Ops", tid=8),
            _x(1, 1, "train", 400.0, step_num="0"),
            _x(1, 1, "train", 300.0, step_num="1"),
            _x(2, 7, "sm90_xmma_fprop_implicit_gemm_bf16", 100.0),
            _x(2, 7, "sm90_xmma_fprop_implicit_gemm_bf16", 100.0),
            _x(2, 7, "cutlass_gemm_bf16", 50.0),
            _x(2, 7, "transpose_fusion_3", 30.0),
            # The derived op line repeats kernel time; counting it would double it.
            _x(2, 8, "fusion.12", 999.0, hlo_op="fusion.12"),
        ]
    }
    s = profile_step.summarize_trace(trace, steps=2, top=2)
    assert s["origin"] == "device stream lines"
    assert s["kernels"] == 4 and s["distinct_kernels"] == 3
    assert s["device_time_ms"] == pytest.approx(0.28)
    assert s["device_time_per_step_ms"] == pytest.approx(0.14)
    assert s["step_wall_ms"] == [pytest.approx(0.4), pytest.approx(0.3)]
    assert [r["name"] for r in s["top"]] == [
        "sm90_xmma_fprop_implicit_gemm_bf16",
        "cutlass_gemm_bf16",
    ]
    top = s["top"][0]
    assert top["count"] == 2 and top["mean_us"] == pytest.approx(100.0)
    assert top["share"] == pytest.approx(200 / 280)
    assert s["categories_ms"] == {
        "conv": pytest.approx(0.2),
        "gemm": pytest.approx(0.05),
        "transpose/copy": pytest.approx(0.03),
    }


def test_cpu_trace_summary_falls_back_to_hlo_ops() -> None:
    trace = {
        "traceEvents": [
            _meta(1, "/host:CPU"),
            _x(1, 1, "PjitFunction(step)", 900.0),
            _x(1, 2, "convolution.1", 40.0, hlo_op="convolution.1"),
            _x(1, 2, "add_fusion", 10.0, hlo_op="add_fusion"),
        ]
    }
    s = profile_step.summarize_trace(trace, steps=1)
    assert s["origin"].startswith("XLA ops")
    assert {r["name"]: r["total_ms"] for r in s["top"]} == {
        "convolution.1": pytest.approx(0.04),
        "add_fusion": pytest.approx(0.01),
    }


def test_hlo_summary_sees_nhwc_convolutions_of_a_real_compile() -> None:
    def f(x: jax.Array, w: jax.Array) -> jax.Array:
        y = jax.lax.conv_general_dilated(
            x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return jnp.transpose(y, (0, 3, 1, 2))  # one explicit layout change

    x, w = jnp.ones((2, 8, 8, 3)), jnp.ones((3, 3, 3, 4))
    text = jax.jit(f).lower(x, w).compile().as_text()
    h = profile_step.hlo_summary(text)
    assert h["convolutions"] == 1 and h["conv_input_nhwc"] == 1
    assert h["conv_layouts"] == ["b01f_01io->b01f"]
    hand = "%t = f32[2,4]{1,0} transpose(f32[4,2]{1,0} %p), dimensions={1,0}\n"
    assert profile_step.hlo_summary(hand)["transposes"] == 1


def _row(framework: str, mode: str, seconds: float, model: str = "m") -> dict:
    fields = bench.throughput_fields([seconds, seconds], 8)
    base = dict(kind="train", framework=framework, mode=mode, model=model, resolution=64)
    return bench.make_record(**base, batch_size=8, dtype="bf16", **fields, meta={"jax": "x"})


def test_device_report_merges_finished_and_stopped_runs(tmp_path: Path) -> None:
    scratch, out = tmp_path / "scratch", tmp_path / "out"
    done, stopped = scratch / "a", scratch / "b"
    done.mkdir(parents=True)
    stopped.mkdir()
    first = [_row("colorjax", "jit", 0.1, "m1"), _row("torch", "eager", 0.2, "m1")]
    bench.attach_speedups(first)
    bench.write_jsonl(first, done / "results.jsonl")
    # A run stopped at the deadline: its rows were never paired.
    bench.write_jsonl(
        [_row("colorjax", "jit", 0.1, "m2"), _row("torch", "compile", 0.4, "m2")],
        stopped / "results.partial.jsonl",
    )
    (scratch / "p").mkdir()
    (scratch / "p" / "profile.md").write_text("# train-step profile\n\nKERNELS\n")
    (scratch / "p" / "profile.json").write_text("{}")
    loader = {"config": "large256", "model": "colornet-base", "image_size": 256, "batch_size": 64}
    loader |= {"worker_type": "process", "num_workers": 16, "loader_images_per_s": 900.0}
    loader |= {"train_step_images_per_s": 3000.0, "loader_to_step_ratio": 0.3}
    (scratch / "l").mkdir()
    (scratch / "l" / "loader.jsonl").write_text(json.dumps(loader) + "\n")
    device_report.write_report(scratch, out, plots=False)
    merged = bench.read_jsonl(out / "results.jsonl")
    assert len(merged) == 4
    m2 = next(r for r in merged if r["model"] == "m2" and r["framework"] == "colorjax")
    assert m2["speedup_vs_torch_compile"] == pytest.approx(4.0)
    md = (out / "results.md").read_text()
    assert "b: stopped early, 2 finished records kept" in md
    assert "## profile p" in md and "KERNELS" in md and "| process x16 | 900.0 |" in md
    assert (out / "profile.json").is_file() and (out / "loader.jsonl").is_file()
    assert len(list(out.iterdir())) <= device_report.MAX_FILES


def test_device_run_rejects_an_unknown_preset(tmp_path: Path) -> None:
    env = {**os.environ, "OUT": str(tmp_path / "out"), "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        ["bash", str(BENCHMARKS / "device_run.sh"), "no-such-preset"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "usage:" in proc.stderr
    log = (tmp_path / "out" / "log.txt").read_text()
    assert "## versions" in log and "jax " in log


@pytest.fixture(scope="module")
def torch_bench():  # noqa: ANN201 - a module loaded from the benchmarks folder
    pytest.importorskip("torch")
    return report.load_torch_bench()


@pytest.mark.parametrize("name", ["colornet-tiny", "colornet-tiny-cls", "deepcolorization-small"])
def test_cuda_path_steps_update_like_the_reference_steps(torch_bench, name: str) -> None:  # noqa: ANN001
    import torch

    tm = torch_bench.torch_models
    dev = torch.device("cpu")
    rgb = torch.as_tensor(np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), np.uint8))
    compiled: list = []

    def record(fn, mode):  # noqa: ANN001, ANN202 - stands in for torch.compile, counts calls
        def wrapper(*args):  # noqa: ANN002, ANN202
            compiled.append(fn.__name__)
            return fn(*args)

        assert mode == "compile"
        return wrapper

    torch.manual_seed(0)
    ref_model = tm.create_torch_model(name)
    torch.manual_seed(0)
    new_model = tm.create_torch_model(name)
    gan = isinstance(ref_model, tm.DeepColorization)
    fmt = torch.contiguous_format
    if gan:
        ref = torch_bench._gan_step(ref_model, rgb, dev, "f32", "eager", fmt)
        new = torch_bench._cuda_gan_step(new_model, rgb, dev, "f32", "compile", record)
    else:
        ref = torch_bench._colornet_step(ref_model, rgb, dev, "f32", "eager", fmt)
        new = torch_bench._cuda_colornet_step(new_model, rgb, dev, "f32", "compile", record)
    for step in range(2):
        # The generator's dropout draws from the global RNG: the same draws for both steps.
        torch.manual_seed(step)
        ref()
        torch.manual_seed(step)
        new()
    # The whole loss computation goes through the compiled functions, every step.
    want = ["generate", "d_loss_fn", "g_loss_fn"] * 2 if gan else ["loss_fn"] * 2
    assert compiled == want
    for (key, a), b in zip(
        ref_model.state_dict().items(), new_model.state_dict().values(), strict=True
    ):
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=1e-5, err_msg=key)
    # And training moved the weights (two Adam steps), so the comparison is not vacuous.
    torch.manual_seed(0)
    fresh = tm.create_torch_model(name)
    moved = [
        not torch.equal(a, b)
        for a, b in zip(fresh.state_dict().values(), new_model.state_dict().values(), strict=True)
    ]
    assert any(moved)


def test_cuda_setup_follows_the_environment(torch_bench, monkeypatch) -> None:  # noqa: ANN001
    import torch

    monkeypatch.setenv("COLORJAX_BENCH_TF32", "0")
    monkeypatch.setenv("COLORJAX_TORCH_COMPILE_MODE", "max-autotune-no-cudagraphs")
    try:
        note = torch_bench._cuda_setup()
        assert torch.backends.cudnn.benchmark is True
        assert torch.backends.cuda.matmul.allow_tf32 is False
        assert "tf32=False" in note and "max-autotune-no-cudagraphs" in note
        monkeypatch.delenv("COLORJAX_TORCH_COMPILE_MODE")
        assert torch_bench.cuda_compile_mode() == "max-autotune"
    finally:
        torch.backends.cudnn.benchmark = False
