"""Ctrl-C during training: the first asks the loop to stop after the current step (it then saves a
checkpoint), a second aborts at once."""

from __future__ import annotations

import signal
import threading
from typing import Any

from gradtune.tracking.console import console


class StopOnInterrupt:
    """The first Ctrl-C sets `requested`; a second Ctrl-C raises KeyboardInterrupt. Outside the
    main thread signals can't be caught: a no-op there."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        console.print("Interrupted: saving a checkpoint after this step (Ctrl-C again to abort)", style="yellow")

    def __enter__(self) -> StopOnInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
