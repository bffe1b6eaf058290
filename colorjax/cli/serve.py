"""`colorjax serve`: the browser demo (Starlette app on uvicorn), bound to 127.0.0.1 by default."""

from __future__ import annotations

import argparse
import logging

from colorjax.errors import MissingDependencyError

logger = logging.getLogger(__name__)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the `serve` subcommand's arguments."""
    parser.add_argument(
        "--weights",
        nargs="+",
        default=None,
        metavar="NAME",
        help="weights to offer (names, files or run folders; default: every one available "
        "offline, the default first)",
    )
    parser.add_argument(
        "--exported",
        nargs="+",
        default=[],
        metavar="FILE",
        help="models exported with `colorjax export` to offer as well",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine)"
    )
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument(
        "--max-upload-mb", type=float, default=20.0, help="largest upload accepted (MB)"
    )
    parser.add_argument("--max-megapixels", type=float, default=40.0, help="largest photo accepted")
    parser.add_argument(
        "--max-waiting", type=int, default=8, help="requests that may wait; more get 503"
    )


def run(args: argparse.Namespace) -> int:
    """Start the server and block until Ctrl-C."""
    try:
        import uvicorn
    except ImportError as err:
        raise MissingDependencyError(
            "colorjax serve needs Starlette and uvicorn: pip install 'colorjax[serve]'"
        ) from err
    from colorjax.serve.app import Limits, make_app
    from colorjax.serve.pool import ModelPool, offers_from, offline_names

    weights = args.weights
    if weights is None:
        weights = [] if args.exported else offline_names()
    pool = ModelPool(offers_from(weights, args.exported))
    limits = Limits(
        max_bytes=int(args.max_upload_mb * 1e6),
        max_pixels=int(args.max_megapixels * 1e6),
        max_waiting=args.max_waiting,
    )
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("serving on %s: reachable from other machines", args.host)
    print(f"colorjax serve: http://{args.host}:{args.port}/ ({', '.join(pool.names)})")
    uvicorn.run(make_app(pool, limits), host=args.host, port=args.port, log_level="warning")
    return 0
