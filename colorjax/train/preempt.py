"""Stop requests: SIGTERM and SIGINT end training after the current step, with a checkpoint.

Schedulers and preemptible TPU/GPU machines stop a job with SIGTERM, and a user with Ctrl-C.
`StopRequests` turns either into a flag the loop reads once per step; a second SIGINT falls
back to Python's default (an immediate KeyboardInterrupt) for a user who does not want to wait.
With several processes every one must stop at the same step, or the collectives of the next
step would hang: `agreed` takes the maximum of the flags over all processes, so a signal that
reaches one host stops all of them after the same update.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

import jax
import numpy as np

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequests:
    """Context manager: while active, SIGTERM/SIGINT set `signum` instead of killing the process.

    Handlers can only be installed from the main thread; elsewhere (a training started from a
    worker thread) the context does nothing and signals keep their usual effect.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.signum = signum
        # A second Ctrl-C interrupts at once: restore the handler that was there before.
        if signum == signal.SIGINT:
            signal.signal(
                signal.SIGINT, self._previous.get(signal.SIGINT, signal.default_int_handler)
            )

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def agreed(self) -> int | None:
        """The signal that stops the run now, agreed by every process (None: keep training)."""
        local = np.int32(self.signum or 0)
        if jax.process_count() == 1:
            return int(local) or None
        from jax.experimental import multihost_utils

        # One tiny all-gather per step: every process sees the same answer for the same step.
        flags = multihost_utils.process_allgather(local)
        return int(np.max(flags)) or None
