"""Command-line entry point: `colorjax <command>`, one module per command (see COMMANDS)."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from pathlib import Path

from colorjax import __version__
from colorjax.errors import ColorjaxError, TrainingStopped

# One module per command, colorjax/cli/<command>.py, each defining
# `configure_parser(parser)` and `run(args) -> int`; library modules hold no argparse.
COMMANDS: dict[str, str] = {
    "train": "train a model from an experiment config",
    "eval": "evaluate weights or a run against the grayscale baseline",
    "colorize": "colorize image files, folders or globs",
    "bench": "benchmark throughput, latency, compile time, memory and MFU",
    "weights": "list, download, verify or export pretrained weights",
    "demo": "colorize a sample with the bundled weights, train the CPU demo",
    "export": "write a model and its weights as one jax.export file for serving",
    "serve": "a browser demo on 127.0.0.1: upload, colorize, compare, hints",
    "models": "list the registered models",
    "data": "check a data source: count unreadable and near-gray images",
    "prior": "compute the empirical ab-bin prior of a folder of photos",
}


def build_parser(command: str | None = "*") -> argparse.ArgumentParser:
    """Build the top-level parser with one subparser per command.

    Only `command`'s module is imported and configured ('*': every command's, None: none):
    the modules pull in JAX, so `colorjax --version` and `colorjax -h` must not import them.
    """
    parser = argparse.ArgumentParser(
        prog="colorjax", description="Automatic image colorization in JAX."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("--version", action="version", version=f"colorjax {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if command in ("*", name):
            module = importlib.import_module(f"colorjax.cli.{name}")
            module.configure_parser(sub_parser)
            sub_parser.set_defaults(_run=module.run)
    return parser


# Commands whose compiled programs are worth keeping between runs (bench measures compile
# time, so it always compiles afresh).
COMPILE_CACHE_COMMANDS = ("colorize", "eval", "train", "demo")
COMPILE_CACHE_MIN_SECONDS = 0.0


def enable_compile_cache(env: dict[str, str] | None = None) -> Path | None:
    """Keep compiled programs in JAX's persistent cache under COLORJAX_HOME (None: turned off).

    A second `colorjax colorize photo.jpg` then loads its kernels instead of compiling them.
    COLORJAX_COMPILE_CACHE=0 turns it off.
    """
    environ = os.environ if env is None else env
    if environ.get("COLORJAX_COMPILE_CACHE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    import jax

    from colorjax.weights.download import cache_dir

    folder = cache_dir(environ) / "jax-compile-cache"
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", COMPILE_CACHE_MIN_SECONDS)
    return folder


def _command_of(argv: list[str]) -> str | None:
    """The command an argv names: its first word that is not an option (None: none given)."""
    return next((a for a in argv if not a.startswith("-")), None)


# Options whose values may start with '-' (a hint at x = -1 must reach the hint check, which
# names the fix, not argparse, which would take "-1,-1,#ff0000" for an unknown option).
_DASH_VALUE_OPTIONS = ("--hint",)


def _attach_dash_values(argv: list[str]) -> list[str]:
    """['--hint', '-1,2,#fff000'] -> ['--hint=-1,2,#fff000'] for the options above."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in _DASH_VALUE_OPTIONS and i + 1 < len(argv) and argv[i + 1].startswith("-"):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the command, and turn user errors into one clear message."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command_of(argv)
    args = build_parser(command if command in COMMANDS else None).parse_args(
        _attach_dash_values(argv)
    )
    args.argv = argv  # recorded by `train` in run.json
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        # absl (pulled in by orbax/grain) installs a root handler first; replace it.
        force=True,
    )
    if not args.verbose:
        # Orbax logs every checkpoint event at INFO through absl; keep those for --verbose.
        logging.getLogger("absl").setLevel(logging.WARNING)
        # JAX reports at INFO each backend it probes and does not find ("Unable to initialize
        # backend 'tpu'") on every run of a CPU or GPU machine; the backend used is not affected.
        logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
    try:
        if args.command in COMPILE_CACHE_COMMANDS:
            enable_compile_cache()
        return int(args._run(args) or 0)
    except TrainingStopped as err:
        # Not a failure of the user's: the run saved where it stopped and resumes as it was.
        print(f"colorjax {args.command}: stopped: {err}", file=sys.stderr)
        return 128 + err.signum
    except ColorjaxError as err:
        print(f"colorjax {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        # An environment failure no check foresaw (disk full, permissions, a vanished file):
        # still one line naming the file and the cause; -v adds the traceback.
        logging.getLogger(__name__).debug("colorjax %s failed", args.command, exc_info=True)
        print(
            f"colorjax {args.command}: error: {err}; fix that and retry (-v shows the traceback)",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(f"colorjax {args.command}: interrupted", file=sys.stderr)
        return 130
