"""Fine-tuning from pretrained weights: model.init_weights and the zhang-eccv16 CE step."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest

from colorjax import gamut, weights
from colorjax.config import ExperimentConfig
from colorjax.errors import ConfigError
from colorjax.models import build_model
from colorjax.parallel import global_batch_from_local, make_mesh
from colorjax.train.finetune import zhang_class_weights
from colorjax.train.state import create_state, make_task
from colorjax.train.steps import make_train_step

SIZE = 32


def _variables(model, seed: int) -> dict:  # noqa: ANN001
    """He-normal kernels, small biases, near-identity BatchNorm; 'bin centres' spread in ab."""
    shapes = jax.eval_shape(model.init, jax.random.key(0), np.zeros((1, 16, 16, 1), np.float32))
    rng = np.random.default_rng(seed)

    def leaf(path, spec):  # noqa: ANN001, ANN202
        name, module = path[-1].key, path[-2].key
        if module == "model_out" and name == "kernel":  # ECCV16 bin centres / 110
            return rng.uniform(-0.9, 0.9, spec.shape).astype(np.float32)
        if name == "scale":
            return (1 + 0.05 * rng.standard_normal(spec.shape)).astype(np.float32)
        if name in ("bias", "shift"):
            return (0.05 * rng.standard_normal(spec.shape)).astype(np.float32)
        std = np.sqrt(2.0 / np.prod(spec.shape[:-1]))
        return (rng.standard_normal(spec.shape) * std).astype(np.float32)

    return jax.tree_util.tree_map_with_path(leaf, shapes)


@pytest.fixture(scope="module")
def eccv_file(tmp_path_factory) -> tuple[Path, dict]:
    model = build_model("zhang-eccv16")
    variables = _variables(model, 0)
    path = tmp_path_factory.mktemp("w") / "eccv.safetensors"
    weights.save_weights(path, "zhang-eccv16", {}, variables, {"working_size": 256})
    return path, variables


def _batch(n: int = 2) -> dict:
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    imgs = [
        np.stack([0.5 + 0.5 * np.sin(6 * x + i), 0.5 + 0.5 * np.cos(5 * y), 0.3 + 0 * x], -1)
        for i in range(n)
    ]
    return {"rgb": (np.stack(imgs) * 255).astype(np.uint8)}


def _config(init: str | None, model: str = "zhang-eccv16", **loss) -> ExperimentConfig:  # noqa: ANN003
    c = ExperimentConfig()
    c.model.name = model
    c.model.init_weights = init
    c.data.image_size = SIZE
    c.train.batch_size = 2
    c.train.steps = 10
    c.optim.learning_rate = 1e-4
    c.optim.schedule = "constant"
    c.optim.ema_decay = 0.9
    for k, v in loss.items():
        setattr(c.loss, k, v)
    return c


def _np_log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_class_weights_move_the_prior_onto_the_nearest_zhang_bin() -> None:
    ours = gamut.ab_bin_centers()
    rng = np.random.default_rng(0)
    centers = np.concatenate([ours[::-1], rng.uniform(-120, 120, (52, 2))]).astype(np.float32)
    got = np.asarray(zhang_class_weights(centers, 0.5))
    prior = np.asarray(gamut.default_prior(), np.float64)
    nearest = ((ours[:, None] - centers[None]) ** 2).sum(-1).argmin(-1)
    p = np.bincount(nearest, weights=prior, minlength=len(centers))
    w = 1 / (0.5 * p / p.sum() + 0.5 / len(centers))
    np.testing.assert_allclose(got, w / (p / p.sum() * w).sum(), rtol=1e-5)


def test_init_weights_then_cross_entropy_step_on_zhang_bins(eccv_file) -> None:  # noqa: ANN001
    path, loaded = eccv_file
    mesh = make_mesh(1)
    task = make_task(_config(str(path)))
    assert task.mode == "zhang-classification"
    state = create_state(task, mesh)
    for got, want in zip(
        jax.tree_util.tree_leaves(state.params), jax.tree_util.tree_leaves(loaded), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(got), want)
    ema = jax.tree_util.tree_leaves(state.ema_params)
    assert all(
        np.array_equal(a, b) for a, b in zip(ema, jax.tree_util.tree_leaves(loaded), strict=True)
    )
    # Independent reference of the first loss: NumPy soft-encoding on the weights' centres.
    batch = _batch()
    from colorjax import color

    l_norm, ab_norm = (np.asarray(a) for a in color.rgb_uint8_to_lab_inputs(batch["rgb"]))
    logits = np.asarray(task.model.apply(loaded, l_norm, return_logits=True), np.float64)
    centers = loaded["params"]["model_out"]["kernel"][0, 0].astype(np.float64) * 110
    ab = ab_norm[:, ::4, ::4].astype(np.float64) * 110
    d2 = ((ab[..., None, :] - centers) ** 2).sum(-1)
    near = np.argsort(d2, -1)[..., :5]
    soft = np.exp(-(np.take_along_axis(d2, near, -1) - d2.min(-1, keepdims=True)) / 50.0)
    soft /= soft.sum(-1, keepdims=True)
    ce = -(soft * np.take_along_axis(_np_log_softmax(logits), near, -1)).sum(-1)
    weights = np.asarray(zhang_class_weights(centers.astype(np.float32), 0.5))[near[..., 0]]
    expected = (ce * weights).mean()  # both images are colourful: nothing masked
    step = make_train_step(task, mesh)
    new, metrics = step(state, global_batch_from_local(batch, mesh))
    assert float(metrics["loss"]) == pytest.approx(expected, rel=1e-4)
    # The centres conv gets no gradient from the CE loss; the rest of the network moves.
    np.testing.assert_array_equal(
        np.asarray(new.params["model_out"]["kernel"]), loaded["params"]["model_out"]["kernel"]
    )
    assert not np.array_equal(
        np.asarray(new.params["model8_6"]["kernel"]), loaded["params"]["model8_6"]["kernel"]
    )


def test_regression_fine_tuning_uses_the_decoded_ab(eccv_file) -> None:  # noqa: ANN001
    path, _ = eccv_file
    mesh = make_mesh(1)
    task = make_task(_config(str(path), zhang_head="regression"))
    assert task.mode == "regression"
    state = create_state(task, mesh)
    _, metrics = make_train_step(task, mesh)(state, global_batch_from_local(_batch(), mesh))
    assert np.isfinite(float(metrics["loss"])) and float(metrics["grad_norm"]) > 0


def test_fine_tuning_config_errors(eccv_file) -> None:  # noqa: ANN001
    path, _ = eccv_file
    with pytest.raises(ConfigError, match="model.init_weights=zhang-eccv16"):
        make_task(_config(None))
    task = make_task(_config(str(path), model="zhang-siggraph17"))
    with pytest.raises(ConfigError, match="does not fit 'zhang-siggraph17'"):
        create_state(task, make_mesh(1))
    c = _config(str(path))
    c.loss.zhang_head = "bins"
    from colorjax.config import validate

    with pytest.raises(ConfigError, match="loss.zhang_head"):
        validate(c)
