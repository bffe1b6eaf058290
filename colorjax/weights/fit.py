"""Does a weights tree fit a model: the shape check every load and conversion runs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from colorjax.errors import WeightsError
from colorjax.weights.fileformat import flatten_tree


def _init_fn(model: Any, working_size: int) -> tuple[Any, Any]:
    """(init(key) -> variables, the L sample it runs on): a batch of one at a size the
    model's stride divides, near `working_size`."""
    import jax
    import jax.numpy as jnp

    from colorjax.models import model_contract

    stride = model_contract(model).stride
    size = working_size if working_size % stride == 0 else stride * max(1, working_size // stride)
    sample = jax.ShapeDtypeStruct((1, size, size, 1), jnp.float32)

    def init(key: Any) -> Any:
        return model.init({"params": key, "dropout": key}, jnp.zeros(sample.shape, sample.dtype))

    return init, sample


def abstract_variables(model: Any, working_size: int) -> dict[str, Any]:
    """Return the shapes model.init would create, without computing anything."""
    import jax

    init, _ = _init_fn(model, working_size)
    return jax.eval_shape(init, jax.random.PRNGKey(0))


def init_variables(model: Any, working_size: int, seed: int = 0) -> dict[str, Any]:
    """model.init's random variables (seeded), computed once under jit."""
    import jax

    init, _ = _init_fn(model, working_size)
    return jax.jit(init)(jax.random.PRNGKey(seed))


def check_variables(
    model: Any, variables: Mapping[str, Any], working_size: int, *, model_name: str = "the model"
) -> None:
    """Raise WeightsError unless every parameter's path and shape matches model.init's."""
    abstract = abstract_variables(model, working_size)
    expected = {k: tuple(v.shape) for k, v in flatten_tree(abstract).items()}
    actual = {k: tuple(np.shape(v)) for k, v in flatten_tree(variables).items()}
    missing = sorted(set(expected) - set(actual))
    # A generator-only GAN file is enough for inference: the discriminator may be left out whole.
    disc = [k for k in expected if k.startswith("params/discriminator/")]
    if disc and all(k in missing for k in disc):
        missing = [k for k in missing if not k.startswith("params/discriminator/")]
    unexpected = sorted(set(actual) - set(expected))
    wrong = sorted(k for k in set(expected) & set(actual) if expected[k] != actual[k])
    if not (missing or unexpected or wrong):
        return
    details = (
        [f"missing {k} {expected[k]}" for k in missing[:3]]
        + [f"unexpected {k} {actual[k]}" for k in unexpected[:3]]
        + [f"{k}: file {actual[k]} vs model {expected[k]}" for k in wrong[:3]]
    )
    raise WeightsError(
        f"weights do not fit {model_name}: {len(missing)} missing, {len(unexpected)} unexpected, "
        f"{len(wrong)} wrong-shape parameters ({'; '.join(details)}). The file is for another "
        "architecture or configuration; use weights made for this model"
    )
