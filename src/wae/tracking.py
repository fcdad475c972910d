"""The one door to MLflow: where runs are stored, how a run starts, resumes and ends.

One trained model is one MLflow run. `train` opens it (`training_run`); `sample` and
`evaluate` log into the same run later (`resumed_run`), given the id `train` wrote to a
small JSON file (`write_run_ref` / `read_run_ref`). Whatever goes wrong inside, the run
ends FAILED (or KILLED on Ctrl-C / SIGTERM) with the reason as a tag, never stuck RUNNING.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wae.atomic import write_json
from wae.errors import TrackingError, TrainingInterrupted

STORE_FILE = "mlflow.db"
ARTIFACT_DIR = "mlartifacts"


def tracking_uri(root: str | Path) -> str:
    """MLFLOW_TRACKING_URI if set, else a SQLite store at `root`/mlflow.db."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(root).resolve() / STORE_FILE}"


def _is_local_sqlite(uri: str) -> bool:
    return uri.startswith("sqlite:///")


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast, naming the URI, when a tracking server does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as response:
            if response.status != 200:
                raise TrackingError(
                    f"MLflow tracking server {uri} answered HTTP {response.status} on /health"
                )
    except (urllib.error.URLError, OSError) as err:
        raise TrackingError(
            f"MLflow tracking server {uri} is unreachable ({err}); start it, or unset MLFLOW_TRACKING_URI "
            "to use the local store"
        ) from None


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def connect(root: str | Path, experiment_name: str) -> str:
    """Point MLflow at the store and make sure the experiment exists; return its id.

    The local store is created under a file lock, so that parallel queued experiments never
    race on a fresh database ("database is locked"). Artifacts of a local store go to
    `root`/mlartifacts, whatever the working directory (DVC runs experiments in temp copies).
    """
    import mlflow

    root = Path(root).resolve()
    uri = tracking_uri(root)
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    lock = root / ".mlflow.lock" if _is_local_sqlite(uri) else Path(tempfile.gettempdir()) / "wae-mlflow.lock"
    with _file_lock(lock):
        for attempt in range(5):
            try:
                experiment = mlflow.get_experiment_by_name(experiment_name)
                if experiment is not None:
                    return experiment.experiment_id
                location = (root / ARTIFACT_DIR).as_uri() if _is_local_sqlite(uri) else None
                return mlflow.create_experiment(experiment_name, artifact_location=location)
            except Exception as err:  # the store's own errors come in many types
                if "locked" not in str(err) or attempt == 4:
                    raise TrackingError(f"MLflow store {uri}: {err}") from err
                time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def git_tags(repo: str | Path) -> dict[str, str]:
    """The commit a run's code came from, and whether the tree had uncommitted changes."""

    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)
        return result.stdout.strip() if result.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    if not commit:
        return {}
    # dvc.lock is rewritten by the very `dvc repro` that is running: it does not make the code dirty.
    dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)dvc.lock"))
    return {"git.commit": commit, "git.dirty": str(dirty).lower(), "mlflow.source.git.commit": commit}


def _log_new_params(run_id: str, params: Mapping[str, Any]) -> None:
    """Log params, skipping keys the run already holds (`mlflow run` logs its -P values first)."""
    import mlflow

    existing = mlflow.MlflowClient().get_run(run_id).data.params
    fresh = {k: v for k, v in params.items() if k not in existing}
    items = list(fresh.items())
    for start in range(0, len(items), 100):
        mlflow.log_params(dict(items[start : start + 100]))


def _end_status(err: BaseException) -> str:
    return "KILLED" if isinstance(err, KeyboardInterrupt | TrainingInterrupted) else "FAILED"


@contextlib.contextmanager
def _run_guard(run_id: str) -> Iterator[None]:
    """End the active run FAILED/KILLED with the reason as a tag when the body raises."""
    import mlflow

    try:
        yield
    except BaseException as err:
        reason = f"{type(err).__name__}: {err}"[:5000]
        with contextlib.suppress(Exception):
            mlflow.set_tag("failure_reason", reason)
        mlflow.end_run(status=_end_status(err))
        raise
    mlflow.end_run(status="FINISHED")


@contextlib.contextmanager
def training_run(
    root: str | Path,
    experiment_name: str,
    params: Mapping[str, Any],
    tags: Mapping[str, str],
    run_name: str | None = None,
) -> Iterator[str]:
    """Open the run that records one trained model; yield its id.

    Under `mlflow run`, MLFLOW_RUN_ID names a run MLflow already created: it is resumed.
    """
    import mlflow

    experiment_id = connect(root, experiment_name)
    existing = os.environ.get("MLFLOW_RUN_ID")
    if existing:
        run = mlflow.start_run(run_id=existing)
        if run.info.experiment_id != experiment_id:
            print(
                f"warning: MLflow run {existing} is not in experiment {experiment_name!r}; "
                f"pass --experiment-name {experiment_name} to `mlflow run`",
                file=sys.stderr,
            )
    else:
        run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name)
    run_id = run.info.run_id
    with _run_guard(run_id):
        _log_new_params(run_id, params)
        mlflow.set_tags(dict(tags))
        yield run_id


@contextlib.contextmanager
def resumed_run(root: str | Path, ref: Mapping[str, str]) -> Iterator[str]:
    """Log into the run that `train` opened (for `sample` and `evaluate`)."""
    import mlflow

    uri = tracking_uri(root)
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    try:
        run = mlflow.start_run(run_id=ref["run_id"])
    except Exception as err:
        raise TrackingError(
            f"cannot reopen MLflow run {ref['run_id']} in {uri} ({err}); rerun `dvc repro -f train`"
        ) from err
    with _run_guard(run.info.run_id):
        yield run.info.run_id


