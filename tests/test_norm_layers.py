"""ConvNormAct / GroupNorm (their CPU forms) against flax's own layers."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from colorjax.errors import ConfigError
from colorjax.models import colornet, layers
from colorjax.models.cpu import conv as cpu_conv
from colorjax.models.layers import ConvNormAct, GroupNorm, num_groups

# Spatial sizes down to 1x1 (the global branch's last maps), odd and non-square ones.
SIZES = [(1, 1), (2, 2), (3, 5), (7, 4), (16, 16)]


class _FlaxConvNormAct(nn.Module):
    """ConvNormAct as it was written with flax's layers (the form bundled weights came from)."""

    features: int
    kernel: int = 3
    stride: int = 1
    dtype: layers.Dtype = jnp.float32
    upsample_input: bool = False
    mesh: Any = None  # ConvNormAct's field (ColorNet passes it); no effect on flax's layers

    @nn.compact
    def __call__(self, x: jax.Array, film: tuple | None = None) -> jax.Array:
        if self.upsample_input:
            x = layers.upsample2x(x, "nearest")
        k, s = (self.kernel, self.kernel), (self.stride, self.stride)
        x = nn.Conv(self.features, k, strides=s, padding="SAME", name="conv")(x)
        x = nn.GroupNorm(num_groups=num_groups(self.features), name="norm")(x)
        if film is not None:
            x = x * (1 + film[0][:, None, None, :]) + film[1][:, None, None, :]
        return nn.relu(x)


def _inputs(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    # An offset and spread so the fast-variance formula is exercised away from zero mean.
    rng = np.random.default_rng(seed)
    return (1.5 + 2.0 * rng.standard_normal(shape)).astype(np.float32)


def _perturbed(variables: dict, seed: int = 1) -> dict:
    """Non-trivial scale/bias (init gives ones/zeros) so every parameter path is checked."""
    leaves, tree = jax.tree.flatten(variables)
    rng = np.random.default_rng(seed)
    return jax.tree.unflatten(
        tree,
        [np.asarray(x) + 0.5 * rng.standard_normal(x.shape).astype(np.float32) for x in leaves],
    )


def _value_and_grads(module: nn.Module, v: dict, x: np.ndarray, cot: np.ndarray) -> tuple:
    def loss(v, x):
        y = module.apply(v, x)
        return jnp.sum(y * cot), y

    (_, y), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(v, x)
    return y, grads


def _assert_same(got: tuple, want: tuple) -> None:
    (y, (gv, gx)), (ry, (rv, rx)) = got, want
    np.testing.assert_allclose(y, ry, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gx, rx, rtol=1e-5, atol=1e-4)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4), gv, rv)


@pytest.mark.parametrize(("kernel", "stride"), [(3, 1), (3, 2), (1, 1)])
def test_conv_norm_act_parameters_and_init_match_flax(kernel, stride):
    x = _inputs((2, 8, 8, 3))
    mine = ConvNormAct(16, kernel, stride).init(jax.random.key(0), x)
    ref = _FlaxConvNormAct(16, kernel, stride).init(jax.random.key(0), x)
    assert jax.tree.structure(mine) == jax.tree.structure(ref)
    jax.tree.map(np.testing.assert_array_equal, mine, ref)


@pytest.mark.parametrize(("h", "w"), SIZES)
@pytest.mark.parametrize(("features", "kernel", "stride"), [(16, 3, 1), (12, 3, 2), (8, 1, 1)])
def test_conv_norm_act_outputs_and_gradients_equal_flax(h, w, features, kernel, stride):
    x = _inputs((2, h, w, 5))
    ref = _FlaxConvNormAct(features, kernel, stride)
    v = _perturbed(ref.init(jax.random.key(0), x))
    shape = jax.eval_shape(ref.apply, v, x).shape
    cot = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    _assert_same(
        _value_and_grads(ConvNormAct(features, kernel, stride), v, x, cot),
        _value_and_grads(ref, v, x, cot),
    )


@pytest.mark.parametrize(("h", "w"), SIZES)
def test_upsampling_conv_norm_act_equals_upsample_then_flax(h, w):
    # upsample_input=True (CPU: 2x2 phase convs at the input resolution) == nearest x2, then
    # the flax layers, including 1x1 inputs where every phase reads the zero padding.
    x = _inputs((2, h, w, 6))
    ref = _FlaxConvNormAct(8, upsample_input=True)
    v = _perturbed(ref.init(jax.random.key(0), x))
    cot = np.random.default_rng(2).standard_normal((2, 2 * h, 2 * w, 8)).astype(np.float32)
    mine = ConvNormAct(8, upsample_input=True)
    assert jax.tree.structure(mine.init(jax.random.key(0), x)) == jax.tree.structure(v)
    _assert_same(_value_and_grads(mine, v, x, cot), _value_and_grads(ref, v, x, cot))


def test_upsampling_conv_norm_act_needs_3x3_stride_1():
    with pytest.raises(ConfigError, match="3x3 stride-1"):
        ConvNormAct(8, kernel=1, upsample_input=True).init(jax.random.key(0), _inputs((1, 4, 4, 2)))


