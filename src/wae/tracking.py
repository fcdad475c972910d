"""The one door to MLflow: where runs are stored, how a run starts, resumes and ends.

One trained model is one MLflow run. `train` opens it (`training_run`); `sample` and
`evaluate` log into the same run later (`resumed_run`), given the id `train` wrote to a
small JSON file (`write_run_ref` / `read_run_ref`). Whatever goes wrong inside, the run
ends FAILED (or KILLED on Ctrl-C / SIGTERM) with the reason as a tag, never stuck RUNNING.

The experiment is tagged as a model-training one, each run is named after what it trained
(`run_name`), holds its input dataset, the machine's load while training and, once evaluated, a
summary (`describe_run`); registered decoder versions carry their scores (`promote` picks the best).
`python -m wae.tracking` has the command-line side: `promote`, and `url` for the runs' page.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
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
from typing import TYPE_CHECKING, Any

from wae.atomic import write_json
from wae.errors import TrackingError, TrainingInterrupted, WAEError

if TYPE_CHECKING:
    from wae.config import TrainConfig

STORE_FILE = "mlflow.db"
ARTIFACT_DIR = "mlartifacts"
# What kind of experiment this is, for MLflow: model training, not GenAI (traces, token usage).
# MLflow 3.17's own UI opens experiments by its GenAI / Model training switch instead: see `runs_url`.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"


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
                    # An experiment made before (or by `mlflow run`) gets the kind on its next run.
                    if experiment.tags.get(EXPERIMENT_KIND_TAG) != MODEL_TRAINING:
                        mlflow.MlflowClient().set_experiment_tag(
                            experiment.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING
                        )
                    return experiment.experiment_id
                location = (root / ARTIFACT_DIR).as_uri() if _is_local_sqlite(uri) else None
                return mlflow.create_experiment(
                    experiment_name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING}
                )
            except Exception as err:  # the store's own errors come in many types
                if "locked" not in str(err) or attempt == 4:
                    raise TrackingError(f"MLflow store {uri}: {err}") from err
                time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def short_number(value: float) -> str:
    """A number as briefly as it reads exactly: 3.0 -> "3", 0.001 -> "0.001", 1e-05 -> "1e-05"."""
    text = repr(float(value))
    return text.removesuffix(".0")


def run_name(train: TrainConfig, experiment: str | None = None) -> str:
    """What a run trained, as its name in the UI: architecture, regulariser, λ, latent size, seed.

    `small-mmd-l1-z12-s0` is the small networks with the MMD penalty, λ = 1, a 12-dimensional
    latent space and seed 0; an experiment's name (DVC's) follows in brackets:
    `small-mmd-l0.001-z12-s0 (bulky-tats)`.
    """
    name = (
        f"{train.architecture}-{train.penalty}-l{short_number(train.lambda_)}"
        f"-z{train.latent_dim}-s{train.seed}"
    )
    return f"{name} ({experiment})" if experiment else name


def git_tags(repo: str | Path) -> dict[str, str]:
    """The commit a run's code came from, and whether the tree had uncommitted changes."""

    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)
        return result.stdout.strip() if result.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    if not commit:
        return {}
    # dvc.lock and the committed reports are rewritten by the very `dvc repro` that is running: they do
    # not make the code dirty.
    dirty = bool(
        git(
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            ".",
            ":(exclude)dvc.lock",
            ":(exclude)reports",
        )
    )
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

    Under `mlflow run`, MLFLOW_RUN_ID names a run MLflow already created: it is resumed (and
    renamed `run_name`). CPU and memory use are recorded under `system/` while the run is open,
    unless MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=false.
    """
    import mlflow

    experiment_id = connect(root, experiment_name)
    existing = os.environ.get("MLFLOW_RUN_ID")
    system_metrics = _system_metrics_enabled()
    # Its start and stop are INFO lines in the middle of the stage's own output.
    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)
    if existing:
        run = mlflow.start_run(run_id=existing, log_system_metrics=system_metrics)
        if run.info.experiment_id != experiment_id:
            print(
                f"warning: MLflow run {existing} is not in experiment {experiment_name!r}; "
                f"pass --experiment-name {experiment_name} to `mlflow run`",
                file=sys.stderr,
            )
        if run_name:
            mlflow.MlflowClient().update_run(existing, name=run_name)
    else:
        run = mlflow.start_run(
            experiment_id=experiment_id, run_name=run_name, log_system_metrics=system_metrics
        )
    run_id = run.info.run_id
    with _run_guard(run_id):
        _log_new_params(run_id, params)
        mlflow.set_tags(dict(tags))
        yield run_id


def _system_metrics_enabled() -> bool:
    """On by default; MLflow's own switch, MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=false, turns it off."""
    from mlflow.environment_variables import MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING as switch

    return switch.get() if switch.defined else True


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


