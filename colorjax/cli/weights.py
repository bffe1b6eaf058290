"""`colorjax weights list|download|verify|export|import`: pretrained weights on the command line."""

from __future__ import annotations

import argparse
import json
import shlex
from collections.abc import Iterator
from typing import Any

from colorjax.errors import ConfigError
from colorjax.fileio import atomic_write_bytes


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add `colorjax weights list|download|verify|export|import` arguments."""
    from colorjax.weights import DEFAULT_RETRIES, STORAGE_DTYPES
    from colorjax.weights.pth_convert import supported_models

    parser.add_argument("--manifest", help="manifest.json to use (default: the packaged one)")
    sub = parser.add_subparsers(dest="weights_command", required=True, metavar="ACTION")
    sub.add_parser("list", help="list the weights in the manifest")
    download_parser = sub.add_parser("download", help="download weights into the cache")
    download_parser.add_argument("names", nargs="+", metavar="NAME")
    download_parser.add_argument("--retries", type=int, default=DEFAULT_RETRIES)
    verify_parser = sub.add_parser("verify", help="re-hash bundled and cached weights")
    verify_parser.add_argument("name", nargs="?", metavar="NAME")
    export_parser = sub.add_parser("export", help="turn a training checkpoint into weights")
    export_parser.add_argument("--workdir", required=True, help="training run folder")
    export_parser.add_argument(
        "--name", default=None, help="name of the weights (default: the work dir's name)"
    )
    export_parser.add_argument("--out", default=".", help="output folder (default: .)")
    export_parser.add_argument("--step", type=int, default=None, help="checkpoint step")
    export_parser.add_argument("--dtype", choices=STORAGE_DTYPES, default="float32")
    export_parser.add_argument("--url", action="append", help="download URL(s) for the entry")
    export_parser.add_argument(
        "--include-discriminator", action="store_true", help="keep GAN discriminator params"
    )
    export_parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing NAME.safetensors/.json"
    )
    export_parser.add_argument(
        "--no-ema",
        dest="ema",
        action="store_false",
        help="export the last trained parameters, not their (debiased) moving average",
    )
    import_parser = sub.add_parser("import", help="convert a PyTorch .pth file into weights")
    import_parser.add_argument("file", metavar="FILE", help="the .pth state dict")
    import_parser.add_argument(
        "--name", help="manifest name: verify the sha256, convert into the cache"
    )
    import_parser.add_argument(
        "--model", choices=supported_models(), help="architecture (with --out)"
    )
    import_parser.add_argument("--out", help="output .safetensors path (with --model)")


def _listed_size(cfg: Any) -> str:
    """The file's size; for an unpinned entry, the size the hub shows (decimal MB)."""
    if cfg.size is None and cfg.hub_size_mb is not None:
        return f"~{cfg.hub_size_mb:g} MB"
    return _human_size(cfg.size)


def _human_size(size: Any) -> str:
    """Format a byte count for the listing."""
    if not isinstance(size, int):
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return "?"


def _iter_list_rows(manifest: Any) -> Iterator[str]:
    """Yield the lines of `colorjax weights list`."""
    from colorjax.weights import list_pretrained
    from colorjax.weights.download import local_status
    from colorjax.weights.manifest import default_entry, entry_family

    entries = list_pretrained(manifest)
    if not entries:
        yield "no weights in the manifest"
        return
    # Columns as wide as their longest value (names are 30+ characters).
    wide = max(len(e.name) + 2 for e in entries)
    model_wide = max(len("MODEL"), *(len(e.model) for e in entries))
    yield f"{'NAME':{wide}} {'MODEL':{model_wide}} {'SIZE':>10}  STATUS     DESCRIPTION"
    # '*' marks the one entry used when no --weights is given; '+' the default of a family
    # that offers a choice (a family with one entry has nothing to choose between).
    overall = default_entry(None, manifest).name
    sizes: dict[str, int] = {}
    for cfg in entries:
        sizes[entry_family(cfg)] = sizes.get(entry_family(cfg), 0) + 1
    marks = set()
    for cfg in entries:
        status = local_status(cfg)
        mark = (
            " *"
            if cfg.name == overall
            else " +"
            if cfg.default and sizes[entry_family(cfg)] > 1
            else ""
        )
        marks.add(mark.strip())
        yield (
            f"{cfg.name + mark:{wide}} {cfg.model:{model_wide}} {_listed_size(cfg):>10}  "
            f"{status:10} {cfg.description}"
        )
    if "*" in marks:
        yield "* used when no --weights is given (colorjax colorize, eval, colorjax.colorize)"
    if "+" in marks:
        yield "+ the default of its family (colorjax.load_pretrained(family=...))"


