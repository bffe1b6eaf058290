"""Tests for colorjax.models.cost (sizes, the one cost-analysis reader, analytic FLOPs) and
the `colorjax models` table built from it."""

from __future__ import annotations

import argparse
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from colorjax.cli import models as models_cli
from colorjax.errors import ConfigError
from colorjax.models import build_model
from colorjax.models.cost import (
    abstract_variables,
    analytic_flops,
    compiled_flops,
    cost_flops,
    count_params,
    forward_flops,
    param_breakdown,
)


def test_count_params_and_forward_flops_on_a_single_conv() -> None:
    class OneConv(nn.Module):
        @property
        def contract(self):
            from colorjax.models import ModelContract

            return ModelContract(task="regression", stride=1)

        @nn.compact
        def __call__(self, x, train=False):
            return nn.Conv(8, (3, 3), use_bias=False)(x)

    model = OneConv()
    assert count_params(abstract_variables(model, 16)) == 3 * 3 * 1 * 8
    # a 3x3 conv, 1 -> 8 channels, over 32x32 outputs: 2 FLOPs per multiply-accumulate
    expected = 2 * 32 * 32 * 3 * 3 * 1 * 8
    assert forward_flops(model, 32) == pytest.approx(expected, rel=0.05)


def test_cost_reader_takes_the_dict_and_the_list_form() -> None:
    # Newer JAX: one dict. Older JAX: a list with one dict per HLO module; modules are distinct
    # computations, so their FLOPs add up. Both shapes of the same analysis read the same.
    assert cost_flops({"flops": 120.0, "bytes accessed": 9.0}) == 120.0
    assert cost_flops([{"flops": 120.0, "bytes accessed": 9.0}]) == 120.0
    assert cost_flops([{"flops": 100.0}, {"flops": 20.0}]) == 120.0
    assert cost_flops(({"flops": 7.0}, {})) == 7.0  # an empty entry adds nothing
    # No number is "unknown" (None), never 0 or an exception: callers show '-' or a reason.
    for nothing in (None, {}, [], [{}], [None], {"bytes accessed": 9.0}, {"flops": 0.0}):
        assert cost_flops(nothing) is None, nothing
    assert cost_flops({"flops": -1.0}) is None
    assert cost_flops({"flops": math.nan}) is None


class _FakeCompiled:
    """Stands in for a jax Compiled whose backend returns `cost` (or raises)."""

    def __init__(self, cost: object) -> None:
        self.cost = cost

    def cost_analysis(self) -> object:
        if isinstance(self.cost, Exception):
            raise self.cost
        return self.cost


def test_compiled_flops_reads_every_form_of_a_real_analysis() -> None:
    x = jnp.ones((1, 8, 8, 2))
    w = jnp.ones((3, 3, 2, 4))
    compiled = jax.jit(lambda a, b: _conv(a, b, 1, "SAME")).lower(x, w).compile()
    real = compiled.cost_analysis()
    as_dict = real[0] if isinstance(real, (list, tuple)) else real
    flops = compiled_flops(compiled)
    assert flops is not None and flops > 0
    assert compiled_flops(_FakeCompiled(dict(as_dict))) == flops
    assert compiled_flops(_FakeCompiled([dict(as_dict)])) == flops
    assert compiled_flops(_FakeCompiled(NotImplementedError("no cost model"))) is None


def _conv(x: jax.Array, w: jax.Array, stride: int, padding: str, lhs_dil: int = 1) -> jax.Array:
    return jax.lax.conv_general_dilated(
        x, w, (stride, stride), padding, lhs_dilation=(lhs_dil, lhs_dil),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )  # fmt: skip


