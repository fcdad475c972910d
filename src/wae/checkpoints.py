"""Checkpoints that resume a run exactly, written atomically (`wae.atomic`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import tensorflow as tf

from wae.atomic import atomic_path
from wae.errors import WAEError

if TYPE_CHECKING:
    from wae.training import WAETrainer

HistoryRow = dict[str, float]


@dataclass
class Position:
    """Where training stands: the epoch under way, the steps done in it, and the epochs done."""

    epoch: int = 0
    offset: int = 0
    seconds: float = 0.0  # spent in this epoch so far (across interruptions)
    history: list[HistoryRow] = field(default_factory=list)


class Checkpointer:
    """Everything needed to resume exactly: every network and optimiser (a `tf.train.Checkpoint`),
    the epoch's loss sums, the position and the history.

    A checkpoint is a folder written under a temporary name and renamed, so an interruption
    during a save leaves the previous checkpoint intact.
    """

    def __init__(self, trainer: WAETrainer, root: str | Path, fingerprint: str) -> None:
        self.fingerprint = fingerprint
        self.folder = Path(root)
        optimizers = {f"{p.name}_optimizer": p.optimizer for p in trainer.players}
        self.checkpoint = tf.train.Checkpoint(**trainer.networks(), **optimizers, loss_sums=trainer.loss_sums)

    def save(self, at: Position) -> None:
        with atomic_path(self.folder) as tmp:
            tmp.mkdir()
            self.checkpoint.write(str(tmp / "variables"))
            state = {
                "fingerprint": self.fingerprint,
                "epoch": at.epoch,
                "offset": at.offset,
                "seconds": at.seconds,
                "history": at.history,
            }
            (tmp / "state.json").write_text(json.dumps(state, indent=2))

    def restore(self) -> Position | None:
        """Load the checkpoint if it belongs to this fingerprint; return its position, else None."""
        try:
            state = json.loads((self.folder / "state.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        if state.get("fingerprint") != self.fingerprint:
            return None
        status = self.checkpoint.read(str(self.folder / "variables"))
        try:
            status.assert_existing_objects_matched()
        except (AssertionError, ValueError) as err:
            raise WAEError(f"checkpoint {self.folder} does not match the model ({err}); delete it") from None
        finally:
            del status
        return Position(state["epoch"], state["offset"], state["seconds"], state["history"])
