"""`colorjax train --config experiments/NAME.py|PRESET --workdir DIR [--set key=value ...]`."""

from __future__ import annotations

import argparse
import logging
import shlex

from colorjax.config import list_presets, load_config


def add_override_argument(parser: argparse.ArgumentParser) -> None:
    """Add the repeatable `--set KEY=VALUE` option that load_config's overrides come from."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set train.steps=200 (repeatable)",
    )


def _cpu_devices(text: str) -> int | str:
    """--cpu-devices as given: an int where it is one ('auto' and bad values go on to
    use_cpu_devices, which names the fix)."""
    return int(text) if text.lstrip("-").isdigit() else text


def add_host_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `--cpu-devices N|auto` and `--malloc-reuse/--no-malloc-reuse` (CPU speed settings)."""
    parser.add_argument(
        "--cpu-devices",
        type=_cpu_devices,
        default=None,
        metavar="N|auto",
        help="CPU only: split the CPU into N JAX devices (auto: one per core this process may "
        "use) and shard each batch over them, one thread each; the batch size must be a "
        "multiple of N. Faster than XLA's own threading on multi-core CPUs (README, Benchmarks)",
    )
    parser.add_argument(
        "--malloc-reuse",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep freed host memory in malloc's heap for reuse instead of unmapping it (glibc; "
        "CPU train steps 15-20%% faster, the process keeps its peak heap); default on",
    )


def apply_host_arguments(args: argparse.Namespace) -> bool:
    """Apply --cpu-devices and --malloc-reuse before any JAX backend starts; True if malloc
    reuse is on."""
    from colorjax.hostmem import reuse_freed_memory
    from colorjax.parallel import use_cpu_devices

    if args.cpu_devices is not None:
        use_cpu_devices(args.cpu_devices)
    return reuse_freed_memory() if args.malloc_reuse else False


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the train command's arguments."""
    parser.add_argument(
        "--config",
        required=True,
        help="experiment file (e.g. experiments/NAME.py) or the name of a preset shipped in "
        f"the package: {', '.join(list_presets())}",
    )
    parser.add_argument(
        "--workdir", required=True, help="directory for config, metrics, checkpoints"
    )
    add_override_argument(parser)
    parser.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="continue from the work dir's latest checkpoint (default); --no-resume refuses a "
        "work dir that already has checkpoints",
    )
    parser.add_argument(
        "--allow-config-change",
        action="store_true",
        help="resume even though the config changes the updates (batch size, learning rate, "
        "data, ...): the run then no longer matches an uninterrupted one",
    )
    parser.add_argument("--coordinator", default=None, help="multi-host: coordinator HOST:PORT")
    parser.add_argument("--num-processes", type=int, default=None, help="multi-host: process count")
    parser.add_argument(
        "--process-id", type=int, default=None, help="multi-host: this process's id"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_host_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Parse the config, join the cluster if asked, and train."""
    # Config errors should surface before the (slow) distributed start-up.
    config = load_config(args.config, args.overrides)
    if args.no_progress:
        config.train.progress = False

    from colorjax.parallel import is_main_process, maybe_initialize_distributed

    apply_host_arguments(args)
    maybe_initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    if not is_main_process():
        logging.getLogger().setLevel(logging.WARNING)

    from colorjax.train.loop import train_and_evaluate

    argv = getattr(args, "argv", None)  # set by colorjax.cli.main
    command = shlex.join(["colorjax", *argv]) if argv else None
    result = train_and_evaluate(
        config,
        args.workdir,
        resume=args.resume,
        command=command,
        allow_config_change=args.allow_config_change,
    )
    if is_main_process():
        if not result.last_metrics:
            print(
                f"{args.workdir} is already trained to step {result.step} (train.steps); nothing "
                "to do. Raise it with --set train.steps=N to train further"
            )
            return 0
        summary = ", ".join(f"{k}={v:.4g}" for k, v in sorted(result.last_metrics.items()))
        print(f"trained {config.model.name} to step {result.step} in {args.workdir}: {summary}")
        if result.eval_metrics:
            ev = ", ".join(f"{k}={v:.4g}" for k, v in sorted(result.eval_metrics.items()))
            print(f"eval: {ev}")
    return 0