def _brute_force_conv_flops(n: int, h: int, k: int, cin: int, cout: int, stride: int) -> int:
    """2 x multiply-adds that touch a real (unpadded) input pixel, by explicit enumeration."""
    out = -(-h // stride)
    total_pad = max((out - 1) * stride + k - h, 0)
    lo = total_pad // 2
    hits = 0
    for oy in range(out):
        for ox in range(out):
            for ky in range(k):
                for kx in range(k):
                    iy, ix = oy * stride + ky - lo, ox * stride + kx - lo
                    hits += 0 <= iy < h and 0 <= ix < h
    return 2 * n * cout * cin * hits


@pytest.mark.parametrize(("h", "k", "stride"), [(16, 3, 1), (15, 3, 2), (8, 4, 2), (9, 1, 1)])
def test_conv_flops_match_hand_count_and_xla(h: int, k: int, stride: int) -> None:
    x = jnp.ones((2, h, h, 3))
    w = jnp.ones((k, k, 3, 5))
    counted = analytic_flops(lambda a, b: _conv(a, b, stride, "SAME"), x, w)
    assert counted == _brute_force_conv_flops(2, h, k, 3, 5, stride)
    compiled = jax.jit(lambda a, b: _conv(a, b, stride, "SAME")).lower(x, w).compile()
    cost = compiled_flops(compiled)
    if cost is not None:
        assert cost == pytest.approx(counted, rel=0.02)


def test_flops_of_gradient_and_dense_layers() -> None:
    x = jnp.ones((4, 8, 8, 3))
    w = jnp.ones((3, 3, 3, 6))
    dense = jnp.ones((6, 10))

    def loss(w: jax.Array, dense: jax.Array) -> jax.Array:
        y = _conv(x, w, 1, "SAME").mean(axis=(1, 2))
        return (y @ dense).sum()

    fwd = analytic_flops(loss, w, dense)
    assert fwd == _brute_force_conv_flops(4, 8, 3, 3, 6, 1) + 2 * 4 * 6 * 10
    # Backward of a conv w.r.t. its weights costs one more conv-sized contraction (the input
    # gradient is not needed), and the dense layer adds one more matmul for d/dW (and d/dy).
    grads = analytic_flops(jax.grad(loss, argnums=(0, 1)), w, dense)
    assert grads > fwd
    compiled = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(w, dense).compile()
    cost = compiled_flops(compiled)
    if cost is not None:
        assert 0.9 <= cost / grads <= 1.5


def test_transposed_conv_skips_dilation_holes() -> None:
    x = jnp.ones((1, 4, 4, 2))
    w = jnp.ones((4, 4, 2, 3))
    # A stride-2 transposed conv is a conv over the input dilated by 2: 3 of 4 taps hit holes.
    fn = lambda a, b: _conv(a, b, 1, ((2, 2), (2, 2)), lhs_dil=2)  # noqa: E731
    counted = analytic_flops(fn, x, w)
    naive = 2 * 8 * 8 * 3 * 2 * 16
    assert counted < naive / 2
    cost = compiled_flops(jax.jit(fn).lower(x, w).compile())
    if cost is not None:
        assert cost == pytest.approx(counted, rel=0.02)


def test_models_cli_markdown_table(capsys) -> None:
    parser = argparse.ArgumentParser()
    models_cli.configure_parser(parser)
    args = parser.parse_args(
        ["colornet-tiny", "deepcolorization-small", "--markdown", "--resolution", "8"]
    )
    assert models_cli.run(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| model | family | task | parameters | GFLOPs @ 8x8 |"
    tiny = param_breakdown(build_model("colornet-tiny"))["total"]
    gan = param_breakdown(build_model("deepcolorization-small"))
    assert lines[2].startswith(f"| colornet-tiny | colornet | regression | {tiny:,} | ")
    assert float(lines[2].rstrip(" |").rsplit("|", 1)[1]) > 0
    split = f"{gan['total']:,} (G {gan['generator']:,} + D {gan['discriminator']:,})"
    # 8 px is not a multiple of the GAN's stride (32): no FLOPs, shown as '-'
    assert lines[3] == f"| deepcolorization-small | deepcolorization | gan | {split} | - |"
    with pytest.raises(ConfigError):
        models_cli.run(parser.parse_args(["no-such-model"]))
