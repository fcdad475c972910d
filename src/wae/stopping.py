"""When training stops before its last epoch: the trainer asks a `Stop` after every compiled call.

- `StopSignals` (the default): SIGINT (Ctrl-C) or SIGTERM ask training to stop; the trainer then
  saves a checkpoint and raises `TrainingInterrupted`, so that rerunning the same command resumes.
- `StopAfterSteps`: stop after a number of steps, as if interrupted there (tests and benchmarks).
- `StopTogether`: under `train.strategy: multi_worker`, wraps either so that a stop request to any
  one worker stops every worker after the same step, each with a checkpoint of that step.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Protocol

import tensorflow as tf


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


class StopTogether:
    """A stop request to any worker of a cluster stops them all at the same step.

    Workers train in lockstep, one compiled call at a time. After each call they all-reduce their
    own "stop" flag (one scalar collective, as the gradients already are), so either every worker goes
    on or every worker saves a checkpoint of the same step and stops: a SIGTERM to one machine (a
    preempted VM) never leaves the others waiting in a collective for a peer that is gone.

    TensorFlow's `tf.distribute.experimental.PreemptionCheckpointHandler` does the same agreement
    through the coordination service, but it writes its own `tf.train.Checkpoint` and ends the process
    itself; this keeps the project's one checkpoint format (`wae.checkpoints`: position, history, atomic
    writes) and its one way out (`TrainingInterrupted`, a clear message, rerun to resume).
    """

    def __init__(self, local: Stop, strategy: tf.distribute.Strategy) -> None:
        self.local = local

        @tf.function
        def requests(flag: tf.Tensor) -> tf.Tensor:  # the number of replicas asked to stop
            per_replica = strategy.run(tf.identity, args=(flag,))
            return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

        self._requests = requests

    def watching(self) -> contextlib.AbstractContextManager[None]:
        return self.local.watching()

    def allow(self, steps: int) -> int:
        return self.local.allow(steps)

    def reason(self) -> str | None:
        own = self.local.reason()
        if float(self._requests(tf.constant(0.0 if own is None else 1.0))) == 0.0:
            return None
        return own or "a stop request to another worker"
