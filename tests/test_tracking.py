"""wae.tracking, the one door to MLflow: where runs are stored, how they open, resume and end.

Most tests talk to a real SQLite store in a temporary folder, in this process; the last ones run the
real `train` stage against a tracking server that does not answer.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
from project import sh
from servers import HOST, free_port

from wae import tracking
from wae.config import TrainConfig
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


# ---------------------------------------------------------------------- what the UI shows
def test_a_new_experiment_is_a_model_training_one_and_an_old_one_becomes_one_on_its_next_run(root):
    tracking.connect(root, EXPERIMENT)
    assert client(root).get_experiment_by_name(EXPERIMENT).tags["mlflow.experimentKind"] == (
        "custom_model_development"
    )
    old = client(root).create_experiment("made-before")  # as by an older version, or by `mlflow run`
    assert "mlflow.experimentKind" not in client(root).get_experiment(old).tags

    with tracking.training_run(root, "made-before", {}, {}):
        pass
    assert client(root).get_experiment(old).tags["mlflow.experimentKind"] == "custom_model_development"


@pytest.mark.parametrize(
    ("train", "experiment", "name"),
    [
        ({}, None, "small-mmd-l1-z12-s0"),
        (
            {"architecture": "post", "penalty": "gan", "lambda_": 0.001, "latent_dim": 1},
            None,
            "post-gan-l0.001-z1-s0",
        ),
        ({"lambda_": 1e-05, "seed": 7}, "bulky-tats", "small-mmd-l1e-05-z12-s7 (bulky-tats)"),
        ({"penalty": "swd", "lambda_": 2.5, "latent_dim": 16}, None, "small-swd-l2.5-z16-s0"),
        ({"penalty": "none", "lambda_": 0.0}, "exp-1", "small-none-l0-z12-s0 (exp-1)"),
    ],
)
def test_a_run_name_says_what_was_trained(train, experiment, name):
    config = dataclasses.replace(TrainConfig(), **train)
    assert tracking.run_name(config, experiment) == name


def test_runs_carry_their_names_also_when_mlflow_run_created_them(root, monkeypatch):
    with tracking.training_run(root, EXPERIMENT, {}, {}, run_name="small-mmd-l3-z8-s0"):
        pass
    created = client(root).create_run(tracking.connect(root, EXPERIMENT))  # a random name, as `mlflow run`
    monkeypatch.setenv("MLFLOW_RUN_ID", created.info.run_id)
    with tracking.training_run(root, EXPERIMENT, {}, {}, run_name="small-gan-l10-z8-s1 (bulky-tats)"):
        pass

    names = {run.info.run_id: run.info.run_name for run in runs(root)}
    assert sorted(names.values()) == ["small-gan-l10-z8-s1 (bulky-tats)", "small-mmd-l3-z8-s0"]
    assert names[created.info.run_id] == "small-gan-l10-z8-s1 (bulky-tats)"


def test_the_prepared_data_is_the_runs_input_dataset_and_runs_can_be_found_by_it(root):
    images = np.zeros((30, 28, 28, 1), np.uint8)
    labels = np.arange(30, dtype=np.uint8) % 10
    with tracking.training_run(root, EXPERIMENT, {}, {"data.digest": "51ef5279cb7d89e5"}) as run_id:
        tracking.log_dataset(
            "mnist", "data/prepared/mnist.npz", "51ef5279cb7d89e5", "train=30 val=5 test=10", images, labels
        )
    with tracking.training_run(root, EXPERIMENT, {}, {}):
        pass  # another run, on no data

    (dataset_input,) = client(root).get_run(run_id).inputs.dataset_inputs
    dataset = dataset_input.dataset
    assert (dataset.name, dataset.digest) == ("mnist", "51ef5279cb7d89e5")
    assert json.loads(dataset.source) == {"uri": "data/prepared/mnist.npz"}
    assert json.loads(dataset.profile)["features_shape"] == [30, 28, 28, 1]
    assert {t.key: t.value for t in dataset_input.tags}["mlflow.data.context"] == "train=30 val=5 test=10"
    experiment_id = client(root).get_experiment_by_name(EXPERIMENT).experiment_id
    found = client(root).search_runs([experiment_id], "dataset.digest = '51ef5279cb7d89e5'")
    assert [run.info.run_id for run in found] == [run_id]


def test_system_metrics_are_sampled_while_a_run_is_open_and_the_sampler_stops_with_it(root, monkeypatch):
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    with tracking.training_run(root, EXPERIMENT, {}, {}) as run_id:
        time.sleep(1.5)
    history = client(root).get_metric_history(run_id, "system/cpu_utilization_percentage")
    assert len(history) >= 2
    assert client(root).get_run(run_id).data.metrics["system/system_memory_usage_megabytes"] > 0

    with pytest.raises(KeyboardInterrupt), tracking.training_run(root, EXPERIMENT, {}, {}):
        time.sleep(0.5)
        raise KeyboardInterrupt
    assert not [t for t in threading.enumerate() if t.name == "SystemMetricsMonitor"], "the sampler stopped"

    monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")  # MLflow's own switch
    with tracking.training_run(root, EXPERIMENT, {}, {}) as quiet_id:
        time.sleep(0.6)
    assert not [k for k in client(root).get_run(quiet_id).data.metrics if k.startswith("system/")]


METRICS = {  # evaluate's metrics.json, with a second sampler's scores under its prefix
    "test_recon_mse": 0.0131,
    "sample_fcd": 25.04,
    "latent_mmd": 0.0021,
    "latent_mean_0": 0.01,
    "latent_std_0": 0.98,
    "gmm.sample_fcd": 18.5,
    "gmm.precision": 0.71,
}


def test_the_description_shows_each_samplers_headline_scores_and_the_sample_grid(root):
    with tracking.training_run(root, EXPERIMENT, {}, {}) as run_id:
        tracking.describe_run(METRICS, {"Samples from the prior": "sample/samples.png"})

    note = client(root).get_run(run_id).data.tags["mlflow.note.content"]
    table = [line for line in note.splitlines() if line.startswith("|")]
    assert table[0] == "| score | prior | gmm |"
    assert table[2] == "| sample_fcd | 25.04 | 18.5 |", "sample FCD first, one column per sampler"
    assert "| precision |  | 0.71 |" in table and "| test_recon_mse | 0.0131 |  |" in table
    assert not any("latent_mean_0" in line for line in note.splitlines()), "per-dimension stats left out"
    assert f"![Samples from the prior](get-artifact?path=sample%2Fsamples.png&run_uuid={run_id})" in note
    # Before the other samplers existed: one column.
    assert "| score | prior |\n" in tracking.summary_markdown({"sample_fcd": 30.0}, run_id, {})


def test_evaluated_versions_carry_their_scores_and_promote_moves_the_alias_to_the_best_fcd(
    root, monkeypatch, capsys
):
    monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")  # not under test here
    uri = f"sqlite:///{root / 'mlflow.db'}"
    registry = client(root)
    registry.create_registered_model("wae-decoder")
    fcds = [30.0, 20.0, 25.0, None]  # version 4 is registered but never evaluated
    for fcd in fcds:
        with tracking.training_run(root, EXPERIMENT, {}, {}) as run_id:
            tracking.log_dict({"a": 1}, "decoder/MLmodel.json")
            registry.create_model_version(
                "wae-decoder", f"{mlflow.active_run().info.artifact_uri}/decoder", run_id
            )
        if fcd is not None:
            tagged = tracking.tag_registered_versions(run_id, {**METRICS, "sample_fcd": fcd})
            assert len(tagged) == 1
    version = registry.get_model_version("wae-decoder", "2")
    assert version.tags["sample_fcd"] == "20" and version.tags["gmm.sample_fcd"] == "18.5"
    assert version.tags["test_recon_mse"] == "0.0131" and "latent_mean_0" not in version.tags
    assert "sample_fcd" not in registry.get_model_version("wae-decoder", "4").tags

    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}, "MLFLOW_TRACKING_URI": uri}
    command = [sys.executable, "-m", "wae.tracking", "promote", "--alias", "champion"]
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "wae-decoder@champion -> version 2 (sample_fcd 20" in result.stdout
    assert str(registry.get_model_version_by_alias("wae-decoder", "champion").version) == "2"

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for bad, message in (
        (["--alias", "latest"], "cannot set alias 'latest'"),
        (["--alias", "champion", "--metric", "no_such_score"], "no version of registered model"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            tracking.main(["promote", *bad])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert str(registry.get_model_version_by_alias("wae-decoder", "champion").version) == "2", "unchanged"


def test_a_study_run_groups_exactly_its_current_members(root):
    # A study's report makes its members' runs children of the study's run. Reported again after its
    # params changed (or a member was retrained), the runs it no longer averages leave the group.
    experiment_id = tracking.connect(root, EXPERIMENT)
    made = [client(root).create_run(experiment_id).info.run_id for _ in range(3)]
    parent = tracking.study_run(root, EXPERIMENT, "demo")
    assert tracking.adopt_members(parent, "demo", {made[0]: "demo-a-s0", made[1]: "demo-b-s0"}) == []
    assert tracking.adopt_members(parent, "demo", {made[0]: "demo-a-s0", made[2]: "demo-c-s0"}) == []

    tags = {run_id: client(root).get_run(run_id).data.tags for run_id in made}
    children = {run_id for run_id, t in tags.items() if t.get("mlflow.parentRunId") == parent}
    assert children == {made[0], made[2]}
    assert "study.demo" not in tags[made[1]]
    assert tags[made[2]]["study.demo"] == "demo-c-s0"
