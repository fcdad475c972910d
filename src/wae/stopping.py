"""When training stops before its last epoch: the trainer asks a `Stop` after every compiled call.

- `StopSignals` (the default): SIGINT (Ctrl-C) or SIGTERM ask training to stop; the trainer then
  saves a checkpoint and raises `TrainingInterrupted`, so that rerunning the same command resumes.
- `StopAfterSteps`: stop after a number of steps, as if interrupted there (tests and benchmarks).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Protocol


class Stop(Protocol):
    def watching(self) -> contextlib.AbstractContextManager[None]:
        """Listen for stop requests while training runs."""
        ...

    def allow(self, steps: int) -> int:
        """How many of the next `steps` steps (one compiled call) may run."""
        ...

    def reason(self) -> str | None:
        """Why training must stop now, or None to go on."""
        ...


class StopSignals:
    """SIGINT and SIGTERM during training ask the loop to stop after the current compiled call."""

    def __init__(self) -> None:
        self.signal: int | None = None

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        previous = {}
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: no handlers, Ctrl-C behaves as usual
            previous = {}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _handle(self, signum: int, _frame: object) -> None:
        self.signal = signum

    def allow(self, steps: int) -> int:
        return steps

    def reason(self) -> str | None:
        return None if self.signal is None else signal.Signals(self.signal).name


class StopAfterSteps:
    """Stop once `steps` training steps have run (counted from the start of `fit`)."""

    def __init__(self, steps: int) -> None:
        self.left = steps
        self.steps = steps

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        yield

    def allow(self, steps: int) -> int:
        allowed = min(steps, self.left)
        self.left -= allowed
        return allowed

    def reason(self) -> str | None:
        return f"a budget of {self.steps} steps" if self.left <= 0 else None
