"""Tests for the colorization networks, the model registry and `colorjax models`.

CPU cost note: XLA compiles one threefry kernel per random draw (~0.4 s each on CPU), so a
jitted Flax init of a 40-tensor model takes >10 s. Most tests therefore draw weights in numpy
from the abstract (eval_shape) init, and real `model.init` runs once, with an 'rbg' key.
Inputs are numpy arrays for the same reason.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.errors import InvalidRngError

from colorjax.errors import ConfigError, InputShapeError
from colorjax.gamut import ab_bin_centers
from colorjax.inference.predict import predict_ab
from colorjax.models import (
    DeepColorization,
    PatchDiscriminator,
    build_model,
    count_params,
    get_spec,
    list_models,
    param_breakdown,
    patchgan_receptive_field,
)

SMALL_MODELS = ["colornet-tiny", "colornet-tiny-cls", "deepcolorization-small"]


def _key(seed: int) -> jax.Array:
    """A PRNG key of the 'rbg' kind: compiles much faster than threefry on CPU."""
    return jax.random.key(seed, impl="rbg")


X = np.random.default_rng(0).uniform(-1, 1, (2, 32, 64, 1)).astype(np.float32)


def _channels(name: str) -> int:
    """Expected output channels: Q logits for classification heads, else 2 (ab)."""
    return len(ab_bin_centers()) if get_spec(name).task == "classification" else 2


def _numpy_params(module: nn.Module, x: np.ndarray, seed: int = 0) -> dict:
    """Variables shaped like module.init(x), drawn in numpy at fan-in (He-like) scale."""
    abstract = jax.eval_shape(module.init, jax.random.key(0), x)
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = str(path[-1])
        if leaf.ndim >= 2:  # conv / dense kernel: (..., fan_in, fan_out)
            fan_in = int(np.prod(leaf.shape[:-1]))
            return jnp.asarray(rng.normal(0, np.sqrt(2.0 / fan_in), leaf.shape), jnp.float32)
        if "scale" in name:
            return jnp.asarray(1 + 0.1 * rng.normal(size=leaf.shape), jnp.float32)
        return jnp.asarray(0.1 * rng.normal(size=leaf.shape), jnp.float32)

    return jax.tree_util.tree_map_with_path(draw, abstract)


@pytest.fixture(scope="module")
def small_variables() -> dict[str, tuple[nn.Module, dict]]:
    """Small registered models with numpy-drawn weights."""
    out = {}
    for i, name in enumerate(SMALL_MODELS):
        model = build_model(name)
        out[name] = (model, _numpy_params(model, X[:1], seed=i))
    return out


@functools.cache
def _apply(name: str, train: bool = False, dtype: str = "float32"):
    """Jitted forward pass of a registered model (cached: one compile per name/mode/shape)."""
    model = build_model(name, dtype=dtype)
    return jax.jit(lambda v, x, key: model.apply(v, x, train=train, rngs={"dropout": key}))


def test_registry_has_required_variants() -> None:
    names = list_models()
    required = {
        "colornet-tiny",
        "colornet-tiny-cls",
        "colornet-base",
        "colornet-base-cls",
        "deepcolorization-small",
        "deepcolorization-unet256",
    }
    assert required <= set(names)
    for name in names:
        spec = get_spec(name)
        assert spec.name == name
        assert spec.family in (
            "colornet",
            "colornet-lite",
            "deepcolorization",
            "zhang-eccv16",
            "zhang-siggraph17",
            "ddcolor",
        )
        assert spec.description
    assert build_model("deepcolorization-small").stride == 32
    assert build_model("deepcolorization-unet256").stride == 256
    assert build_model("colornet-base").stride == 8


def test_each_variant_stores_its_head_once_and_derives_its_task() -> None:
    from colorjax.models import model_task

    expected = {
        "colornet-tiny": "regression",
        "colornet-tiny-cls": "classification",
        "colornet-small-cls4": "classification",
        "colornet-small-cls4-film": "classification",
        "colornet-base": "regression",
        "colornet-base-cls": "classification",
        "colornet-lite2-cls4": "classification",
        "colornet-lite0-cls4": "classification",
        "deepcolorization-small": "gan",
        "deepcolorization-colornet": "gan",
        "deepcolorization-colornet-film": "gan",
        "deepcolorization-lite2": "gan",
        "deepcolorization-unet256": "gan",
        "zhang-eccv16": "regression",
        "zhang-siggraph17": "regression",
        "ddcolor-tiny": "regression",
        "ddcolor-large": "regression",
    }
    assert {name: get_spec(name).task for name in list_models()} == expected
    for name in list_models():
        spec = get_spec(name)
        assert not hasattr(spec, "head")  # the head lives in kwargs only (it shapes the params)
        assert model_task(build_model(name)) == spec.task
        if spec.family == "colornet":
            assert spec.kwargs["head"] == spec.task
    # An override of the head changes the task of the built model, from the one place.
    assert model_task(build_model("colornet-tiny", head="classification")) == "classification"


def test_variants_are_registered_beside_their_architecture() -> None:
    from colorjax.models import register_model

    families = {get_spec(n).family: get_spec(n).cls.__module__ for n in list_models()}
    assert families == {
        "colornet": "colorjax.models.colornet",
        "colornet-lite": "colorjax.models.colornet_lite",
        "deepcolorization": "colorjax.models.deepcolorization",
        "zhang-eccv16": "colorjax.models.zhang",
        "zhang-siggraph17": "colorjax.models.zhang",
        "ddcolor": "colorjax.models.ddcolor",
    }
    with pytest.raises(ConfigError, match="already registered"):
        register_model("colornet-tiny", "colornet", get_spec("colornet-tiny").cls, "again")
    with pytest.raises(ConfigError, match="family 'colornet' is ColorNet"):
        register_model("odd", "colornet", DeepColorization, "a GAN under the ColorNet family")
    with pytest.raises(ConfigError, match="unknown override"):
        register_model("odd", "deepcolorization", DeepColorization, "bad key", widths=3)
    assert "odd" not in list_models()


def test_every_model_takes_the_training_mesh_but_no_override_or_registration_sets_it() -> None:
    # make_task(mesh=...) gives the train step's mesh to any registered model (its CPU
    # kernel-gradient loops run per device on it); the parameters do not change, and the mesh
    # never comes from a config or a weights header.
    from colorjax.config import ExperimentConfig
    from colorjax.models import ColorNet, register_model
    from colorjax.parallel import make_mesh
    from colorjax.train.state import make_task

    mesh = make_mesh(1)
    for name in list_models():
        assert build_model(name, mesh=mesh) == build_model(name).clone(mesh=mesh), name
    l_norm = jax.ShapeDtypeStruct((1, 64, 64, 1), jnp.float32)
    for name in ("colornet-tiny", "deepcolorization-small"):
        trees = [
            jax.eval_shape(build_model(name, mesh=m).init, jax.random.key(0), l_norm)
            for m in (None, mesh)
        ]
        assert trees[0] == trees[1], name
    with pytest.raises(ConfigError, match="jax.sharding.Mesh"):
        build_model("colornet-tiny", mesh="data")
    with pytest.raises(ConfigError, match="unknown override"):
        register_model("odd", "colornet", ColorNet, "a mesh in the registry", mesh=mesh)
    config = ExperimentConfig()
    config.model.name = "colornet-tiny"
    config.model.overrides = {"mesh": "data"}
    with pytest.raises(ConfigError, match="model.overrides.mesh"):
        make_task(config, mesh=mesh)
    assert "odd" not in list_models()


@pytest.mark.parametrize("name", list_models())
def test_shapes_and_dtypes_at_two_resolutions(name: str) -> None:
    model = build_model(name)
    s = model.stride
    if isinstance(model, DeepColorization):
        s = max(s, 32)  # a ColorNet generator's stride (8) is below the PatchGAN's 24 px minimum
    for h, w in [(s, 2 * s), (2 * s, s)]:
        x = jax.ShapeDtypeStruct((2, h, w, 1), jnp.float32)
        variables = jax.eval_shape(model.init, jax.random.key(0), x)
        leaves = jax.tree_util.tree_leaves(variables)
        assert leaves and all(leaf.dtype == jnp.float32 for leaf in leaves)
        out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
        k = getattr(model, "head_stride", 1)  # quarter-resolution heads predict at H/k
        assert out.shape == (2, h // k, w // k, _channels(name))
        assert out.dtype == jnp.float32
        if isinstance(model, DeepColorization):
            assert set(variables["params"]) == {"generator", "discriminator"}
            ab = jax.ShapeDtypeStruct((2, h, w, 2), jnp.float32)
            logits = jax.eval_shape(
                lambda v, l_, a: model.apply(v, l_, a, method="discriminate"), variables, x, ab
            )
            # 4x4 convs with padding 1: three stride-2 layers, then two stride-1 layers (-1 each)
            assert logits.shape == (2, h // 8 - 2, w // 8 - 2, 1)
            assert logits.dtype == jnp.float32


def test_pix2pix_reference_sizes() -> None:
    # Isola et al. 2017: the 256x256 PatchGAN outputs a 30x30 map of 70x70 patches;
    # the reference unet_256 generator has 54.4M parameters and the discriminator 2.77M.
    model = build_model("deepcolorization-unet256")
    x = jax.ShapeDtypeStruct((1, 256, 256, 1), jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    ab = jax.ShapeDtypeStruct((1, 256, 256, 2), jnp.float32)
    logits = jax.eval_shape(
        lambda v, l_, a: model.apply(v, l_, a, method="discriminate"), variables, x, ab
    )
    assert logits.shape == (1, 30, 30, 1)
    assert model.receptive_field == 70
    assert count_params(variables["params"]["generator"]) == pytest.approx(54.41e6, rel=0.01)
    assert count_params(variables["params"]["discriminator"]) == pytest.approx(2.77e6, rel=0.01)


def test_real_init_creates_both_gan_subtrees() -> None:
    model = build_model("deepcolorization-small")
    x = X[:1]
    variables = jax.jit(model.init)(_key(0), x)
    abstract = jax.eval_shape(model.init, jax.random.key(0), x)
    assert set(variables) == {"params"}  # no mutable collections (no batch statistics)
    assert set(variables["params"]) == {"generator", "discriminator"}
    assert jax.tree_util.tree_structure(variables) == jax.tree_util.tree_structure(abstract)
    kernels = [
        leaf for path, leaf in jax.tree_util.tree_leaves_with_path(variables) if leaf.ndim == 4
    ]
    assert all(float(jnp.std(k)) > 0 for k in kernels)  # randomly initialised, not zeros
    counts = param_breakdown(model)
    assert (
        counts["total"] == counts["generator"] + counts["discriminator"] == count_params(variables)
    )
    assert counts["total"] < 4_000_000  # small enough to bundle with the package


@functools.cache
def _predict(name: str):
    """Jitted predict_ab of a registered model."""
    return jax.jit(functools.partial(predict_ab, build_model(name)))


@pytest.mark.parametrize("name", ["colornet-tiny", "deepcolorization-small"])
def test_forward_is_finite_and_jit_matches_eager(name: str, small_variables) -> None:
    model, variables = small_variables[name]
    jitted = _apply(name)(variables, X, _key(0))
    assert jitted.shape == (2, 32, 64, _channels(name))
    assert jitted.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(jitted)))
    assert float(jnp.std(jitted)) > 0  # depends on the input: not a constant map
    assert float(jnp.max(jnp.abs(jitted))) <= 1.0  # tanh output
    if name == "deepcolorization-small":
        # eager runs op by op (each op compiled once): slow on CPU, so one model only
        eager = model.apply(variables, X)
        np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), rtol=1e-4, atol=1e-5)


def test_classification_forward_and_predict_ab(small_variables) -> None:
    name = "colornet-tiny-cls"
    model, variables = small_variables[name]
    logits = jax.eval_shape(model.apply, variables, X)
    assert logits.shape == (2, 32, 64, len(ab_bin_centers())) and logits.dtype == jnp.float32
    ab = _predict(name)(variables, X)
    assert ab.shape == (2, 32, 64, 2) and ab.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(ab))) and float(jnp.std(ab)) > 0
    # the annealed mean is a convex combination of bin centres
    assert float(jnp.max(jnp.abs(ab))) <= np.abs(ab_bin_centers()).max() / 110.0 + 1e-6


def test_gradients_finite_and_nonzero(small_variables) -> None:
    # Classification ColorNet: softmax cross-entropy against the grey bin.
    model, variables = small_variables["colornet-tiny-cls"]
    grey = int(np.argmin(np.abs(ab_bin_centers()).sum(axis=1)))

    def ce_loss(params):
        logits = model.apply({"params": params}, X, train=True)
        return -jnp.mean(jax.nn.log_softmax(logits)[..., grey])

    grads = jax.jit(jax.grad(ce_loss))(variables["params"])
    leaves = jax.tree_util.tree_leaves(grads)
    assert all(np.all(np.isfinite(np.asarray(g))) for g in leaves)
    assert all(float(jnp.max(jnp.abs(g))) > 0 for g in leaves)  # every layer is reached

    # GAN: a generator loss plus a discriminator loss reach both subtrees.
    model, variables = small_variables["deepcolorization-small"]

    def gan_loss(params):
        v = {"params": params}
        ab = model.apply(v, X, train=True, rngs={"dropout": _key(5)})
        logits = model.apply(v, X, ab, method="discriminate")
        return jnp.mean(jnp.abs(ab)) + jnp.mean(jax.nn.softplus(-logits))

    grads = jax.jit(jax.grad(gan_loss))(variables["params"])
    for part in ("generator", "discriminator"):
        leaves = jax.tree_util.tree_leaves(grads[part])
        assert all(np.all(np.isfinite(np.asarray(g))) for g in leaves)
        assert all(float(jnp.max(jnp.abs(g))) > 0 for g in leaves)


@pytest.mark.parametrize("name", ["colornet-tiny", "deepcolorization-small"])
def test_bad_inputs_raise_input_shape_error(name: str, small_variables) -> None:
    model, variables = small_variables[name]
    s = model.stride
    with pytest.raises(InputShapeError, match=r"\(N, H, W, 1\)"):
        model.apply(variables, jnp.zeros((s, s, 1)))
    with pytest.raises(InputShapeError, match="one channel"):
        model.apply(variables, jnp.zeros((1, s, s, 3)))
    with pytest.raises(InputShapeError, match=f"multiple of {s}") as info:
        model.apply(variables, jnp.zeros((1, s + 2, 2 * s, 1)))
    assert f"{2 * s}x{2 * s}" in str(info.value)  # suggests the next valid size
    with pytest.raises(InputShapeError, match="floating-point"):
        model.apply(variables, jnp.zeros((1, s, s, 1), dtype=jnp.uint8))
    assert issubclass(InputShapeError, ValueError)


def test_discriminate_checks_ab_shape(small_variables) -> None:
    model, variables = small_variables["deepcolorization-small"]
    with pytest.raises(InputShapeError, match=r"\(1, 32, 32, 2\)"):
        model.apply(
            variables, jnp.zeros((1, 32, 32, 1)), jnp.zeros((1, 32, 32, 3)), method="discriminate"
        )


def test_unknown_names_and_overrides_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="colornet-tiny") as info:
        build_model("colornet-huge")
    assert isinstance(info.value, ValueError)
    with pytest.raises(ConfigError, match="unknown model"):
        get_spec("nope")
    with pytest.raises(ConfigError, match="widht"):
        build_model("colornet-tiny", widht=3)
    with pytest.raises(ConfigError, match="head"):
        build_model("colornet-tiny", head="segmentation")
    with pytest.raises(ConfigError, match="dtype"):
        build_model("colornet-tiny", dtype="float33")


def test_overrides_from_json_like_values() -> None:
    model = build_model("colornet-tiny", decoder_features=[8, 8, 8], dtype="bfloat16")
    assert model.decoder_features == (8, 8, 8)
    assert model.dtype == jnp.bfloat16
    variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 16, 16, 1)))
    assert variables["params"]["head"]["kernel"].shape == (1, 1, 8, 2)


def test_discriminate_patch_map(small_variables) -> None:
    model, variables = small_variables["deepcolorization-small"]
    l_norm = np.concatenate([X, X], axis=1)  # 64x64
    ab = np.zeros((2, 64, 64, 2), np.float32)
    logits = jax.jit(lambda v, l_, a: model.apply(v, l_, a, method="discriminate"))(
        variables, l_norm, ab
    )
    assert logits.shape == (2, 64 // 8 - 2, 64 // 8 - 2, 1)
    assert logits.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(logits)))


@pytest.mark.parametrize("n_layers", [2, 3])
def test_patchgan_receptive_field_matches_gradient_support(n_layers: int) -> None:
    # Without instance norm (which couples all pixels) a logit depends exactly on its patch.
    disc = PatchDiscriminator(ndf=4, n_layers=n_layers, norm="none")
    x = np.random.default_rng(1).normal(size=(1, 128, 128, 3)).astype(np.float32)
    params = _numpy_params(disc, x)
    out_shape = jax.eval_shape(disc.apply, params, x).shape
    i, j = out_shape[1] // 2, out_shape[2] // 2
    grad = jax.jit(jax.grad(lambda x: disc.apply(params, x)[0, i, j, 0]))(x)
    nonzero = np.asarray(grad[0]) != 0
    rows = np.nonzero(nonzero.any(axis=(1, 2)))[0]
    cols = np.nonzero(nonzero.any(axis=(0, 2)))[0]
    support = rows.max() - rows.min() + 1
    assert support == cols.max() - cols.min() + 1
    assert support == patchgan_receptive_field(n_layers)
    if n_layers == 3:
        assert support == 70


def test_dropout_only_in_train_mode(small_variables) -> None:
    name = "deepcolorization-small"
    model, variables = small_variables[name]
    evaluate, train = _apply(name), _apply(name, train=True)
    eval_a = evaluate(variables, X, _key(1))
    eval_b = evaluate(variables, X, _key(2))
    np.testing.assert_array_equal(np.asarray(eval_a), np.asarray(eval_b))
    train_1 = train(variables, X, _key(1))
    train_1b = train(variables, X, _key(1))
    train_2 = train(variables, X, _key(2))
    np.testing.assert_array_equal(np.asarray(train_1), np.asarray(train_1b))
    assert float(jnp.max(jnp.abs(train_1 - train_2))) > 1e-4
    assert float(jnp.max(jnp.abs(train_1 - eval_a))) > 1e-4
    with pytest.raises(InvalidRngError):
        jax.eval_shape(lambda v, x: model.apply(v, x, train=True), variables, X)


@pytest.mark.parametrize("rate", [0.5, 0.3, 1.0])
def test_unet_dropout_drops_at_its_rate_and_scales_the_rest(rate: float) -> None:
    from colorjax.models.deepcolorization import dropout

    x = jnp.ones((4, 33, 17, 8))  # 17952 elements, not a multiple of 32 mask bits
    out = np.asarray(dropout(x, rate, jax.random.key(0)))
    kept = out != 0
    if rate == 1.0:
        assert not kept.any()
        return
    np.testing.assert_allclose(out[kept], 1.0 / (1.0 - rate), rtol=1e-6)
    # The keep fraction's standard error here is ~0.004.
    assert abs(kept.mean() - (1.0 - rate)) < 0.02
    # Neighbours (bits of one random word at rate 0.5) are uncorrelated...
    flat = kept.reshape(-1).astype(np.float64)
    assert abs(np.corrcoef(flat[:-1], flat[1:])[0, 1]) < 0.05
    # ...and another key draws another mask.
    other = np.asarray(dropout(x, rate, jax.random.key(1))) != 0
    agree = (1.0 - rate) ** 2 + rate**2
    assert abs((kept == other).mean() - agree) < 0.03


def test_bfloat16_compute_float32_outputs(small_variables) -> None:
    name = "colornet-tiny"
    _, variables = small_variables[name]
    bf16 = build_model(name, dtype=jnp.bfloat16)
    bf16_vars = jax.eval_shape(bf16.init, jax.random.key(0), X)
    # same parameter tree, still float32: f32 weights are usable by the bf16 model
    assert jax.tree_util.tree_structure(bf16_vars) == jax.tree_util.tree_structure(variables)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(bf16_vars))
    key = _key(0)
    ref = _apply(name)(variables, X, key)
    out = _apply(name, dtype="bfloat16")(variables, X, key)
    assert out.dtype == jnp.float32
    err = np.abs(np.asarray(out) - np.asarray(ref))
    assert err.mean() < 0.03 and err.max() < 0.25
    assert err.max() > 0  # bf16 really was used


def test_predict_ab_heads(small_variables) -> None:
    # Regression and GAN: predict_ab is the eval-mode output itself.
    class Stub(nn.Module):
        @property
        def contract(self):
            from colorjax.models import ModelContract

            return ModelContract(task="regression", stride=1)

        @nn.compact
        def __call__(self, x, train=False):
            return jnp.tanh(nn.Dense(2)(x))

    stub = Stub()
    x = X[:1, :8, :8]
    v = _numpy_params(stub, x)
    np.testing.assert_array_equal(np.asarray(predict_ab(stub, v, x)), stub.apply(v, x))

    # Classification: a head whose logits always peak at bin k decodes to that bin's centre.
    model, variables = small_variables["colornet-tiny-cls"]
    centers = ab_bin_centers()
    k = int(np.argmax(centers[:, 0]))  # the reddest bin: far from the grey mean
    head = variables["params"]["head"]
    bias = jnp.zeros_like(head["bias"]).at[k].set(50.0)
    params = {
        **variables["params"],
        "head": {"kernel": jnp.zeros_like(head["kernel"]), "bias": bias},
    }
    ab = _predict("colornet-tiny-cls")({"params": params}, X)
    assert ab.shape == (2, 32, 64, 2) and ab.dtype == jnp.float32
    np.testing.assert_allclose(
        np.asarray(ab), np.broadcast_to(centers[k] / 110.0, ab.shape), atol=1e-4
    )


def test_quarter_resolution_head_keeps_the_decoder_and_upsamples_decoded_ab() -> None:
    # head_stride=4: same parameter tree as the full-resolution net (only where the decoder
    # stops upsampling changes), logits at H/4, and predict_ab returns ab at H x W equal to
    # a bilinear resize of the annealed mean taken at H/4.
    from colorjax.color import AB_SCALE
    from colorjax.gamut import ab_bin_centers, annealed_mean

    full = build_model("colornet-tiny-cls")
    quarter = build_model("colornet-tiny-cls", head_stride=4)
    x = jax.random.uniform(jax.random.key(1), (2, 32, 48, 1), minval=-1.0, maxval=1.0)
    v_full = full.init(jax.random.key(0), x)
    v_quarter = quarter.init(jax.random.key(0), x)
    shapes = jax.tree_util.tree_map(lambda a: a.shape, v_full)
    assert jax.tree_util.tree_map(lambda a: a.shape, v_quarter) == shapes
    logits = quarter.apply(v_quarter, x)
    assert logits.shape == (2, 8, 12, logits.shape[-1])
    ab = predict_ab(quarter, v_quarter, x, temperature=0.5)
    assert ab.shape == (2, 32, 48, 2)
    small = annealed_mean(logits, jnp.asarray(ab_bin_centers()), 0.5) / AB_SCALE
    expected = jax.image.resize(small, (2, 32, 48, 2), method="bilinear")
    assert jnp.allclose(ab, expected, atol=1e-6)
    with pytest.raises(ConfigError, match="head_stride"):
        build_model("colornet-tiny-cls", head_stride=3)


def test_colornet_generator_gan_decodes_its_bins_at_the_requested_temperature() -> None:
    # The GAN's ColorNet generator hands D the annealed mean of its H/4 bins, upsampled; the
    # inference temperature knob reaches it through predict_ab like a classification ColorNet.

    gan = build_model("deepcolorization-colornet")
    x = jax.random.uniform(jax.random.key(2), (1, 32, 32, 1), minval=-1.0, maxval=1.0)
    variables = jax.jit(gan.init)(jax.random.key(0), x)
    ab, logits = gan.apply(variables, x, method="generate")
    assert ab.shape == (1, 32, 32, 2) and logits.shape[1:3] == (8, 8)
    colornet = build_model("colornet-small-cls4")
    alone = predict_ab(colornet, {"params": variables["params"]["generator"]}, x, temperature=0.7)
    np.testing.assert_allclose(predict_ab(gan, variables, x, temperature=0.7), alone, atol=1e-6)
    assert not np.allclose(predict_ab(gan, variables, x, temperature=0.1), alone, atol=1e-3)


def test_film_fusion_starts_independent_of_the_scene_and_is_the_concat_net_without_it() -> None:
    # colornet 'film': the fusion conv sees the mid-level features only and the zero-initialised
    # fusion_film Dense modulates its output, so at init (a) the output does not depend on the
    # global branch and no gradient reaches it, (b) it equals a concat net whose fusion kernel
    # ignores the scene vector; once fusion_film is non-zero the scene changes the output.
    kw = {"head_stride": 4, "head": "classification"}
    concat = build_model("colornet-tiny-cls", **kw)
    film = build_model("colornet-tiny-cls", fusion="film", **kw)
    x = jnp.asarray(X)
    params = dict(_numpy_params(film, x, seed=3)["params"])
    params["fusion_film"] = jax.tree_util.tree_map(jnp.zeros_like, params["fusion_film"])
    out = film.apply({"params": params}, x)

    def scene_grad(p):
        g = jax.grad(lambda q: jnp.mean(film.apply({"params": q}, x) ** 2))(p)
        return np.asarray(g["global_dense_0"]["kernel"])

    assert not np.any(scene_grad(params))
    moved = dict(
        params, global_dense_0=jax.tree_util.tree_map(lambda a: a + 1, params["global_dense_0"])
    )
    np.testing.assert_array_equal(film.apply({"params": moved}, x), out)
    # (b): the concat tree is the film tree without fusion_film and with scene rows in the kernel.
    v_concat = concat.init(jax.random.key(0), x)
    as_concat = {k: v for k, v in params.items() if k != "fusion_film"}
    kernel = params["fusion"]["conv"]["kernel"]
    want = v_concat["params"]["fusion"]["conv"]["kernel"].shape
    rows = jnp.zeros((*kernel.shape[:2], want[2] - kernel.shape[2], kernel.shape[3]))
    conv = {**params["fusion"]["conv"], "kernel": jnp.concatenate([kernel, rows], axis=2)}
    as_concat["fusion"] = {**params["fusion"], "conv": conv}
    assert jax.tree_util.tree_map(jnp.shape, as_concat) == jax.tree_util.tree_map(
        jnp.shape, v_concat["params"]
    )
    np.testing.assert_allclose(concat.apply({"params": as_concat}, x), out, atol=1e-5)
    # A non-zero modulation makes the output, and the gradient, depend on the scene.
    rng = np.random.default_rng(4)
    params["fusion_film"] = jax.tree_util.tree_map(
        lambda a: jnp.asarray(rng.normal(0, 0.3, a.shape), jnp.float32), params["fusion_film"]
    )
    assert not np.allclose(film.apply({"params": params}, x), out)
    assert np.any(scene_grad(params))
    # The palette head's logits are sown only into a collection the caller makes mutable.
    with_head = build_model("colornet-tiny-cls", fusion="film", scene_head=True, **kw)
    v_head = with_head.init(jax.random.key(0), x)
    assert set(v_head) == {"params"} and "scene_head" in v_head["params"]
    _, aux = with_head.apply(v_head, x, mutable=["aux"])
    assert aux["aux"]["scene_logits"][0].shape == (x.shape[0], len(ab_bin_centers()))
    with pytest.raises(ConfigError, match="fusion"):
        build_model("colornet-tiny-cls", fusion="add")
    with pytest.raises(ConfigError, match="global_activation"):
        build_model("colornet-tiny-cls", global_activation="tanh")


def test_conv_norm_act_film_scales_and_shifts_the_normalised_features() -> None:
    # relu(n * (1 + s) + t): with s = 1, t = 0 it doubles the unmodulated output (relu is
    # positively homogeneous); with s = -1 every position becomes relu(t) of its image.
    from colorjax.models.layers import ConvNormAct

    layer = ConvNormAct(8)
    x = jax.random.normal(jax.random.key(5), (2, 6, 6, 3))
    v = layer.init(jax.random.key(0), x)
    plain = layer.apply(v, x)
    zeros, ones = jnp.zeros((2, 8)), jnp.ones((2, 8))
    np.testing.assert_array_equal(layer.apply(v, x, (zeros, zeros)), plain)
    np.testing.assert_allclose(layer.apply(v, x, (ones, zeros)), 2 * plain, rtol=1e-6, atol=1e-6)
    shift = jnp.asarray(np.random.default_rng(6).normal(size=(2, 8)), jnp.float32)
    out = layer.apply(v, x, (-ones, shift))
    np.testing.assert_allclose(
        out, jnp.broadcast_to(jax.nn.relu(shift)[:, None, None, :], out.shape), atol=1e-6
    )


def test_every_model_declares_its_contract_and_stubs_without_one_are_refused() -> None:
    from flax import linen as nn

    from colorjax.models import ModelContract, model_contract

    for name in list_models():
        contract = model_contract(build_model(name))
        assert isinstance(contract, ModelContract)
        assert contract.task == get_spec(name).task and contract.stride >= 1
    assert model_contract(build_model("zhang-siggraph17")).takes_hints
    assert model_contract(build_model("deepcolorization-colornet")).decodes_bins
    assert model_contract(build_model("colornet-small-cls4-film")).palette_head
    assert model_contract(build_model("colornet-lite2-cls4")).pretrained_encoder == "lite2"

    class NoContract(nn.Module):
        stride: int = 8  # an attribute is not a contract

        @nn.compact
        def __call__(self, x):
            return x

    with pytest.raises(ConfigError, match="declares no model contract"):
        model_contract(NoContract())
    with pytest.raises(ConfigError, match="unknown task"):
        ModelContract(task="segmentation", stride=1)
