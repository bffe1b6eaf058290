"""The web app: the page, the model list and the colorize endpoint (Starlette).

``POST /api/colorize?model=NAME&hints=X,Y,#RRGGBB;...`` takes the photo's bytes as the body
and answers JSON with the gray input and the colour result as PNG data URLs. Limits on upload
size and pixel count are checked before any decoding work; every error a user can cause is a
4xx with one clear message that the page shows. No part of a request names a path.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import io
import logging
import time
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

import numpy as np
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from colorjax import color, data
from colorjax.errors import ColorjaxError, ImageDecodeError
from colorjax.serve.pool import ModelPool
from colorjax.serve.worker import QueueFull, Worker

logger = logging.getLogger(__name__)

MAX_HINTS = 64


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one request may send and how many may wait."""

    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_waiting: int = 8


class RequestError(Exception):
    """A request the server refuses: (HTTP status, message for the page)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The body, streamed and cut off at max_bytes (413) without reading the rest."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise RequestError(413, _too_large(int(declared), max_bytes))
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise RequestError(413, _too_large(size, max_bytes))
        chunks.append(chunk)
    if not size:
        raise RequestError(400, "no photo in the request: choose or drop an image file")
    return b"".join(chunks)


def _too_large(size: int, max_bytes: int) -> str:
    return (
        f"the upload is {size / 1e6:.1f} MB, over this server's limit of "
        f"{max_bytes / 1e6:.1f} MB: send a smaller file (or start the server with a larger "
        "--max-upload-mb)"
    )


def check_pixels(body: bytes, max_pixels: int) -> None:
    """Refuse photos over max_pixels from their header, before decoding them (413)."""
    try:
        with Image.open(io.BytesIO(body)) as img:
            width, height = img.size
    except Exception:  # noqa: BLE001 - decode_image gives the precise message below
        return
    if width * height > max_pixels:
        raise RequestError(
            413,
            f"the photo is {width}x{height} ({width * height / 1e6:.1f} megapixels), over this "
            f"server's limit of {max_pixels / 1e6:.1f}: send a smaller photo (or start the "
            "server with a larger --max-megapixels)",
        )


def parse_hints(text: str | None) -> list | None:
    """'X,Y,#RRGGBB;...' in photo pixels -> colorize()'s hints (None: no hints).

    Points outside the photo are refused later, where its size is known (hint_arrays).
    """
    from colorjax.inference.hints import parse_hint

    if not text:
        return None
    parts = [p for p in text.split(";") if p.strip()]
    if len(parts) > MAX_HINTS:
        raise RequestError(400, f"{len(parts)} hints; at most {MAX_HINTS} per request")
    try:
        return [parse_hint(p) for p in parts]
    except ColorjaxError as err:
        raise RequestError(400, f"bad hint: {err}") from err


def png_data_url(rgb: np.ndarray) -> str:
    """A PNG data URL of uint8 RGB (what the page shows and downloads)."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def colorize_job(pool: ModelPool, name: str | None, body: bytes, hints_text: str | None) -> dict:
    """Decode, colorize (with hints if any) and encode one photo: runs on the worker."""
    from colorjax.inference.hints import colorize_with_hints

    colorizer, takes_hints = pool.get(name)
    start = time.perf_counter()
    rgb = data.decode_image(body)
    height, width = rgb.shape[:2]
    hints = parse_hints(hints_text)
    if hints and not takes_hints:
        raise RequestError(
            400,
            f"the model {name or pool.names[0]!r} takes no colour hints; clear the hints or "
            "pick a model marked (hints)",
        )
    colour = colorize_with_hints(colorizer, rgb, hints) if hints else colorizer(rgb)
    gray = _gray_rgb(rgb)
    return {
        "model": name or pool.names[0],
        "width": width,
        "height": height,
        "seconds": time.perf_counter() - start,
        "gray": png_data_url(gray),
        "colour": png_data_url(colour),
    }


def _gray_rgb(rgb: np.ndarray) -> np.ndarray:
    """The photo's luminance as neutral RGB (ab = 0): what the model saw."""
    from colorjax.inference.hints import gray_inputs

    colour_free = color.lab_inputs_to_rgb(*gray_inputs(rgb))
    return np.asarray(np.round(np.clip(np.asarray(colour_free), 0, 1) * 255), np.uint8)


def make_app(pool: ModelPool, limits: Limits | None = None) -> Starlette:
    """The Starlette app serving `pool`'s models within `limits`."""
    limits = limits or Limits()
    worker = Worker(limits.max_waiting)
    page = resources.files("colorjax.serve").joinpath("static/index.html").read_text("utf-8")

    async def index(request: Request) -> Response:
        return HTMLResponse(page)

    async def models(request: Request) -> Response:
        try:
            described = await _on_worker(worker, lambda: pool.describe())
        except RequestError as err:
            return JSONResponse({"error": str(err)}, status_code=err.status)
        return JSONResponse({"models": described, "limits": dataclasses.asdict(limits)})

    async def colorize(request: Request) -> Response:
        name = request.query_params.get("model") or None
        hints = request.query_params.get("hints")
        try:
            if name is not None and name not in pool.names:
                raise RequestError(
                    400, f"unknown model {name!r}; choose one of {', '.join(pool.names)}"
                )
            body = await read_body(request, limits.max_bytes)
            check_pixels(body, limits.max_pixels)
            result = await _on_worker(worker, lambda: colorize_job(pool, name, body, hints))
        except ClientDisconnect:
            logger.info("client left before its upload finished")
            return Response(status_code=499)
        except RequestError as err:
            return JSONResponse({"error": str(err)}, status_code=err.status)
        return JSONResponse(result)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        worker.close()  # after the last request: the queued jobs finish first

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/api/models", models),
            Route("/api/colorize", colorize, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
    app.state.pool = pool
    return app


async def _on_worker(worker: Worker, job: Any) -> Any:
    """Run `job` on the worker; its user errors become RequestError (4xx), busy becomes 503."""
    try:
        future = worker.submit(job)
    except QueueFull:
        raise RequestError(503, "the server is busy; try again in a moment") from None
    try:
        return await asyncio.wrap_future(future)
    except RequestError:
        raise
    except ImageDecodeError as err:
        # The decoder names the input as a file to replace; here it is an upload.
        logger.info("undecodable upload: %s", err)
        raise RequestError(
            400,
            "cannot read the photo: it is not an image this server decodes (JPEG, PNG, WebP, "
            "TIFF, BMP, GIF) or it is damaged; choose another file",
        ) from err
    except ColorjaxError as err:
        raise RequestError(400, str(err)) from err