def log_dataset(
    name: str,
    source: str,
    digest: str,
    context: str,
    features: Any,
    targets: Any = None,
    tags: Mapping[str, str] | None = None,
) -> None:
    """Record a NumPy dataset as the active run's input (the UI's Datasets column; search runs with
    `dataset.name`, `dataset.digest`, `dataset.context`). `digest` is ours, not MLflow's hash of the
    arrays, so that it equals the digest the run is tagged with."""
    import warnings

    import mlflow
    import mlflow.data

    with warnings.catch_warnings():
        # A path source "can be interpreted in multiple ways" (MLflow registers two local-file kinds).
        warnings.filterwarnings("ignore", message="The specified dataset source", category=UserWarning)
        dataset = mlflow.data.from_numpy(features, source=source, targets=targets, name=name, digest=digest)
    mlflow.log_input(dataset, context=context, tags=dict(tags or {}))


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


# ---------------------------------------------------------------------- the run's summary and the registry
# Scores a reader compares first; any other score follows in the order `evaluate` wrote it.
_FIRST = ("sample_fcd", "sample_confidence", "sample_class_entropy")
PRIOR = "prior"  # the group of unprefixed scores: samples drawn from the prior, and the model's own


def headline_scores(metrics: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """Scores grouped by sampler: `gmm.sample_fcd` under `gmm`, unprefixed ones under `prior`.

    Per-dimension latent statistics (`latent_mean_3`, ...) are left out: summaries, not headlines.
    """
    groups: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        sampler, _, score = key.rpartition(".")
        if score.rsplit("_", 1)[-1].isdigit():
            continue
        groups.setdefault(sampler or PRIOR, {})[score] = float(value)
    return groups


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def summary_markdown(metrics: Mapping[str, float], run_id: str, images: Mapping[str, str]) -> str:
    """The run's description: one table of each sampler's scores, then pictures of the run.

    `images` maps a caption to an artifact path of this run (`sample/samples.png`). They are linked
    through the tracking server's `get-artifact` endpoint, relative to the UI's own address, so the
    run page shows them wherever the server runs.
    """
    from urllib.parse import quote

    groups = headline_scores(metrics)
    samplers = sorted(groups, key=lambda name: (name != PRIOR, name))
    scores = list(dict.fromkeys(score for name in samplers for score in groups[name]))
    scores.sort(key=lambda score: _FIRST.index(score) if score in _FIRST else len(_FIRST))
    lines = [
        "**Scores** (`evaluate`, reports/metrics.json): lower is better for FCD, MSE, BCE and MMD; "
        "`sample_class_entropy` is ln 10 = 2.303 when all digits come equally often.",
        "",
        "| score | " + " | ".join(samplers) + " |",
        "| --- |" + " ---: |" * len(samplers),
    ]
    lines += [
        f"| {score} | " + " | ".join(_cell(groups[name].get(score)) for name in samplers) + " |"
        for score in scores
    ]
    for caption, path in images.items():
        url = f"get-artifact?path={quote(path, safe='')}&run_uuid={run_id}"
        lines += ["", f"**{caption}** (`{path}`)", "", f"![{caption}]({url})"]
    return "\n".join(lines) + "\n"


def describe_run(metrics: Mapping[str, float], images: Mapping[str, str]) -> None:
    """Write the active run's Markdown description (the run page's "Description")."""
    import mlflow

    run_id = mlflow.active_run().info.run_id
    mlflow.set_tag("mlflow.note.content", summary_markdown(metrics, run_id, images))


def tag_registered_versions(run_id: str, metrics: Mapping[str, float]) -> list[str]:
    """Tag each model version registered from `run_id` with the run's headline scores
    (`sample_fcd`, `gmm.sample_fcd`, ...); return them as `name/version`."""
    import mlflow

    client = mlflow.MlflowClient()
    tags = {
        (score if sampler == PRIOR else f"{sampler}.{score}"): f"{value:.6g}"
        for sampler, scores in headline_scores(metrics).items()
        for score, value in scores.items()
    }
    tagged = []
    for version in _model_versions(client, f"run_id = '{run_id}'"):
        for key, value in tags.items():
            client.set_model_version_tag(version.name, version.version, key, value)
        tagged.append(f"{version.name}/{version.version}")
    return tagged


def _model_versions(client: Any, query: str) -> list[Any]:
    versions, token = [], None
    while True:
        page = client.search_model_versions(query, page_token=token)
        versions += list(page)
        token = page.token
        if not token:
            return versions


def promote(model_name: str, alias: str, metric: str = "sample_fcd") -> Any:
    """Point `alias` at the version of `model_name` with the lowest `metric` tag; return that version.

    Versions are tagged with their scores when `evaluate` runs; one never evaluated is not a candidate.
    Ties go to the newest version.
    """
    import math

    import mlflow

    client = mlflow.MlflowClient()
    scored = []
    for version in _model_versions(client, f"name = '{model_name}'"):
        with contextlib.suppress(KeyError, ValueError):
            value = float(version.tags[metric])
            if math.isfinite(value):
                scored.append((value, -int(version.version), version))
    if not scored:
        raise TrackingError(
            f"no version of registered model {model_name!r} has a {metric!r} score in "
            f"{mlflow.get_tracking_uri()}; evaluate a model first (`dvc repro`)"
        )
    best = min(scored, key=lambda item: item[:2])[2]
    try:
        client.set_registered_model_alias(model_name, alias, best.version)
    except Exception as err:  # MLflow refuses some names (`latest`, `v3`)
        raise TrackingError(f"cannot set alias {alias!r} on {model_name}: {err}") from err
    return best


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


def runs_url(base: str, experiment_id: str) -> str:
    """The UI page listing an experiment's runs.

    MLflow 3.17's UI chooses an experiment's page from its own "GenAI | Model training" switch (GenAI
    until a user flips it; remembered per browser), not from the experiment's kind tag: the link sets it.
    """
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}?workflowType=machine_learning"


