"""Losses against NumPy references; the jitted steps learn, and a GAN step moves both nets."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from colorjax import gamut, losses
from colorjax.config import ExperimentConfig
from colorjax.errors import ConfigError
from colorjax.parallel import global_batch_from_local, make_mesh
from colorjax.train.state import create_state, make_schedule, make_task
from colorjax.train.steps import make_eval_step, make_train_step


def _np_log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _np_soft_targets(ab: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Independent reference: 5 nearest bins, Gaussian sigma 5, normalised; and those bins."""
    d2 = ((ab[..., None, :] - centers) ** 2).sum(-1)
    nearest = np.argsort(d2, axis=-1)[..., :5]
    w = np.exp(-np.take_along_axis(d2, nearest, -1) / (2 * 25.0))
    w /= w.sum(-1, keepdims=True)
    target = np.zeros_like(d2)
    np.put_along_axis(target, nearest, w, -1)
    return target, nearest


def test_regression_losses_match_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 3, 4, 4, 2)).astype(np.float32)
    d = a - b
    assert float(losses.l1_loss(a, b)) == pytest.approx(np.abs(d).mean(), rel=1e-5)
    assert float(losses.l2_loss(a, b)) == pytest.approx((d**2).mean(), rel=1e-5)
    delta = 0.3
    hub = np.where(np.abs(d) <= delta, 0.5 * d**2, delta * (np.abs(d) - 0.5 * delta))
    assert float(losses.huber_loss(a, b, delta)) == pytest.approx(hub.mean(), rel=1e-5)


def test_gan_losses_match_formulas():
    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(2, 2, 3, 3, 1)).astype(np.float32)
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    d_vanilla = 0.5 * (-np.log(sig(real)).mean() - np.log(1 - sig(fake)).mean())
    assert float(losses.gan_discriminator_loss(real, fake, "vanilla")) == pytest.approx(
        d_vanilla, rel=1e-5
    )
    d_ls = 0.5 * (((real - 1) ** 2).mean() + (fake**2).mean())
    assert float(losses.gan_discriminator_loss(real, fake, "lsgan")) == pytest.approx(
        d_ls, rel=1e-5
    )
    assert float(losses.gan_generator_loss(fake, "vanilla")) == pytest.approx(
        -np.log(sig(fake)).mean(), rel=1e-5
    )
    assert float(losses.gan_generator_loss(fake, "lsgan")) == pytest.approx(
        ((fake - 1) ** 2).mean(), rel=1e-5
    )


def test_rebalanced_cross_entropy_matches_numpy_and_masks_gray_images():
    rng = np.random.default_rng(2)
    centers = gamut.ab_bin_centers()
    q = len(centers)
    weights = np.asarray(gamut.rebalancing_weights(gamut.default_prior(), 0.5))
    ab = rng.uniform(-40, 40, size=(3, 4, 4, 2)).astype(np.float32)
    ab[1] *= 0.01  # near-gray image: max chroma < 5
    logits = rng.normal(size=(3, 4, 4, q)).astype(np.float32)
    got = float(losses.rebalanced_cross_entropy(logits, ab, centers, weights, gray_threshold=5.0))
    target, nearest = _np_soft_targets(ab, centers)
    ce = -(target * _np_log_softmax(logits)).sum(-1)
    pix_w = weights[nearest[..., 0]]
    keep = np.array([1.0, 0.0, 1.0])[:, None, None]
    want = (ce * pix_w * keep).sum() / (keep.sum() * 16)
    assert got == pytest.approx(want, rel=1e-4)


def test_sparse_soft_encoding_equals_gamut_soft_encode():
    rng = np.random.default_rng(3)
    centers = gamut.ab_bin_centers()
    ab = rng.uniform(-80, 80, size=(2, 8, 8, 2)).astype(np.float32)
    dense = np.asarray(gamut.soft_encode(ab, centers, sigma=5.0, neighbors=5))
    idx, w = (np.asarray(x) for x in losses.soft_encode_sparse(ab, centers, 5.0, 5))
    rebuilt = np.zeros_like(dense)
    np.put_along_axis(rebuilt, idx, w, -1)
    np.testing.assert_allclose(rebuilt, dense, atol=1e-6)


