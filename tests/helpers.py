"""Test helpers shared by several test files (importable because tests/ is on sys.path)."""

import jax
import numpy as np


def random_variables(model, size: int, seed: int = 0, head_scale: float = 1.0):
    """He-style random variables built in NumPy from the abstract init (no XLA compile)."""
    dummy = jax.ShapeDtypeStruct((1, size, size, 1), np.float32)
    shapes = jax.eval_shape(model.init, jax.random.key(0), dummy)
    rng = np.random.default_rng(seed)

    def leaf(path, spec):
        name = path[-1].key
        if name == "scale":
            return np.ones(spec.shape, np.float32)
        if name == "bias":
            return np.zeros(spec.shape, np.float32)
        fan_in = int(np.prod(spec.shape[:-1]))
        std = np.sqrt(2.0 / fan_in) * (head_scale if path[-2].key == "head" else 1.0)
        return (rng.standard_normal(spec.shape) * std).astype(np.float32)

    return jax.tree_util.tree_map_with_path(leaf, shapes)


def use_reference_layer_forms(monkeypatch) -> None:
    """Make every CPU-only layer form (colorjax.models.cpu) trace as its layer's reference."""
    from colorjax.models import conv4x4, layers
    from colorjax.models.cpu import conv as cpu_conv

    def without_mesh(reference):
        # The CPU forms take the layer's mesh; the references do not need it.
        return lambda x, kernel, mesh=None: reference(x, kernel)

    monkeypatch.setattr(cpu_conv, "group_norm", layers._group_norm_grouped)
    monkeypatch.setattr(cpu_conv, "conv_same", without_mesh(layers._conv_same))
    monkeypatch.setattr(cpu_conv, "upsample_conv", layers._upsample_conv)
    for layer, reference in (
        (conv4x4.UpConv, conv4x4._upconv_lax),
        (conv4x4.DownConv, conv4x4._downconv_lax),
        (conv4x4.PatchConv, conv4x4._patchconv_lax),
    ):
        monkeypatch.setattr(layer, "cpu_form", staticmethod(without_mesh(reference)))
