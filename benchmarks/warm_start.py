"""Warm-start file for a second training stage: calibration taken out, dead layers re-drawn.

    python benchmarks/warm_start.py --weights colornet-small-cls4.tinyimagenet --beta 0.2 \
        --reinit global_dense_0 global_dense_1 global_dense_2 \
        --out runs/init/cls4-2000-global-reinit.safetensors

Bundled classification weights carry `beta * log w(q)` subtracted from the head bias
(`bundle_weights.py`); a run that continues from them must start from the trained head, so
`--beta` adds it back. `--reinit` re-draws the named top-level modules from the model's own
initialiser: a ReLU layer whose units all went negative (a dead branch, such as the first
bundled ColorNet's global dense layers) gets no gradient and never recovers in place.
The output is a float32 colorjax weights file for `--set model.init_weights=FILE`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from colour_ablation import undo_rebalancing

from colorjax import color, data, weights


def dead_units(model, variables: dict, size: int) -> dict[str, float]:
    """Share of ReLU-dense units never positive on the embedded photos (real L), per dense layer.

    Real photos, not noise: a unit can be alive on random inputs and dead on every photo.
    """
    photos = data.make_source("embedded", split="all")
    rgb = np.stack(
        [data.preprocess_eval(data.decode_image(photos[i]), size) for i in range(len(photos))]
    )
    l_norm, _ = color.rgb_uint8_to_lab_inputs(jnp.asarray(rgb))
    _, state = model.apply(variables, l_norm, capture_intermediates=True)
    out = {}
    for name, value in state["intermediates"].items():
        if "dense" in name and "__call__" in value:
            pre = np.asarray(value["__call__"][0])
            out[name] = float(np.mean(np.all(pre <= 0, axis=0)))
    return out


def main(argv: list[str] | None = None) -> int:
    """Load, undo the head calibration, re-draw the named modules, save as float32."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", required=True, help="weights name or .safetensors path")
    p.add_argument("--beta", type=float, default=0.0, help="the beta the file was bundled with")
    p.add_argument("--rebalance-lambda", type=float, default=0.5)
    p.add_argument("--reinit", nargs="*", default=[], help="top-level module names to re-draw")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)

    model, variables, meta = weights.load_pretrained(args.weights)
    size = int(meta["working_size"])
    variables = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float32), variables)
    print("dead dense units before:", dead_units(model, variables, size))
    variables = undo_rebalancing(variables, -args.beta, args.rebalance_lambda)
    fresh = model.init(jax.random.PRNGKey(args.seed), jnp.zeros((1, size, size, 1)))
    params = dict(variables["params"])
    for name in args.reinit:
        if name not in params:
            raise SystemExit(f"--reinit {name}: no such module; modules: {sorted(params)}")
        params[name] = jax.tree_util.tree_map(np.asarray, fresh["params"][name])
    variables = {**variables, "params": params}
    print("dead dense units after:", dead_units(model, variables, size))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    weights.save_weights(
        args.out, meta["model"], meta.get("overrides") or {}, variables, {"working_size": size}
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
