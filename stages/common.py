"""What every stage shares: its file arguments, validated params, the project root, and clean failure."""

from __future__ import annotations

import argparse
import os
import sys
import warnings

# TensorFlow's C++ start-up chatter (oneDNN, CPU features) hides the stage's own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from collections.abc import Callable
from pathlib import Path

from wae.config import ConfigWarning, Params, load_params
from wae.errors import TrainingInterrupted, WAEError

# Stages run from the repository root (DVC's wdir); a `dvc exp run --temp` or queued experiment
# runs in a temporary copy, and DVC_ROOT names the real workspace that owns the MLflow store.
REPO = Path.cwd()


def project_root() -> Path:
    """The workspace that owns shared state (the MLflow store): DVC_ROOT when DVC sets it."""
    return Path(os.environ.get("DVC_ROOT") or REPO).resolve()


def params() -> Params:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConfigWarning)
        loaded = load_params(REPO / "params.yaml")
    for w in caught:  # a setting that has no effect: one line, as errors are printed
        if issubclass(w.category, ConfigWarning):
            print(f"warning: {w.message}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return loaded


def paths(description: str, **names: str) -> argparse.Namespace:
    """The stage's files, each a required `--name PATH` that dvc.yaml passes (paths are written once,
    in dvc.yaml's `vars`). `names` maps each argument to what it holds, for `--help`."""
    parser = argparse.ArgumentParser(description=description)
    for name, meaning in names.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=Path, required=True, help=meaning)
    return parser.parse_args()


def run(main: Callable[[], None]) -> None:
    """Run a stage: a user-facing error prints one clear line and exits with status 2."""
    try:
        main()
    except TrainingInterrupted as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(130)
    except WAEError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