@pytest.mark.parametrize(("shape", "groups"), [((2, 6, 5, 16), 4), ((3, 1, 1, 32), 8)])
@pytest.mark.parametrize("form", [cpu_conv.group_norm, layers._group_norm_grouped])
def test_group_norm_forms_equal_flax(shape, groups, form):
    # Both lowerings (CPU and other backends) of GroupNorm, with a per-channel offset.
    x = _inputs(shape)
    c = shape[-1]
    rng = np.random.default_rng(3)
    offset, scale, bias = (rng.standard_normal(c).astype(np.float32) for _ in range(3))
    ref = nn.GroupNorm(num_groups=groups)
    want = ref.apply({"params": {"scale": scale, "bias": bias}}, x + offset)
    got = form(jnp.asarray(x), offset, scale, bias, groups, 1e-6)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_group_norm_module_matches_flax():
    x = _inputs((2, 4, 4, 16))
    ref = nn.GroupNorm(num_groups=4)
    v = _perturbed(ref.init(jax.random.key(0), x))
    assert jax.tree.structure(GroupNorm(4).init(jax.random.key(0), x)) == jax.tree.structure(v)
    cot = np.random.default_rng(2).standard_normal(x.shape).astype(np.float32)
    _assert_same(_value_and_grads(GroupNorm(4), v, x, cot), _value_and_grads(ref, v, x, cot))


@pytest.mark.parametrize("shape", [(2, 6, 5, 16), (3, 1, 1, 8), (1, 9, 9, 3)])
@pytest.mark.parametrize("form", [cpu_conv.instance_norm, layers._instance_norm_reference])
def test_instance_norm_forms_equal_flax_outputs_and_gradients(shape, form):
    # Both lowerings of the GAN's parameter-free instance norm against flax's module.
    x = jnp.asarray(_inputs(shape) * 3.0 + 1.5)
    cot = jnp.asarray(np.random.default_rng(4).standard_normal(shape).astype(np.float32))
    ref = nn.InstanceNorm(use_scale=False, use_bias=False)
    assert ref.init(jax.random.key(0), x) == {}  # no parameters: the GAN's trees are unchanged

    def flax_form(v: jax.Array) -> jax.Array:
        return ref.apply({}, v)

    def ours(v: jax.Array) -> jax.Array:
        return form(v, layers.INSTANCE_NORM_EPSILON)

    for fn in (flax_form, ours):
        assert jax.jit(fn)(x).shape == shape
    want, want_vjp = jax.vjp(flax_form, x)
    got, got_vjp = jax.vjp(ours, x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_vjp(cot)[0], want_vjp(cot)[0], rtol=1e-4, atol=1e-4)


def test_instance_norm_keeps_the_compute_dtype():
    x = jnp.asarray(_inputs((2, 4, 4, 8)))
    assert layers.instance_norm(x).dtype == jnp.float32
    assert layers.instance_norm(x, dtype=jnp.bfloat16).dtype == jnp.bfloat16


def _hlo(platform: str, stride: int = 1) -> str:
    """StableHLO of a ConvNormAct's jitted kernel gradient, lowered for `platform`."""
    x = _inputs((2, 8, 8, 3))
    m = ConvNormAct(8, stride=stride)
    v = m.init(jax.random.key(0), x)
    fn = jax.jit(jax.grad(lambda v: jnp.sum(m.apply(v, x) ** 2)))
    return jax.export.export(fn, platforms=[platform])(v).mlir_module()


@pytest.mark.parametrize("stride", [1, 2])
def test_per_sample_kernel_gradient_only_on_cpu(stride):
    # The per-sample scan replaces XLA's batch-innermost kernel gradient on CPU only.
    assert "stablehlo.while" in _hlo("cpu", stride)
    assert "stablehlo.while" not in _hlo("cuda", stride)


@pytest.mark.parametrize("size", [8, 24, 64])
def test_colornet_equals_flax_layer_form(monkeypatch, size):
    # Whole networks: the bundled weights' function is unchanged by the CPU forms.
    from colorjax.models import build_model

    model = build_model("colornet-tiny")
    l_norm = np.random.default_rng(4).uniform(-1, 1, (2, size, size, 1)).astype(np.float32)
    v = _perturbed(jax.jit(model.init)(jax.random.key(0), l_norm))
    cot = np.random.default_rng(5).standard_normal((2, size, size, 2)).astype(np.float32)
    got = _value_and_grads(model, v, l_norm, cot)
    monkeypatch.setattr(colornet, "ConvNormAct", _FlaxConvNormAct)
    (y, grads), (ry, ref_grads) = got, _value_and_grads(model, v, l_norm, cot)
    # 20 layers of float32 rounding (and a ReLU flipping where a pre-activation is ~0) give
    # ~1e-5 output differences; gradients are compared relative to each tensor's largest entry.
    np.testing.assert_allclose(y, ry, rtol=1e-4, atol=3e-5)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads), strict=True):
        assert np.max(np.abs(a - b)) <= 1e-4 * np.max(np.abs(b))
