"""Data parallelism: 8 fake devices match 1 device without gathering the batch, and bad batch
splits fail before compiling."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest


@pytest.mark.multiprocess
def test_eight_devices_match_one_device_and_bad_batches_fail_early(
    tmp_path, train_worker, worker_env
):
    out = tmp_path / "devices.json"
    subprocess.run(
        [sys.executable, str(train_worker), "devices", str(out)],
        env=worker_env(8),
        check=True,
        timeout=900,
    )
    result = json.loads(out.read_text())
    assert result["loss_8"] == pytest.approx(result["loss_1"], abs=1e-5, rel=1e-5)
    p8 = np.load(out.with_suffix(".8.npz"))
    p1 = np.load(out.with_suffix(".1.npz"))
    assert sorted(p8.files) == sorted(p1.files) and p8.files
    for key in p1.files:
        np.testing.assert_allclose(p8[key], p1[key], atol=1e-5, rtol=1e-5, err_msg=key)
    # The CPU kernel-gradient loops run per device on its shard of the batch (then one psum),
    # instead of XLA all-gathering the activations and running the whole loop on every device.
    assert result["step_all_gathers"] == 0
    for name, loop in result["loops"].items():
        assert loop["all_gathers"] == 0, name
        assert loop["max_abs_diff"] <= 1e-5 * loop["scale"], (name, loop)
    # The ShardingError names the sizes and the fix, and comes before anything compiles.
    for key in ("check_error", "train_error"):
        msg = result[key]
        assert msg is not None and "12" in msg and "8 devices" in msg and "batch_size" in msg


# Run in a subprocess with 2 fake CPU devices: a layer built on a 2-device mesh, its gradient
# jitted on a batch sharded over 'data', against the same layer built without a mesh.
_MESH_LAYER_SCRIPT = """
import json, re
import jax, jax.numpy as jnp, numpy as np
from colorjax.models.conv4x4 import UpConv
from colorjax.models.layers import ConvNormAct
from colorjax.parallel import data_sharding, make_mesh, replicated

mesh = make_mesh(2)
x = np.random.default_rng(0).normal(size=(4, 8, 8, 3)).astype(np.float32)
out = {}
for name, make in (
    ("conv_s1", lambda m: ConvNormAct(8, mesh=m)),
    ("conv_s2", lambda m: ConvNormAct(8, stride=2, mesh=m)),
    ("upconv_narrow", lambda m: UpConv(2, mesh=m)),
):
    v = make(None).init(jax.random.key(0), x[:1])
    result = {}
    for key, m in (("mesh", mesh), ("none", None)):
        layer = make(m)
        grad = jax.jit(
            jax.grad(lambda v, x, layer=layer: jnp.sum(jnp.sin(layer.apply(v, x)))),
            in_shardings=(replicated(mesh), data_sharding(mesh)),
            out_shardings=replicated(mesh),
        )
        lowered = grad.lower(v, x)
        k = grad(v, x)["params"]
        k = k["conv"]["kernel"] if "conv" in k else k["kernel"]
        result[key] = {
            "kernel_grad": np.asarray(k).tolist(),
            "lowered_all_reduces": len(re.findall(r"all_reduce", lowered.as_text())),
            "all_gathers": len(
                re.findall(r"\\ball-gather(?:-start)?\\(", lowered.compile().as_text())
            ),
        }
    out[name] = result
print(json.dumps(out))
"""


def test_layers_built_on_a_mesh_run_their_kernel_gradient_loops_per_device(worker_env):
    # The mesh a layer is given is the one its CPU kernel-gradient loop runs on: per device on
    # its shard of the batch, then one psum (an all-reduce in the lowered program, before XLA's
    # partitioner adds any), nothing gathered; and the gradient equals the one-loop form's.
    cmd = [sys.executable, "-c", _MESH_LAYER_SCRIPT]
    proc = subprocess.run(
        cmd, env=worker_env(2), check=True, capture_output=True, text=True, timeout=600
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, forms in result.items():
        got, want = (np.asarray(forms[k]["kernel_grad"]) for k in ("mesh", "none"))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
        assert forms["mesh"]["lowered_all_reduces"] > 0, name
        assert forms["none"]["lowered_all_reduces"] == 0, name
        assert forms["mesh"]["all_gathers"] == 0, name


def test_single_device_helpers():
    import jax

    from colorjax.errors import ShardingError
    from colorjax.parallel import check_batch_divisible, global_batch_from_local, make_mesh

    mesh = make_mesh(1)
    assert mesh.axis_names == ("data",)
    assert check_batch_divisible(5, mesh) == 5
    x = np.arange(24, dtype=np.float32).reshape(4, 6)
    g = global_batch_from_local({"x": x}, mesh)["x"]
    assert isinstance(g, jax.Array) and g.shape == (4, 6)
    np.testing.assert_array_equal(np.asarray(g), x)
    with pytest.raises(ShardingError, match="available"):
        make_mesh(jax.device_count() + 1)


def test_use_cpu_devices_splits_the_cpu_before_the_backend_starts():
    # Pinned to (at most) 2 CPUs first, so 'auto' means 2 devices even on a bigger box.
    cpus = sorted(os.sched_getaffinity(0))[:2]
    code = (
        "import json, os, jax\n"
        f"os.sched_setaffinity(0, {cpus})\n"
        "from colorjax.parallel import use_cpu_devices\n"
        "n = use_cpu_devices('auto')\n"
        "print(json.dumps({'n': n, 'devices': [d.platform for d in jax.devices()],\n"
        "                  'flags': os.environ.get('XLA_FLAGS', '')}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    cmd = [sys.executable, "-c", code]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True, timeout=300)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["n"] == len(cpus)
    assert got["devices"] == ["cpu"] * len(cpus)
    if len(cpus) > 1:
        assert "--xla_cpu_multi_thread_eigen=false" in got["flags"]


def test_use_cpu_devices_rejects_bad_counts_and_a_running_backend(monkeypatch):
    import jax

    from colorjax.errors import ConfigError
    from colorjax.parallel import use_cpu_devices

    for bad in (0, -2, "many"):
        with pytest.raises(ConfigError, match="positive integer"):
            use_cpu_devices(bad)
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
    with pytest.raises(ConfigError, match="drop"):
        use_cpu_devices(2)
    monkeypatch.delenv("XLA_FLAGS")
    jax.devices()  # the backend is running now
    with pytest.raises(ConfigError, match="already running"):
        use_cpu_devices(2)
    assert "xla_cpu_multi_thread_eigen" not in os.environ.get("XLA_FLAGS", "")
