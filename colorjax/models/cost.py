"""Model size and cost: parameter counts, XLA cost/memory analysis readers, analytic FLOPs.

The one home of these numbers: the `colorjax models` table and `colorjax bench` both read
them from here, so they cannot disagree.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- sizes


def count_params(tree: Any) -> int:
    """Total number of scalars in a pytree of arrays or ShapeDtypeStructs (e.g. variables)."""
    return int(sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(tree)))


def abstract_variables(model: nn.Module, resolution: int = 256) -> Any:
    """Shapes of `model.init` at `resolution` without allocating or computing anything."""
    x = jax.ShapeDtypeStruct((1, resolution, resolution, 1), jnp.float32)
    return jax.eval_shape(model.init, jax.random.key(0), x)


def param_breakdown(model: nn.Module, resolution: int | None = None) -> dict[str, int]:
    """{'total': n} plus {'generator', 'discriminator'} for GANs; counted from abstract init."""
    size = resolution or max(model.stride, 64)
    params = abstract_variables(model, size)["params"]
    counts = {"total": count_params(params)}
    if "generator" in params and "discriminator" in params:
        counts["generator"] = count_params(params["generator"])
        counts["discriminator"] = count_params(params["discriminator"])
    return counts


# ----------------------------------------------------------------------------- XLA's own analysis


def cost_flops(cost: Any) -> float | None:
    """'flops' of a `compiled.cost_analysis()` result, or None when it reports none.

    Newer JAX returns one dict; older JAX a list with one dict per HLO module (distinct
    computations, so their FLOPs add up). Empty entries, missing keys and non-positive or
    non-finite counts (backends that lower convs to library calls) mean "unknown".
    """
    entries = cost if isinstance(cost, (list, tuple)) else [cost]
    values = [float(c["flops"]) for c in entries if c and "flops" in c]
    total = sum(values)
    if not values or not math.isfinite(total) or total <= 0:
        return None
    return total


def compiled_flops(compiled: Any) -> float | None:
    """FLOPs XLA counts for a compiled executable (see `cost_flops`); None if unavailable."""
    try:
        cost = compiled.cost_analysis()
    except Exception as err:  # noqa: BLE001 - backends may not implement it at all
        logger.debug("cost_analysis unavailable: %s", err)
        return None
    return cost_flops(cost)


def compiled_memory_bytes(compiled: Any) -> int | None:
    """Static device memory an executable needs (arguments + outputs + temporaries - aliases)."""
    try:
        mem = compiled.memory_analysis()
    except Exception as err:  # noqa: BLE001 - optional backend feature
        logger.debug("memory_analysis unavailable: %s", err)
        return None
    if mem is None:
        return None
    total = (
        mem.argument_size_in_bytes
        + mem.output_size_in_bytes
        + mem.temp_size_in_bytes
        - mem.alias_size_in_bytes
    )
    return int(total) if total > 0 else None


def peak_memory_bytes(devices: Sequence[Any]) -> tuple[int | None, str | None]:
    """Largest `peak_bytes_in_use` over devices, or (None, reason) when the backend has none."""
    peaks = []
    for dev in devices:
        try:
            stats = dev.memory_stats()
        except Exception:  # noqa: BLE001 - not implemented on some backends
            stats = None
        if stats and "peak_bytes_in_use" in stats:
            peaks.append(int(stats["peak_bytes_in_use"]))
    if not peaks:
        return None, f"{devices[0].platform} backend has no memory_stats()"
    return max(peaks), None


def forward_flops(model: nn.Module, resolution: int = 256, batch: int = 1) -> float:
    """Conv + matmul FLOPs of one eval forward pass at resolution^2 (GANs: the generator only).

    Counted from the jaxpr (`analytic_flops`), not by XLA: the model's own arithmetic, the same
    on every backend. XLA's count on CPU follows the CPU-only layer forms (a per-sample scan
    is counted once, phase-split convs skip zero taps), so it would change with the backend.
    """
    x = jax.ShapeDtypeStruct((batch, resolution, resolution, 1), jnp.float32)
    variables = abstract_variables(model, resolution)

    def forward(v: Any, l_norm: jax.Array) -> jax.Array:
        return model.apply(v, l_norm, train=False)

    return float(analytic_flops(forward, variables, x))


# ----------------------------------------------------------------------------- analytic count


def _valid_pairs(
    in_size: int,
    out_size: int,
    kernel: int,
    stride: int,
    pad_lo: int,
    lhs_dil: int,
    rhs_dil: int,
) -> int:
    """Number of (output, kernel tap) pairs along one spatial dim that hit a real input pixel."""
    dilated = (in_size - 1) * lhs_dil + 1 if in_size > 0 else 0
    count = 0
    for j in range(kernel):
        # Input coordinate in the dilated, padded frame for every output position at once.
        pos = np.arange(out_size) * stride + j * rhs_dil - pad_lo
        ok = (pos >= 0) & (pos < dilated) & (pos % lhs_dil == 0)
        count += int(ok.sum())
    return count


def conv_flops(eqn: Any) -> int:
    """FLOPs (2 per multiply-add) of one conv_general_dilated, skipping padding/dilation holes."""
    params = eqn.params
    lhs_shape = eqn.invars[0].aval.shape
    rhs_shape = eqn.invars[1].aval.shape
    out_shape = eqn.outvars[0].aval.shape
    dn = params["dimension_numbers"]
    lhs_spec, rhs_spec, out_spec = dn.lhs_spec, dn.rhs_spec, dn.out_spec
    out_batch = out_shape[out_spec[0]]
    out_feat = rhs_shape[rhs_spec[0]]
    in_feat_per_group = rhs_shape[rhs_spec[1]]
    pairs = 1
    for d in range(len(lhs_spec) - 2):
        pairs *= _valid_pairs(
            in_size=lhs_shape[lhs_spec[2 + d]],
            out_size=out_shape[out_spec[2 + d]],
            kernel=rhs_shape[rhs_spec[2 + d]],
            stride=params["window_strides"][d],
            pad_lo=params["padding"][d][0],
            lhs_dil=params["lhs_dilation"][d],
            rhs_dil=params["rhs_dilation"][d],
        )
    return 2 * out_batch * out_feat * in_feat_per_group * pairs


def dot_flops(eqn: Any) -> int:
    """FLOPs of one dot_general: 2 x output elements x contracted size."""
    (lhs_contract, _), _ = eqn.params["dimension_numbers"]
    lhs_shape = eqn.invars[0].aval.shape
    contract = math.prod(lhs_shape[d] for d in lhs_contract)
    return 2 * math.prod(eqn.outvars[0].aval.shape) * contract


def _sub_jaxprs(value: Any) -> Iterable[Any]:
    """Jaxprs nested in an equation parameter (pjit, custom_vjp, remat, cond branches...)."""
    if hasattr(value, "eqns"):
        yield value
    elif hasattr(value, "jaxpr") and hasattr(value.jaxpr, "eqns"):
        yield value.jaxpr
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _sub_jaxprs(item)


def jaxpr_flops(jaxpr: Any) -> int:
    """Analytic conv + matmul FLOPs of a (closed) jaxpr, recursing into sub-jaxprs."""
    jaxpr = jaxpr.jaxpr if hasattr(jaxpr, "jaxpr") and hasattr(jaxpr.jaxpr, "eqns") else jaxpr
    total = 0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "conv_general_dilated":
            total += conv_flops(eqn)
        elif name == "dot_general":
            total += dot_flops(eqn)
        # A scan body runs `length` times; cond counts its most expensive branch; while loops
        # have unknown trip counts and are counted once (none in our models).
        mult = int(eqn.params.get("length", 1)) if name == "scan" else 1
        if name == "cond":
            branch = [jaxpr_flops(b) for b in eqn.params["branches"]]
            total += max(branch, default=0)
            continue
        for value in eqn.params.values():
            for sub in _sub_jaxprs(value):
                total += mult * jaxpr_flops(sub)
    return total


def analytic_flops(fn: Callable[..., Any], *args: Any) -> int:
    """Trace `fn(*args)` and count its conv/matmul FLOPs (independent of XLA's cost analysis)."""
    return jaxpr_flops(jax.make_jaxpr(fn)(*args))
