"""Colour ablation: evaluate weights or a training run over temperatures and working sizes.

Each row is `colorjax eval`'s protocol (shorter side to --resolution, centre crop, gray
baseline on the same photos) with one (temperature, working size) choice, appended to a
JSON-lines file with the command, device and versions; `--markdown` prints the table.

    python benchmarks/colour_ablation.py --weights colornet-small-cls4.tinyimagenet \
        --data folder:../shared/data/bsds500/val --temperatures 0.2 0.3 0.38 0.5 \
        --working-sizes 64 96 128 --label "cls4 T sweep" --out benchmarks/results/colour/rows.jsonl
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import jax

from colorjax import data, evaluate, inference, load_pretrained
from colorjax.table import render_table
from colorjax.weights.calibrate import shift_head_bias

METRICS = (
    "colorfulness_pred",
    "colorfulness_true",
    "psnr",
    "ssim",
    "auc",
    "hue_balanced",
    "hue_green",
    "hue_cyan",
    "hue_blue",
)


def _rows(args: argparse.Namespace) -> list[dict]:
    """Evaluate every (beta, temperature, working size) choice; one summary row each."""
    model, base_variables, meta = load_pretrained(args.workdir or args.weights, step=args.step)
    source = data.make_source(args.data, split="all")
    limit = min(len(source), args.limit or len(source))
    photos = [(source.describe(i), source[i]) for i in range(limit)]
    rows = []
    grid = [
        (beta, ws, temp)
        for beta in args.betas
        for ws in args.working_sizes or [int(meta["working_size"])]
        for temp in args.temperatures
    ]
    for beta, ws, temp in grid:
        variables = shift_head_bias(base_variables, beta, args.rebalance_lambda)

        def predict(
            rgb: jax.Array, ws: int = ws, temp: float = temp, variables: dict = variables
        ) -> jax.Array:
            return inference.predict_rgb(model, variables, rgb, ws, temperature=temp)

        start = time.perf_counter()
        result = evaluate.run_evaluation(
            model, variables, meta, photos, resolution=args.resolution, predict_fn=predict
        )
        s = result.summary
        row = {
            "label": args.label,
            "weights": args.weights or f"{args.workdir}@{args.step or 'latest'}",
            "data": args.data,
            "resolution": args.resolution,
            "working_size": ws,
            "temperature": temp,
            "beta": beta,
            "photos": s["counts"]["evaluated"],
            **{f"model_{k}": s["model"][k] for k in METRICS if k in s["model"]},
            **{f"baseline_{k}": s["baseline"][k] for k in ("psnr", "ssim", "auc")},
            "seconds": round(time.perf_counter() - start, 1),
            "command": " ".join(shlex.quote(a) for a in sys.argv),
            "device": jax.devices()[0].device_kind,
            "platform": platform.platform(),
            "jax": jax.__version__,
        }
        rows.append(row)
        print(markdown_row(row), flush=True)
    return rows


HEADER = (
    "run", "beta", "T", "working size", "colourfulness (x truth)", "PSNR (vs gray)",
    "SSIM (vs gray)", "AuC (vs gray)", "hue balanced (green/cyan/blue)",
)  # fmt: skip
RIGHT = tuple(range(1, len(HEADER)))


def _cells(r: dict) -> list[str]:
    """One table row: model value and, in brackets, its margin over the baseline."""
    ratio = r["model_colorfulness_pred"] / max(r["model_colorfulness_true"], 1e-9)
    return [
        r["label"],
        f"{r.get('beta', 0.0):g}",
        f"{r['temperature']:g}",
        str(r["working_size"]),
        f"{r['model_colorfulness_pred']:.1f} ({ratio:.2f}x)",
        f"{r['model_psnr']:.2f} ({r['model_psnr'] - r['baseline_psnr']:+.2f})",
        f"{r['model_ssim']:.4f} ({r['model_ssim'] - r['baseline_ssim']:+.4f})",
        f"{r['model_auc']:.4f} ({r['model_auc'] - r['baseline_auc']:+.4f})",
        (
            f"{r['model_hue_balanced']:.3f} ({r['model_hue_green']:.2f}/"
            f"{r['model_hue_cyan']:.2f}/{r['model_hue_blue']:.2f})"
            if "model_hue_balanced" in r
            else "-"
        ),
    ]


def markdown_row(r: dict) -> str:
    """One Markdown table row (printed as each run finishes)."""
    return render_table(HEADER, [_cells(r)], right=RIGHT).splitlines()[-1]


def render(rows_path: Path) -> str:
    """The Markdown ablation table of every row in a JSON-lines file, with its command."""
    rows = [json.loads(line) for line in rows_path.read_text().splitlines() if line.strip()]
    lines = [render_table(HEADER, [_cells(r) for r in rows], right=RIGHT).rstrip("\n")]
    commands = sorted({r["command"] for r in rows})
    lines += ["", "Commands (each row's `label` names its run):", ""]
    lines += [f"    python {c}" for c in commands]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, evaluate, append rows to --out (or --render a rows file)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    if argv is None and len(sys.argv) == 3 and sys.argv[1] == "--render":
        print(render(Path(sys.argv[2])), end="")
        return 0
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--weights", help="weights name or .safetensors path")
    which.add_argument("--workdir", help="training run folder")
    parser.add_argument("--step", type=int, default=None)
    parser.add_argument("--data", required=True)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.38])
    parser.add_argument("--working-sizes", type=int, nargs="+", default=None)
    parser.add_argument(
        "--betas", type=float, nargs="+", default=[0.0], help="rebalancing undone (0..1)"
    )
    parser.add_argument("--rebalance-lambda", type=float, default=0.5)
    parser.add_argument("--label", default="run")
    parser.add_argument("--out", type=Path, default=None, help="JSON-lines file to append to")
    args = parser.parse_args(argv)
    print(render_table(HEADER, [], right=RIGHT), end="")
    rows = _rows(args)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("a") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