def test_schedules_warm_up_and_decay():
    c = ExperimentConfig().optim
    c.warmup_steps, c.schedule = 10, "cosine"
    s = make_schedule(c, 110, 1.0)
    assert float(s(0)) == 0.0 and float(s(5)) == pytest.approx(0.5)
    assert float(s(10)) == pytest.approx(1.0) and float(s(110)) == pytest.approx(0.0, abs=1e-6)
    c.schedule, c.constant_fraction, c.warmup_steps = "linear", 0.5, 0
    s = make_schedule(c, 100, 2.0)
    assert float(s(49)) == pytest.approx(2.0) and float(s(75)) == pytest.approx(1.0)


def _fixed_batch(size=32, n=4):
    """Smooth colourful images whose colour depends on position: learnable from L alone."""
    y, x = np.mgrid[0:size, 0:size] / size
    imgs = []
    for i in range(n):
        r = 0.5 + 0.5 * np.sin(6 * x + i)
        g = 0.5 + 0.5 * np.cos(5 * y + 2 * i)
        b = 0.5 + 0.5 * np.sin(4 * (x + y) - i)
        imgs.append(np.stack([r, g, b], -1))
    return {"rgb": (np.stack(imgs) * 255).astype(np.uint8)}


def _config(model, lr, **loss):
    c = ExperimentConfig()
    c.model.name = model
    c.data.image_size = 32
    c.train.batch_size = 4
    c.train.steps = 1000
    c.optim.learning_rate = lr
    c.optim.schedule = "constant"
    for k, v in loss.items():
        setattr(c.loss, k, v)
    return c


@pytest.mark.slow
@pytest.mark.parametrize(
    "model,lr,metric,dtype",
    [
        # bf16 compute for one family also checks params/optimizer state stay float32.
        ("colornet-tiny", 3e-3, "loss", "bfloat16"),
        ("colornet-tiny-cls", 3e-3, "loss", "float32"),
        ("deepcolorization-small", 1e-3, "g_l1", "float32"),
        # ColorNet generator (NoGAN's adversarial phase): its bin cross-entropy stays on.
        ("deepcolorization-colornet", 1e-3, "g_ce", "float32"),
    ],
)
def test_loss_falls_on_a_fixed_batch(model, lr, metric, dtype):
    mesh = make_mesh(1)
    c = _config(model, lr)
    if metric == "g_ce":
        c.loss.lambda_ce, c.loss.lambda_l1 = 3.0, 10.0
    c.optim.ema_decay = 0.9
    c.train.dtype = dtype
    task = make_task(c)
    state = create_state(task, mesh)
    step = make_train_step(task, mesh)
    batch = global_batch_from_local(_fixed_batch(), mesh)
    before = jax.tree_util.tree_map(np.asarray, state.params)
    history = []
    for _ in range(25):
        state, m = step(state, batch)
        history.append(float(m[metric]))
    assert int(state.step) == 25
    dtypes = {
        x.dtype
        for x in jax.tree_util.tree_leaves((state.params, state.opt_state, state.ema_params))
        if jnp.issubdtype(x.dtype, jnp.floating)
    }
    assert dtypes == {jnp.dtype(jnp.float32)}
    assert np.all(np.isfinite(history))
    assert np.mean(history[-5:]) < 0.9 * np.mean(history[:3]), history
    if task.mode == "gan":
        # One pix2pix step updates both networks.
        for part in ("generator", "discriminator"):
            changed = jax.tree_util.tree_map(
                lambda a, b: not np.array_equal(a, np.asarray(b)), before[part], state.params[part]
            )
            assert all(jax.tree_util.tree_leaves(changed)), part
        assert float(m["d_loss"]) > 0
        assert float(m["loss"]) == pytest.approx(
            float(m["g_adv"])
            + c.loss.lambda_l1 * float(m["g_l1"])
            + c.loss.lambda_ce * float(m["g_ce"]),
            rel=1e-5,
        )
    # EMA trails the live weights and the eval step reports finite PSNR/colourfulness.
    ev = make_eval_step(task, mesh)(state, batch)
    assert np.isfinite(float(ev["psnr"])) and float(ev["colorfulness_true"]) > 0


def test_area_downsample_matches_block_means() -> None:
    from colorjax.losses import area_downsample

    x = np.random.default_rng(0).normal(size=(2, 8, 12, 2)).astype(np.float32)
    out = np.asarray(area_downsample(jnp.asarray(x), (2, 3)))
    expected = x.reshape(2, 2, 4, 3, 4, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(area_downsample(jnp.asarray(x), (8, 12))), x)
    with pytest.raises(ValueError, match="integer factor"):
        area_downsample(jnp.asarray(x), (3, 3))


