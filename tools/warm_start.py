"""Warm-start file for a second training stage: calibration taken out, dead layers re-drawn.

    python tools/warm_start.py --weights colornet-small-cls4.tinyimagenet --beta 0.2 \
        --reinit global_dense_0 global_dense_1 global_dense_2 \
        --out runs/init/cls4-2000-global-reinit.safetensors

Bundled classification weights carry `beta * log w(q)` subtracted from the head bias
(`bundle_weights.py`); a run that continues from them must start from the trained head, so
`--beta` adds it back. `--reinit` re-draws the named top-level modules from the model's own
initialiser: a ReLU layer whose units all went negative (a dead branch, such as the first
bundled ColorNet's global dense layers) gets no gradient and never recovers in place.
`--model` moves the weights to another registry variant of the same family (e.g.
`colornet-small-cls4-film`): every parameter whose path and shape match is copied, the rest
(new modules) keep the target's initialiser, and the script lists them. From a concat ColorNet
to a FiLM one, the fusion conv loses its scene-vector inputs: their contribution, measured on
the photos of `--data` (a constant when the branch is dead), is folded into the conv's bias.
`--standardize-scene` rescales ColorNet's first global dense layer so that its input, the pooled
global features, is standardised over real photos (`--data`): W' = W / sigma, b' = b - (mu /
sigma) W, the same function on standardised inputs. Why: after GroupNorm and ReLU the pooled
features differ between photos by ~4 % of their mean, so a freshly drawn dense layer maps every
photo to nearly the same scene vector, and Adam's fixed-size steps take thousands of steps to
make it sensitive.
The output is a float32 colorjax weights file for `--set model.init_weights=FILE`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

import colorjax
from colorjax import color, data, models, weights
from colorjax.weights.calibrate import shift_head_bias


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


def transplant(source: dict, target: dict) -> dict:
    """`target`'s tree with every leaf whose path and shape `source` shares taken from `source`."""
    src = traverse_util.flatten_dict(source, sep="/")
    out, kept = {}, []
    for path, leaf in traverse_util.flatten_dict(target, sep="/").items():
        if path in src and np.shape(src[path]) == np.shape(leaf):
            out[path] = np.asarray(src[path], np.float32)
        else:
            out[path], _ = np.asarray(leaf, np.float32), kept.append(path)
    unused = sorted(set(src) - set(out))
    print("initialised fresh:", kept or "none", "| not carried over:", unused or "none")
    return traverse_util.unflatten_dict(out, sep="/")


