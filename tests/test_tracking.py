"""wae.tracking, the one door to MLflow: where runs are stored, how they open, resume and end.

Most tests talk to a real SQLite store in a temporary folder, in this process; the last ones run the
real `train` stage against a tracking server that does not answer.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from project import sh
from servers import HOST, free_port

from wae import tracking
from wae.errors import TrackingError, TrainingInterrupted

EXPERIMENT = "wae-mnist"


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new, empty SQLite store, made once: creating its tables takes seconds."""
    path = tmp_path_factory.mktemp("empty-store") / tracking.STORE_FILE
    mlflow.MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_store: Path) -> Path:
    """A project root with an empty store; the test process runs elsewhere, as DVC's temp copies do."""
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(name, raising=False)
    # mlflow.set_tracking_uri() is process-wide: put the previous value back afterwards.
    monkeypatch.setattr(mlflow.tracking._tracking_service.utils, "_tracking_uri", None)
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(empty_store, project / tracking.STORE_FILE)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    yield project
    while mlflow.active_run():
        mlflow.end_run()
    assert not list(elsewhere.iterdir()), "nothing may be written to the working directory"


def client(root: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")


def runs(root: Path) -> list[mlflow.entities.Run]:
    experiment = client(root).get_experiment_by_name(EXPERIMENT)
    return client(root).search_runs([experiment.experiment_id]) if experiment else []


def test_the_store_and_its_artifacts_live_at_the_project_root(root):
    with tracking.training_run(root, EXPERIMENT, {"train.lambda": 10.0}, {"git.dirty": "false"}) as run_id:
        tracking.log_dict({"ok": 1}, "check.json")

    experiment = client(root).get_experiment_by_name(EXPERIMENT)
    assert experiment.artifact_location == (root / "mlartifacts").as_uri()
    assert (root / "mlartifacts").is_dir() and any((root / "mlartifacts").rglob("check.json"))
    (run,) = runs(root)
    assert run.info.run_id == run_id and run.info.status == "FINISHED"
    assert run.data.params == {"train.lambda": "10.0"} and run.data.tags["git.dirty"] == "false"


def test_parallel_first_runs_on_a_fresh_store_share_one_experiment_without_lock_errors(root):
    (root / tracking.STORE_FILE).unlink()  # as on a first `dvc queue start -j 2` in a fresh clone
    script = (
        "import sys\nfrom wae import tracking\n"
        "with tracking.training_run(sys.argv[1], sys.argv[2], {'train.seed': sys.argv[3]}, {}):\n"
        "    tracking.log_metrics({'train_recon': 1.0}, step=1)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(root), EXPERIMENT, str(seed)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for seed in range(4)
    ]
    outputs = [worker.communicate(timeout=300)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0] * 4, "\n".join(outputs)
    assert not any("locked" in output for output in outputs)
    assert [e.name for e in client(root).search_experiments() if e.name == EXPERIMENT] == [EXPERIMENT]
    finished = runs(root)
    assert len(finished) == 4 and {r.info.status for r in finished} == {"FINISHED"}
    assert {r.data.params["train.seed"] for r in finished} == {"0", "1", "2", "3"}


def test_a_run_created_by_mlflow_run_is_resumed_and_its_params_are_kept(root, monkeypatch):
    # `mlflow run -P ...` creates the run and logs its -P values (as strings) before our code starts.
    experiment_id = tracking.connect(root, EXPERIMENT)
    created = client(root).create_run(experiment_id)
    client(root).log_param(created.info.run_id, "train.epochs", "2")
    monkeypatch.setenv("MLFLOW_RUN_ID", created.info.run_id)

    params = {"train.epochs": 2, "train.lambda": 3.0}  # the same epochs, logged as an int: another value
    with tracking.training_run(root, EXPERIMENT, params, {}) as run_id:
        assert run_id == created.info.run_id

    (run,) = runs(root)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"train.epochs": "2", "train.lambda": "3.0"}


@pytest.mark.parametrize(
    ("error", "status", "reason"),
    [
        (RuntimeError("disk full"), "FAILED", "RuntimeError: disk full"),
        (KeyboardInterrupt(), "KILLED", "KeyboardInterrupt"),
        (TrainingInterrupted("SIGTERM at epoch 2"), "KILLED", "SIGTERM at epoch 2"),
    ],
)
def test_a_run_that_fails_or_is_interrupted_ends_failed_or_killed_with_the_reason(
    root, error, status, reason
):
    with pytest.raises(type(error)), tracking.training_run(root, EXPERIMENT, {}, {}):
        tracking.log_metrics({"train_recon": 1.0}, step=1)
        raise error

    (run,) = runs(root)
    assert run.info.status == status and run.info.end_time is not None
    assert reason in run.data.tags["failure_reason"]
    assert mlflow.active_run() is None


def test_sample_and_evaluate_log_into_the_run_that_train_opened(root):
    ref_file = root / "models/wae/mlflow_run.json"
    with tracking.training_run(root, EXPERIMENT, {"train.lambda": 10.0}, {}) as run_id:
        tracking.log_metrics({"train_recon": 2.0}, step=1)
        tracking.write_run_ref(ref_file, run_id, root, EXPERIMENT)
    ref = tracking.read_run_ref(ref_file)
    assert ref["run_id"] == run_id

    for score in (5.0, 4.0):  # evaluate, then evaluate again after a change of evaluate params
        with tracking.resumed_run(root, ref):
            tracking.log_metrics({"sample_fcd": score})
    with pytest.raises(ValueError), tracking.resumed_run(root, ref):
        raise ValueError("bad samples")

    (run,) = runs(root)
    assert run.info.run_id == run_id and run.info.status == "FAILED"
    assert "ValueError: bad samples" in run.data.tags["failure_reason"]
    assert [m.value for m in client(root).get_metric_history(run_id, "sample_fcd")] == [5.0, 4.0]


def test_a_missing_or_stale_run_reference_says_what_to_do(root):
    with pytest.raises(TrackingError, match="run the train stage first"):
        tracking.read_run_ref(root / "models/wae/mlflow_run.json")
    tracking.connect(root, EXPERIMENT)
    with (
        pytest.raises(TrackingError, match=r"cannot reopen MLflow run 0123abcd.*dvc repro -f train"),
        tracking.resumed_run(root, {"run_id": "0123abcd", "tracking_uri": "x"}),
    ):
        pass


def test_an_unreachable_server_is_named(monkeypatch):
    uri = f"http://{HOST}:{free_port()}"
    with pytest.raises(TrackingError, match=f"MLflow tracking server {uri} is unreachable"):
        tracking.check_reachable(uri, timeout=2)


@pytest.mark.slow
def test_train_stops_before_training_when_the_tracking_server_is_unreachable(tiny_project):
    root, env = tiny_project
    sh(["dvc", "repro", "prepare"], root, env)
    uri = f"http://{HOST}:{free_port()}"  # nothing listens there

    result = sh(["dvc", "repro", "train"], root, {**env, "MLFLOW_TRACKING_URI": uri}, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"MLflow tracking server {uri} is unreachable" in result.stderr, output[-3000:]
    assert "Traceback" not in output and "epoch 1/" not in output
    assert not (root / "models").exists() and not (root / "checkpoints").exists()
    assert not (root / "reports/train").exists() and not (root / "mlflow.db").exists()
    assert "train" in json.loads(sh(["dvc", "status", "--json"], root, env).stdout), "still to be run"