def test_lambda_ce_needs_a_colornet_generator() -> None:
    from colorjax.errors import ConfigError

    c = _config("deepcolorization-small", 1e-3, lambda_ce=1.0)
    with pytest.raises(ConfigError, match="lambda_ce"):
        make_task(c)


def test_init_weights_start_the_gan_generator_from_colornet_weights(tmp_path) -> None:
    # NoGAN: ColorNet weights (same widths) become the GAN's generator; D starts fresh.
    from colorjax.models import build_model
    from colorjax.weights import save_weights

    colornet = build_model("colornet-small-cls4")
    variables = colornet.init(jax.random.key(3), jnp.zeros((1, 32, 32, 1)))
    path = tmp_path / "cls4.safetensors"
    save_weights(path, "colornet-small-cls4", {}, variables, {"working_size": 64})
    c = _config("deepcolorization-colornet", 1e-3)
    c.model.init_weights = str(path)
    state = create_state(make_task(c), make_mesh(1))
    got = jax.tree_util.tree_map(np.asarray, state.params["generator"])
    want = jax.tree_util.tree_map(np.asarray, variables["params"])
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, got, want))
    # ... and weights of another architecture are refused by name.
    c.model.name = "colornet-tiny-cls"
    with pytest.raises(ConfigError, match="does not fit"):
        create_state(make_task(c), make_mesh(1))


def test_palette_cross_entropy_matches_numpy_and_masks_gray_images():
    # The palette: the mean over pixels of the soft-encoded targets (5 nearest bins, sigma 5).
    rng = np.random.default_rng(7)
    centers = gamut.ab_bin_centers()
    ab = rng.uniform(-40, 40, size=(3, 4, 4, 2)).astype(np.float32)
    ab[2] *= 0.01  # near-gray photo: no palette to learn
    logits = rng.normal(size=(3, len(centers))).astype(np.float32)
    got = float(losses.palette_cross_entropy(logits, ab, centers, gray_threshold=5.0))
    palette = _np_soft_targets(ab, centers)[0].mean(axis=(1, 2))
    ce = -(palette * _np_log_softmax(logits)).sum(-1)
    assert got == pytest.approx(ce[:2].mean(), rel=1e-5)


def test_scene_weight_adds_the_palette_loss_of_the_scene_head():
    # loss = colour CE + scene_weight x palette CE of the sown scene logits, each recomputed
    # here from the model's outputs; a model without a scene head, or a GAN, refuses the weight.
    from colorjax import color

    mesh = make_mesh(1)
    c = _config("colornet-tiny-cls", 1e-3, rebalance_lambda=1.0, scene_weight=0.5)
    c.model.overrides = {"fusion": "film", "scene_head": True, "head_stride": 4}
    task = make_task(c)
    state = create_state(task, mesh)
    batch = _fixed_batch()
    params = jax.tree_util.tree_map(np.asarray, state.params)
    _, m = make_train_step(task, mesh)(state, global_batch_from_local(batch, mesh))
    l_norm, ab_norm = color.rgb_uint8_to_lab_inputs(jnp.asarray(batch["rgb"]))
    out, aux = task.model.apply({"params": params}, l_norm, mutable=["aux"])
    ab_small = losses.area_downsample(ab_norm, out.shape[1:3]) * color.AB_SCALE
    centers = gamut.ab_bin_centers()
    ones = np.ones(len(centers), np.float32)
    colour = losses.rebalanced_cross_entropy(out, ab_small, centers, ones)
    palette = losses.palette_cross_entropy(aux["aux"]["scene_logits"][0], ab_small, centers)
    assert float(m["loss"]) == pytest.approx(float(colour) + 0.5 * float(palette), rel=1e-4)
    assert float(palette) > 0
    # Without the mutable collection the model returns the logits alone and sows nothing.
    np.testing.assert_array_equal(task.model.apply({"params": params}, l_norm), out)
    with pytest.raises(ConfigError, match="scene head"):
        make_train_step(make_task(_config("colornet-tiny-cls", 1e-3, scene_weight=0.5)), mesh)
    with pytest.raises(ConfigError, match="scene_weight"):
        make_train_step(make_task(_config("deepcolorization-small", 1e-3, scene_weight=0.5)), mesh)
