"""One worker thread runs every colorization, fed by a bounded queue.

JAX runs one program at a time well on a CPU and one compiled kernel set per model serves
every request, so requests queue for the worker instead of competing for the cores; a full
queue answers at once (503, retry) rather than piling up memory.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)


class QueueFull(Exception):  # noqa: N818 - a state the app answers with 503, not a bug
    """The server is busy: more requests are waiting than the queue holds."""


class Worker:
    """A daemon thread that runs submitted jobs in order; `submit` returns their futures."""

    def __init__(self, max_waiting: int) -> None:
        self._jobs: queue.Queue = queue.Queue(maxsize=max(1, int(max_waiting)))
        self._thread = threading.Thread(target=self._run, name="colorjax-serve", daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], Any]) -> concurrent.futures.Future:
        """Queue `job`; QueueFull when the queue is full."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        try:
            self._jobs.put_nowait((job, future))
        except queue.Full:
            raise QueueFull from None
        return future

    def _run(self) -> None:
        while True:
            job, future = self._jobs.get()
            if job is None:
                return
            if not future.set_running_or_notify_cancel():
                continue  # its client went away while it waited
            try:
                future.set_result(job())
            except BaseException as err:  # noqa: BLE001 - handed to the request that asked
                future.set_exception(err)

    def close(self) -> None:
        """Stop after the queued jobs."""
        self._jobs.put((None, None))
        self._thread.join(timeout=30)