def set_tags(tags: Mapping[str, str]) -> None:
    import mlflow

    mlflow.set_tags(dict(tags))


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    import mlflow

    mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)


def log_artifact(path: str | Path, folder: str | None = None) -> None:
    import mlflow

    path = Path(path)
    if path.is_dir():
        mlflow.log_artifacts(str(path), artifact_path=folder)
    else:
        mlflow.log_artifact(str(path), artifact_path=folder)


def log_dict(obj: Mapping[str, Any], artifact_file: str) -> None:
    import mlflow

    mlflow.log_dict(dict(obj), artifact_file)


def log_keras_model(model: Any, name: str, example_input: Any) -> str:
    """Log a Keras model with input/output signatures; return its model URI."""
    import mlflow
    from mlflow.models import infer_signature

    signature = infer_signature(example_input, model.predict(example_input, verbose=0))
    # input_example= is not passed: it fails for Keras 3 models in MLflow 3.17 (FACTS.md).
    info = mlflow.keras.log_model(
        model, name=name, signature=signature, pip_requirements=_model_requirements()
    )
    return info.model_uri


def _model_requirements() -> list[str]:
    """What a served model needs, pinned as installed here. Given explicitly, because MLflow would infer
    it in a subprocess that imports TensorFlow and loads the model again (seconds of CPU per model)."""
    from importlib import metadata

    pins = []
    for names in (("tensorflow-cpu", "tensorflow"), ("keras",)):
        for name in names:
            with contextlib.suppress(metadata.PackageNotFoundError):
                pins.append(f"{name}=={metadata.version(name)}")
                break
    return pins


def register_model(model_uri: str, name: str, alias: str) -> str:
    """Register a logged model under `name` and point `alias` at the new version."""
    import mlflow

    version = mlflow.register_model(model_uri, name)
    mlflow.MlflowClient().set_registered_model_alias(name, alias, version.version)
    return str(version.version)


def write_run_ref(path: str | Path, run_id: str, root: str | Path, experiment_name: str) -> None:
    write_json(path, {"run_id": run_id, "tracking_uri": tracking_uri(root), "experiment": experiment_name})


def read_run_ref(path: str | Path) -> dict[str, str]:
    try:
        ref = json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError) as err:
        raise TrackingError(f"{path}: no MLflow run reference ({err}); run the train stage first") from None
    if not isinstance(ref, dict) or not {"run_id", "tracking_uri"} <= ref.keys():
        raise TrackingError(f"{path}: malformed MLflow run reference {ref!r}")
    return ref


# --- Studies (scripts/study.py): finding members' runs, and the run that groups them ---------------


@dataclass(frozen=True)
class RunRecord:
    """What a study needs of a run: its id, state, tags and latest metric values."""

    run_id: str
    status: str
    tags: dict[str, str]
    metrics: dict[str, float]


def search_runs(root: str | Path, experiment_name: str, filter_string: str = "") -> list[RunRecord]:
    """Every run of the experiment that matches an MLflow search filter, newest first."""
    import mlflow

    experiment_id = connect(root, experiment_name)
    client = mlflow.MlflowClient()
    found, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string,
            max_results=1000,
            order_by=["attributes.start_time DESC"],
            page_token=token,
        )
        found += [
            RunRecord(r.info.run_id, r.info.status, dict(r.data.tags), dict(r.data.metrics)) for r in page
        ]
        token = page.token
        if not token:
            return found


STUDY_TAG = "study"  # on a study's own run: the study's name


def study_run(root: str | Path, experiment_name: str, study_name: str) -> str:
    """The id of the run that holds a study's report: the existing one, else a new one."""
    import mlflow

    existing = search_runs(root, experiment_name, f"tags.{STUDY_TAG} = '{study_name}'")
    if existing:
        return existing[0].run_id
    experiment_id = connect(root, experiment_name)
    run = mlflow.MlflowClient().create_run(
        experiment_id, run_name=f"study-{study_name}", tags={STUDY_TAG: study_name}
    )
    return run.info.run_id


def adopt_members(parent_id: str, study_name: str, members: Mapping[str, str]) -> list[str]:
    """Make runs (run id -> member name) children of a study's run, so the UI groups them under it,
    and tag each `study.<name>` with its member name. A run has one parent: one that already belongs
    to another study's run stays there (it is still tagged); their ids are returned."""
    import mlflow

    client = mlflow.MlflowClient()
    elsewhere = []
    for run_id, name in members.items():
        parent = client.get_run(run_id).data.tags.get("mlflow.parentRunId")
        if parent in (None, "", parent_id):
            client.set_tag(run_id, "mlflow.parentRunId", parent_id)
        else:
            elsewhere.append(run_id)
        client.set_tag(run_id, f"{STUDY_TAG}.{study_name}", name)
    return elsewhere


def log_study(run_id: str, metrics: Mapping[str, float], folder: str | Path, tags: Mapping[str, str]) -> None:
    """Log a study's aggregated metrics, its report folder (as artifacts) and tags; end the run FINISHED."""
    import mlflow
    from mlflow.entities import Metric, RunTag

    client = mlflow.MlflowClient()
    now = int(time.time() * 1000)
    items = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
    for start in range(0, len(items), 1000):
        client.log_batch(run_id, metrics=items[start : start + 1000])
    client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
    client.log_artifacts(run_id, str(folder))
    client.set_terminated(run_id, "FINISHED")
