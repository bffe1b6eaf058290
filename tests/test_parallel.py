"""Data parallelism: 8 fake devices match 1 device, and bad batch splits fail before compiling."""

from __future__ import annotations

import json
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
    # The ShardingError names the sizes and the fix, and comes before anything compiles.
    for key in ("check_error", "train_error"):
        msg = result[key]
        assert msg is not None and "12" in msg and "8 devices" in msg and "batch_size" in msg


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
