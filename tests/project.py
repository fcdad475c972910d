"""Throw-away copies of this project, for tests that run the pipeline as a user would.

`make_project` copies what `git ls-files` tracks into a fresh git repository with tiny
params (a few thousand digits, one or two epochs), so that real `dvc repro`, `dvc exp run`
and `mlflow` commands run against it in seconds. The environment points DVC's `python`
at this virtualenv and WAE_DATA_HOME at a cache holding the canonical MNIST files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent

# Small enough for CI on two cores; big enough that the models learn something.
TINY_PARAMS: dict[str, dict[str, Any]] = {
    "data": {"val_size": 500, "train_subset": 3000},
    "classifier": {"epochs": 1},
    "train": {"epochs": 2, "batch_size": 100, "steps_per_execution": 5},
    "sample": {"n_samples": 300, "grid_size": 5},
    "evaluate": {"n_samples": 300, "mmd_samples": 300, "probe_train_size": 500},
}


def merge(base: Mapping[str, Any], overrides: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    merged = {section: dict(values) for section, values in base.items()}
    for section, values in overrides.items():
        merged.setdefault(section, {}).update(values)
    return merged


def shipped_with(overrides: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The shipped params.yaml, parsed, with some keys changed (params.yaml must hold every key)."""
    return merge(yaml.safe_load((REPO / "params.yaml").read_text()), overrides)


def write_params(root: Path, overrides: Mapping[str, Mapping[str, Any]]) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    (root / "params.yaml").write_text(yaml.safe_dump(merge(params, overrides), sort_keys=False))


def project_env(data_home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        WAE_DATA_HOME=str(data_home),
        CI="1",
        TF_CPP_MIN_LOG_LEVEL="2",
        GIT_AUTHOR_NAME="test",
        GIT_AUTHOR_EMAIL="test@example.com",
        GIT_COMMITTER_NAME="test",
        GIT_COMMITTER_EMAIL="test@example.com",
    )
    env.update(extra)
    return env


def stage_command(name: str, root: Path = REPO) -> list[str]:
    """The command dvc.yaml runs for a stage, with its `${paths...}` filled in from dvc.yaml's vars."""
    import re
    import shlex

    dvc_yaml = yaml.safe_load((root / "dvc.yaml").read_text())
    variables = {k: v for entry in dvc_yaml.get("vars", []) for k, v in entry.items()}

    def lookup(match: re.Match[str]) -> str:
        value: Any = variables
        for part in match.group(1).split("."):
            value = value[part]
        return str(value)

    return shlex.split(re.sub(r"\$\{([^}]+)\}", lookup, dvc_yaml["stages"][name]["cmd"]))


def sh(
    args: list[str] | str, cwd: Path, env: Mapping[str, str], timeout: float = 600, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a command as a user would type it; on failure show its output."""
    result = subprocess.run(
        args,
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        shell=isinstance(args, str),
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{args!r} exited {result.returncode}\n--- stdout\n{result.stdout[-4000:]}\n--- stderr\n"
            f"{result.stderr[-6000:]}"
        )
    return result


def make_project(
    dest: Path,
    env: Mapping[str, str],
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    shared_cache: bool = True,
) -> Path:
    """A git repository holding this project's tracked files and tiny params, committed.

    Its DVC cache starts with the tiny prepared data and judge of a first project (`_shared_cache`):
    `dvc repro` restores them from DVC's run cache, as it does for a user who has run those stages
    with the same code, data and params before, instead of preparing and training a judge in every
    test. Params that change them simply run the stages. `shared_cache=False`: an empty cache.
    """
    _copy_tracked(dest)
    write_params(dest, merge(TINY_PARAMS, overrides or {}))
    sh(["git", "init", "-q", "-b", "main"], dest, env)
    sh(["git", "add", "-A"], dest, env)
    sh(["git", "commit", "-q", "-m", "tiny project"], dest, env)
    if shared_cache:
        shutil.copytree(_shared_cache(env), dest / ".dvc" / "cache", dirs_exist_ok=True)
    return dest


_SHARED_CACHE: Path | None = None


def _shared_cache(env: Mapping[str, str]) -> Path:
    """A DVC cache holding the outputs and run-cache entries of `prepare` and `classifier` run once,
    in a throw-away tiny project, for this test process."""
    global _SHARED_CACHE
    if _SHARED_CACHE is None:
        import atexit
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="wae-shared-cache-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        root = folder / "project"
        _copy_tracked(root)
        write_params(root, TINY_PARAMS)
        sh(["git", "init", "-q", "-b", "main"], root, env)
        sh(["dvc", "repro", "classifier"], root, env)
        _SHARED_CACHE = root / ".dvc" / "cache"
    return _SHARED_CACHE


def _copy_tracked(dest: Path) -> None:
    """This project's files as a fresh clone has them, less the results of the full-size pipeline."""
    tracked = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    # The committed results of the full-size pipeline (dvc.lock, reports/) do not describe a tiny one:
    # the copy starts as a pipeline that has never run.
    fresh = [n for n in filter(None, tracked) if n != "dvc.lock" and not n.startswith("reports/")]
    for name in fresh:
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
