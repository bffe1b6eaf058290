"""Turn a training run into bundled weights: calibrated head, tuned knobs, manifest entry.

    python tools/bundle_weights.py --workdir runs/cls4 --name NAME \
        --beta 0.2 --temperature 0.38 --working-size 64 --default \
        --description "..." --command "..." --hardware "..." --time "..."

Steps: the run's inference parameters (EMA when the run kept one; GANs: the generator), the
rebalancing prior partly undone (`--beta` > 0) or put back (`--beta` < 0, for a run trained
without rebalancing) in the head bias (colorjax.weights.calibrate), stored as
float16 with the tuned temperature and working size in the header (colorize's defaults), in
colorjax/weights/, and the manifest entry written (replacing one of the same name; `--default`
makes it its family's default and clears the flag on the others). Writes are atomic.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax

import colorjax
from colorjax import weights
from colorjax.checkpoint import checkpoint_steps
from colorjax.fileio import atomic_write_text
from colorjax.train.run import load_inference_params
from colorjax.weights.calibrate import shift_head_bias
from colorjax.weights.manifest import entry_family

WEIGHTS = Path(__file__).resolve().parents[1] / "colorjax" / "weights"


def share_encoder(variables: dict, source: str, manifest: Path) -> tuple[dict, dict]:
    """Variables without their encoder, and the header entry that takes it from `source`.

    The GAN phase trains with the generator's encoder frozen, so it is the ColorNet-Lite
    encoder it started from; refused (SystemExit) when it is not, within float16 rounding.
    """
    import numpy as np

    entry = weights.get_entry(source, manifest)
    theirs = colorjax.load_pretrained(source, manifest=manifest).variables["params"]["encoder"]
    params = dict(variables["params"])
    keys = ["generator", "encoder"] if "generator" in params else ["encoder"]
    holder = dict(params[keys[0]]) if len(keys) == 2 else params
    mine = holder.pop("encoder")
    for (path, a), b in zip(
        jax.tree_util.tree_leaves_with_path(mine), jax.tree_util.tree_leaves(theirs), strict=True
    ):
        if not np.allclose(np.asarray(a), np.asarray(b), rtol=2e-3, atol=1e-4):
            sys.exit(f"the encoder differs from {source}'s at {jax.tree_util.keystr(path)}")
    if len(keys) == 2:
        params[keys[0]] = holder
    shared = {
        "params/" + "/".join(keys): {
            "weights": entry.name,
            "path": "params/encoder",
            "sha256": entry.sha256,
        }
    }
    return {**variables, "params": params}, shared


def main(argv: list[str] | None = None) -> int:
    """Export, calibrate and register one bundled weights file."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--step", type=int, default=None)
    p.add_argument("--name", required=True, help="manifest name, ARCH.TAG")
    p.add_argument("--file", default=None, help="file stem in colorjax/weights/ (default: name)")
    p.add_argument("--aliases", nargs="*", default=[], help="older names that keep working")
    p.add_argument("--beta", type=float, default=0.0)
    p.add_argument(
        "--rebalance-lambda",
        type=float,
        default=None,
        help="lambda of the weights w(q) in beta * log w(q) (default: the run's loss lambda; "
        "set it, e.g. 0.5, for a run trained without rebalancing, whose lambda is 1)",
    )
    p.add_argument("--temperature", type=float, required=True)
    p.add_argument("--working-size", type=int, required=True)
    p.add_argument("--default", action="store_true")
    p.add_argument(
        "--family",
        default=None,
        help="manifest family (default: the registry's); colornet-lite weights serve the "
        "colornet family's users",
    )
    p.add_argument("--licence", default=None, help="licence text (default: Tiny ImageNet's)")
    p.add_argument("--description", required=True)
    p.add_argument("--command", required=True, help="the training command, for the manifest")
    p.add_argument("--hardware", required=True)
    p.add_argument("--time", required=True)
    p.add_argument("--replaces", nargs="*", default=[], help="manifest entries to remove")
    p.add_argument(
        "--weights-dir",
        type=Path,
        default=WEIGHTS,
        help="folder of the weights files and their manifest.json (default: the package's)",
    )
    p.add_argument(
        "--share-encoder-with",
        default=None,
        metavar="NAME",
        help="leave the (frozen) encoder out of the file and take it from these bundled "
        "weights when loading; refused unless the two encoders are equal",
    )
    args = p.parse_args(argv)

    config, variables = load_inference_params(args.workdir, args.step)
    lam = config.loss.rebalance_lambda if args.rebalance_lambda is None else args.rebalance_lambda
    if args.beta and lam >= 1.0:
        p.error("--beta has no effect with lambda 1 (uniform weights); pass --rebalance-lambda")
    params = dict(variables["params"])
    params.pop("discriminator", None)  # users colorize with G; D stays in the checkpoint
    variables = shift_head_bias({**variables, "params": params}, args.beta, lam)
    step = args.step if args.step is not None else checkpoint_steps(args.workdir)[-1]
    training = {
        "data": config.data.source,
        "step": step,
        "config": config.to_dict(),
        "calibration": {"beta": args.beta, "rebalance_lambda": lam},
    }
    path = args.weights_dir / f"{args.file or args.name}.safetensors"
    meta = {
        "working_size": args.working_size,
        "temperature": args.temperature,
        "training": training,
    }
    if args.share_encoder_with:
        variables, meta["shared"] = share_encoder(
            variables, args.share_encoder_with, args.weights_dir / "manifest.json"
        )
    weights.save_weights(
        path, config.model.name, dict(config.model.overrides), variables, meta, dtype="float16"
    )
    # The file must load and fit its model before it is listed.
    manifest_path = args.weights_dir / "manifest.json"
    colorjax.load_pretrained(str(path), manifest=manifest_path)

    manifest = json.loads(manifest_path.read_text())
    family = args.family or entry_family({"model": config.model.name})
    gone = {args.name, *args.replaces}
    kept = [e for e in manifest["weights"] if e["name"] not in gone]
    if args.default:
        for e in kept:
            if e.get("family") == family:
                e["default"] = False
    entry = {
        "name": args.name,
        "aliases": list(args.aliases),
        "family": family,
        "model": config.model.name,
        "overrides": dict(config.model.overrides),
        "working_size": args.working_size,
        "temperature": args.temperature,
        "urls": [f"bundled:{path.name}"],
        "sha256": weights.sha256_file(path),
        "size": path.stat().st_size,
        "dtype": "float16",
        "licence": args.licence
        or "Apache-2.0 (the weights); trained on Tiny ImageNet photos, which are under "
        "the ImageNet terms of access (non-commercial research)",
        "training_data": config.data.source,
        "training_command": args.command,
        "hardware": args.hardware,
        "steps": step,
        "time": args.time,
        "description": args.description,
        "default": bool(args.default),
        "evaluations": [],
    }
    manifest["weights"] = [*kept, entry]
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {path} ({entry['size'] / 1e6:.1f} MB) and its manifest entry")
    return 0


if __name__ == "__main__":
    sys.exit(main())