def _settings(params_file: Path) -> Any:
    from wae.config import MlflowConfig, load_params

    return load_params(params_file).mlflow if params_file.is_file() else MlflowConfig()


def _open_store() -> str:
    """Point MLflow at MLFLOW_TRACKING_URI or ./mlflow.db, which must exist; return the URI."""
    import mlflow

    uri = tracking_uri(Path.cwd())
    if _is_local_sqlite(uri) and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise TrackingError(
            f"no MLflow store at {uri}; run this in the repository or set MLFLOW_TRACKING_URI"
        )
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    return uri


def main(argv: list[str] | None = None) -> None:
    """`python -m wae.tracking promote --alias champion` and `python -m wae.tracking url`.

    The store is MLFLOW_TRACKING_URI, else ./mlflow.db; names default to params.yaml's `mlflow` section.
    """
    import argparse

    import mlflow

    parser = argparse.ArgumentParser(prog="python -m wae.tracking", description=main.__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    promote_cmd = commands.add_parser(
        "promote",
        help="move an alias to the registered decoder version with the best (lowest) score",
        description="Move ALIAS to the version of the registered model with the lowest METRIC tag "
        "(set on each version by `evaluate`). The store: MLFLOW_TRACKING_URI, else ./mlflow.db.",
    )
    promote_cmd.add_argument("--alias", required=True, help="the alias to move, e.g. champion")
    promote_cmd.add_argument(
        "--model", help="registered model (default: params.yaml mlflow.registered_model_name)"
    )
    promote_cmd.add_argument(
        "--metric", default="sample_fcd", help="a lower-is-better score (default: sample_fcd)"
    )
    url_cmd = commands.add_parser(
        "url",
        help="the UI page that lists the experiment's runs",
        description="Print the address of the UI page listing the runs of the experiment "
        "(params.yaml mlflow.experiment_name) on a UI at BASE.",
    )
    url_cmd.add_argument(
        "--base",
        help="the UI's address (default: MLFLOW_TRACKING_URI when it is a server, else http://127.0.0.1:5000)",
    )
    args = parser.parse_args(argv)

    try:
        settings = _settings(Path("params.yaml"))
        uri = _open_store()
        if args.command == "url":
            experiment = mlflow.get_experiment_by_name(settings.experiment_name)
            if experiment is None:
                raise TrackingError(
                    f"no experiment {settings.experiment_name!r} in {uri} yet: run `dvc repro`"
                )
            base = args.base or (uri if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000")
            print(runs_url(base, experiment.experiment_id))
            return
        model = args.model or settings.registered_model_name
        best = promote(model, args.alias, args.metric)
    except WAEError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(
        f"{model}@{args.alias} -> version {best.version} ({args.metric} {best.tags[args.metric]}, run {best.run_id})"
    )


if __name__ == "__main__":
    main()


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
    return _runs_matching(connect(root, experiment_name), filter_string)


def _runs_matching(experiment_id: str, filter_string: str) -> list[RunRecord]:
    """Every run of an experiment (by id) that matches an MLflow search filter, newest first, page by page."""
    import mlflow

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
    to another study's run stays there (it is still tagged); their ids are returned.

    Children of an earlier report that are no longer members (the study's params changed, or a rerun
    of a member superseded them) are let go, so the UI groups exactly the runs the report averages."""
    import mlflow

    client = mlflow.MlflowClient()
    member_tag = f"{STUDY_TAG}.{study_name}"
    experiment_id = client.get_run(parent_id).info.experiment_id
    for run in _runs_matching(experiment_id, f"tags.`mlflow.parentRunId` = '{parent_id}'"):
        if run.run_id not in members:
            client.delete_tag(run.run_id, "mlflow.parentRunId")
            if member_tag in run.tags:
                client.delete_tag(run.run_id, member_tag)
    elsewhere = []
    for run_id, name in members.items():
        parent = client.get_run(run_id).data.tags.get("mlflow.parentRunId")
        if parent in (None, "", parent_id):
            client.set_tag(run_id, "mlflow.parentRunId", parent_id)
        else:
            elsewhere.append(run_id)
        client.set_tag(run_id, member_tag, name)
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