def _verify(args: argparse.Namespace) -> int:
    """`colorjax weights verify [NAME]`: 1 if any file is corrupted."""
    from colorjax.weights import verify_weights

    bad = 0
    rows = verify_weights(args.name, args.manifest)
    if not rows:
        print("no weights in the manifest")
    for row in rows:
        print(f"{row['status']:10} {row['name']:28} {row['path']}")
        if row["status"] == "corrupted":
            bad += 1
            print(f"           expected {row['expected']}, got {row['actual']}")
    if bad:
        print(f"{bad} corrupted file(s); run `colorjax weights download NAME` to replace them")
    return 1 if bad else 0


def _import(args: argparse.Namespace) -> int:
    """`colorjax weights import`; prints the converted file's path."""
    from colorjax.weights.pth_convert import convert_file, import_pth, supported_models

    if args.name and not (args.model or args.out):
        print(import_pth(args.file, args.name, args.manifest))
        return 0
    if args.model and args.out and not args.name:
        print(convert_file(args.file, args.model, args.out))
        return 0
    raise ConfigError(
        "pass either --name NAME (a manifest entry; the file's sha256 is checked) or --model "
        f"MODEL --out FILE.safetensors (any state dict of {', '.join(supported_models())})"
    )


def _export(args: argparse.Namespace) -> int:
    """`colorjax weights export`: weights file, its entry, and the entry added to a manifest."""
    from colorjax.train.export import export_checkpoint
    from colorjax.weights import add_to_manifest
    from colorjax.weights.manifest import USER_MANIFEST

    path, entry = export_checkpoint(
        args.workdir,
        args.name,
        args.out,
        step=args.step,
        include_discriminator=args.include_discriminator,
        dtype=args.dtype,
        urls=args.url,
        overwrite=args.overwrite,
        ema=args.ema,
    )
    argv = getattr(args, "argv", None)  # set by colorjax.cli.main
    if argv:
        commands = [entry["training_command"], shlex.join(["colorjax", *argv])]
        entry["training_command"] = " && ".join(c for c in commands if c)
    entry_path = path.with_suffix(".json")
    atomic_write_bytes(entry_path, (json.dumps(entry, indent=2) + "\n").encode())
    manifest_path = add_to_manifest(path.parent / USER_MANIFEST, entry)
    print(f"wrote {path}\nwrote manifest entry {entry_path}, added to {manifest_path}")
    print(
        f"use it by name: colorjax colorize PHOTOS --manifest {manifest_path} "
        f"--weights {entry['name']}"
    )
    return 0


def run(args: argparse.Namespace) -> int:
    """Run a `colorjax weights` action; returns the exit code."""
    from colorjax.weights import resolve_weights

    if args.weights_command == "list":
        for line in _iter_list_rows(args.manifest):
            print(line)
        return 0
    if args.weights_command == "download":
        for name in args.names:
            print(resolve_weights(name, args.manifest, retries=args.retries))
        return 0
    actions = {"verify": _verify, "import": _import, "export": _export}
    if args.weights_command in actions:
        return actions[args.weights_command](args)
    raise ConfigError(f"unknown weights action {args.weights_command!r}")