def _photos_l(source: str, size: int) -> jnp.ndarray:
    """Normalised L of up to ~1,000 evenly spaced photos of `source`."""
    photos = data.make_source(source, split="all")
    step = max(1, len(photos) // 1024)
    rgb = [data.decode_image(photos[i]) for i in range(0, len(photos), step)]
    rgb = np.stack([data.preprocess_eval(x, size) for x in rgb])
    return color.rgb_uint8_to_lab_inputs(jnp.asarray(rgb))[0]


def fold_scene_into_fusion(model, variables: dict, target: dict, source: str, size: int) -> dict:
    """Concat ColorNet params with the fusion conv cut to the target's (FiLM) input width.

    The cut kernel rows saw the tiled scene vector; their mean contribution over the photos
    goes into the conv bias, so the FiLM net (its modulation zero) computes what the concat
    net did wherever the scene vector was its mean.
    """
    last = f"global_dense_{len(model.global_dense) - 1}"
    _, state = model.apply(
        variables, _photos_l(source, size), capture_intermediates=lambda mdl, _: mdl.name == last
    )
    scene = np.maximum(np.asarray(state["intermediates"][last]["__call__"][0]), 0)  # ReLU
    kernel = np.asarray(variables["params"]["fusion"]["conv"]["kernel"])
    width = target["fusion"]["conv"]["kernel"].shape[2]
    bias = np.asarray(variables["params"]["fusion"]["conv"]["bias"])
    bias = bias + scene.mean(0) @ kernel[0, 0, width:, :]
    spread = np.abs(scene - scene.mean(0)) @ np.abs(kernel[0, 0, width:, :])
    print(
        f"folded the scene vector ({len(scene)} photos) into the fusion bias; largest per-photo "
        f"deviation it drops: {spread.max():.3g} (bias scale {np.abs(bias).mean():.3g})"
    )
    conv = {"kernel": kernel[:, :, :width, :], "bias": bias}
    return {**variables["params"], "fusion": {**variables["params"]["fusion"], "conv": conv}}


def pooled_scene_features(model, variables: dict, source: str, size: int) -> np.ndarray:
    """ColorNet's pooled global features (the input of global_dense_0), one row per photo."""
    l_norm = _photos_l(source, size)
    last = f"global_conv_{len(model.global_features) - 1}"
    _, state = model.apply(variables, l_norm, capture_intermediates=lambda mdl, _: mdl.name == last)
    return np.asarray(state["intermediates"][last]["__call__"][0]).mean(axis=(1, 2))


def standardize_scene(model, variables: dict, source: str, size: int) -> dict:
    """Fold the standardisation of the pooled global features into global_dense_0."""
    pooled = pooled_scene_features(model, variables, source, size)
    mu, sigma = pooled.mean(0), pooled.std(0) + 1e-3
    dense = variables["params"]["global_dense_0"]
    kernel = np.asarray(dense["kernel"]) / sigma[:, None]
    bias = np.asarray(dense["bias"]) - (mu / sigma) @ np.asarray(dense["kernel"])
    spread = sigma.mean() / abs(mu).mean()
    print(f"standardised {len(pooled)} photos' pooled features: spread/mean {spread:.3f}")
    params = {**variables["params"], "global_dense_0": {"kernel": kernel, "bias": bias}}
    return {**variables, "params": params}


def main(argv: list[str] | None = None) -> int:
    """Load, undo the head calibration, re-draw the named modules, save as float32."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", required=True, help="weights name or .safetensors path")
    p.add_argument("--beta", type=float, default=0.0, help="the beta the file was bundled with")
    p.add_argument("--rebalance-lambda", type=float, default=0.5)
    p.add_argument("--reinit", nargs="*", default=[], help="top-level module names to re-draw")
    p.add_argument("--model", help="registry variant to move the weights to (default: same)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--standardize-scene", action="store_true", help="see the module docstring")
    p.add_argument("--data", default="embedded", help="photos for the scene statistics")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)

    model, variables, meta = colorjax.load_pretrained(args.weights)
    size = int(meta["working_size"])
    variables = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float32), variables)
    print("dead dense units before:", dead_units(model, variables, size))
    variables = shift_head_bias(variables, -args.beta, args.rebalance_lambda)
    loaded = variables
    source_model, model_name = model, meta["model"]
    if args.model:
        model_name, model = args.model, models.build_model(args.model)
    fresh = model.init(jax.random.PRNGKey(args.seed), jnp.zeros((1, size, size, 1)))
    params = dict(variables["params"])
    if args.model:
        target = dict(fresh["params"])
        if "fusion_film" in target and "fusion_film" not in params:
            params = fold_scene_into_fusion(source_model, variables, target, args.data, size)
        params = transplant(params, target)
    for name in args.reinit:
        if name not in params:
            raise SystemExit(f"--reinit {name}: no such module; modules: {sorted(params)}")
        params[name] = jax.tree_util.tree_map(np.asarray, fresh["params"][name])
    variables = {**variables, "params": params}
    if args.standardize_scene:
        variables = standardize_scene(model, variables, args.data, size)
    print("dead dense units after:", dead_units(model, variables, size))
    if args.model:
        # How far the new net starts from the old one, on the same photos.
        l_norm = _photos_l(args.data, size)[:256]
        before = source_model.apply(loaded, l_norm)
        after = model.apply(variables, l_norm)
        change = float(jnp.abs(after - before).max())
        print(f"max |logit change| on {len(l_norm)} photos: {change:.3g}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    weights.save_weights(
        args.out, model_name, meta.get("overrides") or {}, variables, {"working_size": size}
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
