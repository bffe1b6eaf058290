"""Fine-tuning DDColor from official weights: L1 on ab plus DDColor's colourfulness term."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from skimage import color as skcolor
from test_finetune import SIZE, _batch

from colorjax import color, losses
from colorjax.config import ExperimentConfig, validate
from colorjax.errors import ConfigError
from colorjax.parallel import global_batch_from_local, make_mesh
from colorjax.train.state import create_state, make_task
from colorjax.train.steps import make_train_step


def _np_colorfulness_loss(rgb: np.ndarray) -> float:
    """DDColor's ColorfulnessLoss, per image as its loop, unbiased std like torch.std; mean."""
    out = []
    for img in rgb.astype(np.float64):
        r, g, b = img[..., 0], img[..., 1], img[..., 2]
        rg, yb = np.abs(r - g), np.abs(0.5 * (r + g) - b)
        std_root = np.sqrt(rg.std(ddof=1) ** 2 + yb.std(ddof=1) ** 2)
        mean_root = np.sqrt(rg.mean() ** 2 + yb.mean() ** 2)
        out.append(1 - (std_root + 0.3 * mean_root))
    return float(np.mean(out))


def test_colorfulness_loss_is_ddcolors_and_its_gradient_adds_colour() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.uniform(0.2, 0.8, (3, 16, 24, 3)).astype(np.float32)
    got = float(losses.colorfulness_loss(rgb))
    assert got == pytest.approx(_np_colorfulness_loss(rgb), abs=1e-5)
    # A small step against the gradient makes the photos more colourful by the metric too.
    grad = np.asarray(jax.grad(losses.colorfulness_loss)(rgb))
    moved = rgb - 0.5 * grad / np.abs(grad).max()
    assert _np_colorfulness_loss(moved) < _np_colorfulness_loss(rgb)
    gray = np.full((1, 8, 8, 3), 0.5, np.float32)  # a flat gray photo: finite, not NaN
    assert np.isfinite(np.asarray(jax.grad(losses.colorfulness_loss)(gray))).all()


def test_perceptual_loss_takes_any_feature_function() -> None:
    rng = np.random.default_rng(1)
    pred, true = rng.uniform(0, 1, (2, 2, 8, 8, 3)).astype(np.float32)

    def features(x):  # noqa: ANN001, ANN202 - two "layers": the image and its 2x2 block means
        return [x, x.reshape(2, 4, 2, 4, 2, 3).mean(axis=(2, 4))]

    got = float(losses.perceptual_loss(features, pred, true, (0.25, 1.0)))
    pooled = [a.reshape(2, 4, 2, 4, 2, 3).mean(axis=(2, 4)) for a in (pred, true)]
    want = 0.25 * np.abs(pred - true).mean() + np.abs(pooled[0] - pooled[1]).mean()
    assert got == pytest.approx(want, rel=1e-5)
    grad_true = jax.grad(lambda t: losses.perceptual_loss(features, pred, t, (1.0, 1.0)))(true)
    assert not np.asarray(grad_true).any()  # the truth's features take no gradient
    with pytest.raises(ValueError, match="one weight per map"):
        losses.perceptual_loss(features, pred, true, (1.0,))


def test_colorfulness_weight_is_refused_where_it_cannot_apply() -> None:
    c = ExperimentConfig()
    c.loss.colorfulness_weight = -1.0
    with pytest.raises(ConfigError, match="colorfulness_weight must be >= 0"):
        validate(c)
    c = ExperimentConfig()
    c.model.name = "colornet-tiny-cls"
    c.loss.colorfulness_weight = 0.2
    with pytest.raises(ConfigError, match="needs a model that predicts ab"):
        make_train_step(make_task(c), make_mesh(1))


def test_ddcolor_fine_tunes_from_an_official_file(tmp_path) -> None:  # noqa: ANN001
    import cv2
    from test_ddcolor import official_ddcolor

    from colorjax.weights.pth_convert import load_pth_params

    torch, official = official_ddcolor()
    torch.manual_seed(0)
    net = official.DDColor(encoder_name="convnext-t", input_size=(SIZE, SIZE), num_queries=100)
    net.train()
    with torch.no_grad():  # spectral norm and BatchNorm statistics settle
        net(torch.rand(2, 3, SIZE, SIZE))
    net.eval()
    path = tmp_path / "pytorch_model.bin"
    torch.save(net.state_dict(), path)

    c = ExperimentConfig()
    c.model.name = "ddcolor-tiny"
    c.model.init_weights = str(path)
    c.data.image_size = SIZE
    c.train.batch_size = 2
    c.optim.optimizer = "adamw"
    c.optim.learning_rate = 1e-4
    c.optim.schedule = "constant"
    c.loss.colorfulness_weight = 0.18
    mesh = make_mesh(1)
    task = make_task(c)
    assert task.mode == "regression"
    state = create_state(task, mesh)
    loaded = load_pth_params(path, "ddcolor-tiny")
    for got, want in zip(
        jax.tree_util.tree_leaves(state.params), jax.tree_util.tree_leaves(loaded), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(got), want)

    # Independent reference of the first loss: the official network on OpenCV's gray input,
    # its ab clipped as colorjax reads it, scikit-image's Lab -> RGB, NumPy losses.
    batch = _batch()
    l_norm, ab_norm = (np.asarray(a) for a in color.rgb_uint8_to_lab_inputs(batch["rgb"]))
    lab = np.concatenate([(l_norm + 1) * 50, np.zeros((*l_norm.shape[:3], 2))], axis=-1)
    gray = np.stack([cv2.cvtColor(x.astype(np.float32), cv2.COLOR_LAB2RGB) for x in lab])
    with torch.no_grad():
        ab = net(torch.from_numpy(gray.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
    ab = np.clip(ab, -128, 127)
    l1 = np.mean(np.abs(ab / 110 - ab_norm))
    rgb = np.stack(
        [
            skcolor.lab2rgb(np.concatenate([(lx + 1) * 50, ax], -1))
            for lx, ax in zip(l_norm, ab, strict=True)
        ]
    )
    expected = l1 + 0.18 * _np_colorfulness_loss(rgb)
    step = make_train_step(task, mesh)
    new, metrics = step(state, global_batch_from_local(batch, mesh))
    assert float(metrics["loss"]) == pytest.approx(expected, rel=2e-3)
    assert float(metrics["grad_norm"]) > 0
    moved = jax.tree_util.tree_leaves(new.params)[-1]
    assert not np.array_equal(np.asarray(moved), jax.tree_util.tree_leaves(loaded)[-1])
