"""Ctrl-C (or SIGTERM: `kill`, a cluster's preemption) during training: the first asks the loop to stop
after the current step (it then saves a checkpoint), a second Ctrl-C aborts at once."""

from __future__ import annotations

import signal
import threading
from typing import Any

from gradtune.tracking.console import console


class StopOnInterrupt:
    """The first Ctrl-C or SIGTERM sets `requested`; a second Ctrl-C raises KeyboardInterrupt (a
    second SIGTERM changes nothing). Outside the main thread signals can't be caught: a no-op there."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            # only a second Ctrl-C aborts: a SIGTERM after it is a launcher (torchrun) passing the stop
            # on to its processes, which are already finishing their step to save a checkpoint
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        self.requested = True
        how = "Ctrl-C again to abort" if signum == signal.SIGINT else f"signal {signal.Signals(signum).name}"
        console.print(f"Interrupted ({how}): saving a checkpoint after this step", style="yellow")

    def __enter__(self) -> StopOnInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, previous in self._previous.items():
            if previous is not None:  # None: a handler not set from Python, which cannot be put back
                signal.signal(sig, previous)
        self._previous = {}
