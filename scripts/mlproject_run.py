"""The one command behind every MLproject entry point: `-P` values become `dvc exp run -S` overrides.

    python scripts/mlproject_run.py ENTRY KEY=VALUE ...

ENTRY is `main` (the whole pipeline, always training a new model) or the name of one DVC stage. Each
KEY=VALUE sets one key of params.yaml, as `dvc exp run -S KEY=VALUE` does by hand; a pair whose value is
`params.yaml` (the default of every -P) is left out, so params.yaml keeps its value. Then:

    main    dvc repro classifier && dvc exp run --force --downstream train -S ...
    STAGE   dvc exp run --single-item --force STAGE -S ...

It lives here, with the project's tooling, and not in the `wae` package: the library knows nothing of DVC.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import yaml

KEEP = "params.yaml"  # the default of every -P in MLproject: "not given"


def overrides(pairs: list[str]) -> list[str]:
    """`-S KEY=VALUE` arguments for the pairs that were given a value."""
    args = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or "." not in key:
            raise ValueError(f"{pair!r} is not SECTION.KEY=VALUE (for example train.lambda=3)")
        if value != KEEP:
            args += ["-S", pair]
    return args


def commands(entry: str, pairs: list[str], stages: list[str]) -> list[list[str]]:
    """The DVC commands that run `entry` with these params."""
    settings = overrides(pairs)
    if entry == "main":
        # The data and the judge first, and only when they changed; then always a new model, because
        # `mlflow run` always makes a run.
        return [
            ["dvc", "repro", "classifier"],
            ["dvc", "exp", "run", "--force", "--downstream", "train", *settings],
        ]
    if entry not in stages:
        raise ValueError(f"unknown entry point {entry!r}; expected main or one of {', '.join(stages)}")
    return [["dvc", "exp", "run", "--single-item", "--force", entry, *settings]]


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    stages = list((yaml.safe_load(Path("dvc.yaml").read_text()) or {}).get("stages", {}))
    try:
        planned = commands(argv[0], argv[1:], stages)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for command in planned:
        print(f"+ {shlex.join(command)}", flush=True)
        status = subprocess.run(command, check=False).returncode
        if status:
            return status
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
