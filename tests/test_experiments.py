"""The README's "Compare runs", run verbatim in one throw-away copy of the project: `dvc repro`, reruns,
a queued sweep, `dvc exp apply`, `mlflow run` and `mlflow ui`, read back from the real MLflow store.

The tests run in order and build on each other (one project, so that the data and the judge are made
once): the first trains the baseline, each later one adds runs and checks the whole store again.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import mlflow
import psutil
import pytest
import yaml
from project import make_project, project_env, sh, write_params
from servers import HOST, command_starting, free_port, readme_commands, start_service

pytestmark = pytest.mark.slow

COMMANDS = readme_commands("Compare runs")
EXPERIMENT = "wae-mnist"
SWEEP_LAMBDAS = {3.0, 10.0, 30.0}  # README: dvc exp run --queue -S 'train.lambda=3,10,30'


@dataclass
class Lab:
    root: Path
    env: dict[str, str]

    def run(self, command: str, **kwargs) -> subprocess.CompletedProcess[str]:
        return sh(command, self.root, self.env, **kwargs)

    @property
    def client(self) -> mlflow.MlflowClient:
        return mlflow.MlflowClient(f"sqlite:///{self.root / 'mlflow.db'}")

    def runs(self) -> list[mlflow.entities.Run]:
        """The runs of the project's experiment, oldest first."""
        experiment = self.client.get_experiment_by_name(EXPERIMENT)
        return self.client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])

    def run_ref(self) -> str:
        return json.loads((self.root / "models/wae/mlflow_run.json").read_text())["run_id"]

    def params(self) -> dict:
        return yaml.safe_load((self.root / "params.yaml").read_text())


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, data_home_session: Path):
    root = tmp_path_factory.mktemp("experiments") / "project"
    root.mkdir()
    env = project_env(data_home_session)
    make_project(root, env)
    lab = Lab(root, env)
    yield lab
    stop_queue_workers(lab)


def stop_queue_workers(lab: Lab) -> None:
    """`dvc queue start` leaves idle workers behind: stop them, then wait for their processes to end."""
    workers = [p for p in psutil.process_iter(["cmdline", "cwd"]) if is_queue_worker(p, lab.root)]
    lab.run(["dvc", "queue", "stop"], check=False)
    _, alive = psutil.wait_procs(workers, timeout=60)
    for process in alive:
        process.kill()
    assert not alive, f"`dvc queue stop` left workers running: {[p.pid for p in alive]}"


def is_queue_worker(process: psutil.Process, root: Path) -> bool:
    cmdline = process.info["cmdline"] or []
    return process.info["cwd"] == str(root) and "queue-worker" in cmdline


def finite_scores(run: mlflow.entities.Run) -> dict[str, float]:
    scores = {k: run.data.metrics[k] for k in ("sample_fcd", "recon_fcd", "test_recon_mse", "latent_mmd")}
    assert all(math.isfinite(v) for v in scores.values()), scores
    return scores


def assert_complete(lab: Lab, run: mlflow.entities.Run) -> None:
    """What a user opening the run in the UI expects: finished, params, curves, pictures, scores."""
    client = lab.client
    assert run.info.status == "FINISHED"
    assert {"train.lambda", "train.epochs", "data.train_subset", "evaluate.seed"} <= run.data.params.keys()
    epochs = int(run.data.params["train.epochs"])
    curve = client.get_metric_history(run.info.run_id, "train_recon")
    assert [m.step for m in curve] == list(range(1, epochs + 1))
    finite_scores(run)
    pictures = {
        a.path for folder in ("sample", "evaluate") for a in client.list_artifacts(run.info.run_id, folder)
    }
    assert "sample/samples.png" in pictures and any(p.startswith("evaluate/") for p in pictures), pictures
    tags = run.data.tags
    for key in ("git.commit", "git.dirty", "params.digest", "data.digest", "reproduce", "decoder.registered"):
        assert tags.get(key), f"run {run.info.run_id} has no tag {key}"


def reproduce_command(run: mlflow.entities.Run) -> str:
    """The README's way back from `run` to its code, placeholders filled in from the run's tags."""
    tags = run.data.tags
    if "dvc.exp_name" in tags:
        template = command_starting(COMMANDS, "dvc exp apply")
        return template.replace("<dvc.exp_name>", tags["dvc.exp_name"])
    template = command_starting(COMMANDS, "git checkout")
    return template.replace("<git.commit>", tags["git.commit"]).replace("<run id>", run.info.run_id)


def test_dvc_repro_records_one_finished_run_with_everything(lab):
    result = lab.run(command_starting(COMMANDS, "dvc repro"))
    assert "Running stage 'evaluate'" in result.stdout

    (run,) = lab.runs()
    assert_complete(lab, run)
    assert run.info.run_id == lab.run_ref()
    head = lab.run(["git", "rev-parse", "HEAD"]).stdout.strip()
    assert run.data.tags["git.commit"] == head and run.data.tags["git.dirty"] == "false"
    assert float(run.data.params["train.lambda"]) == lab.params()["train"]["lambda"]
    version = lab.client.get_model_version_by_alias("wae-decoder", "current")
    assert version.run_id == run.info.run_id

    again = lab.run(["dvc", "repro"])
    assert "Running stage" not in again.stdout
    (same,) = lab.runs()
    assert same.info.end_time == run.info.end_time


def test_rerunning_only_evaluate_updates_the_same_run(lab):
    (before,) = lab.runs()
    write_params(lab.root, {"evaluate": {"seed": lab.params()["evaluate"]["seed"] + 1}})
    result = lab.run(["dvc", "repro"])
    assert "Running stage 'evaluate'" in result.stdout
    assert "Running stage 'train'" not in result.stdout

    (after,) = lab.runs()
    assert after.info.run_id == before.info.run_id and after.info.status == "FINISHED"
    history = lab.client.get_metric_history(after.info.run_id, "sample_fcd")
    assert len(history) == 2, "evaluate logged its scores a second time, into the same run"
    assert after.data.metrics["sample_fcd"] == history[-1].value


def test_editing_a_train_param_and_rerunning_makes_a_new_run(lab):
    (first,) = lab.runs()
    retrained = float(first.data.params["train.lambda"]) + 0.5  # a value never trained in this project
    write_params(lab.root, {"train": {"lambda": retrained}})
    lab.run(command_starting(COMMANDS, "dvc repro"))

    old, new = lab.runs()
    assert old.info.run_id == first.info.run_id and old.info.status == "FINISHED"
    assert_complete(lab, new)
    assert float(new.data.params["train.lambda"]) == retrained
    assert new.data.tags["git.dirty"] == "true", "params.yaml differs from the commit"
    assert new.info.run_id == lab.run_ref()
    assert lab.client.get_model_version_by_alias("wae-decoder", "current").run_id == new.info.run_id


def test_the_reproduce_tag_of_a_workspace_run_brings_back_its_params_and_model(lab):
    first, _ = lab.runs()
    command = reproduce_command(first)
    assert first.data.tags["reproduce"] == command, "the tag and the README give the same command"
    assert lab.params()["evaluate"]["seed"] != int(first.data.params["evaluate.seed"])  # changed since

    result = lab.run(command)
    assert "Running stage 'train'" not in result.stdout, "the model comes back from DVC's cache"
    assert lab.params()["train"]["lambda"] == float(first.data.params["train.lambda"])
    assert lab.params()["evaluate"]["seed"] == int(first.data.params["evaluate.seed"])
    assert lab.run_ref() == first.info.run_id
    assert len(lab.runs()) == 2


def test_a_queued_sweep_makes_one_finished_run_per_value_matching_dvc_exp_show(lab):
    before = {run.info.run_id for run in lab.runs()}
    assert lab.params()["train"]["lambda"] not in SWEEP_LAMBDAS, (
        "a sweep value equal to the default trains nothing"
    )
    queue = command_starting(COMMANDS, "dvc exp run --queue")
    assert lab.run(queue).stdout.count("Queued experiment") == len(SWEEP_LAMBDAS)
    with open(lab.root.parent / "queue-start.log", "w") as log:  # workers keep the output open
        subprocess.run(
            command_starting(COMMANDS, "dvc queue start"), shell=True, cwd=lab.root, env=lab.env,
            stdout=log, stderr=subprocess.STDOUT, check=True, timeout=120,
        )  # fmt: skip
    statuses = wait_for_queue(lab, timeout=1200)
    assert sorted(statuses.values()) == ["Success"] * len(SWEEP_LAMBDAS), statuses

    new = [run for run in lab.runs() if run.info.run_id not in before]
    assert len(new) == len(SWEEP_LAMBDAS), "one run per queued experiment, none lost"
    for run in new:
        assert_complete(lab, run)
        assert run.data.tags["dvc.exp_name"] in statuses
        assert run.data.tags["dvc.exp_baseline"]
    assert {float(run.data.params["train.lambda"]) for run in new} == SWEEP_LAMBDAS
    for name in statuses:
        log = lab.run(["dvc", "queue", "logs", name]).stdout
        assert "database is locked" not in log and "Traceback" not in log, log[-3000:]

    shown = lab.run(command_starting(COMMANDS, "dvc exp show")).stdout
    assert all(name in shown for name in statuses), shown
    experiments = exp_show(lab)
    for run in new:
        params, metrics = experiments[run.data.tags["dvc.exp_name"]]
        assert float(run.data.params["train.lambda"]) == params["train"]["lambda"]
        assert metrics and all(run.data.metrics[k] == pytest.approx(v, rel=1e-9) for k, v in metrics.items())


def test_dvc_exp_apply_from_a_run_tag_brings_back_that_experiment(lab):
    swept = [run for run in lab.runs() if "dvc.exp_name" in run.data.tags]
    run = max(swept, key=lambda r: float(r.data.params["train.lambda"]))
    command = reproduce_command(run)
    assert run.data.tags["reproduce"] == command
    count = len(lab.runs())

    result = lab.run(command)
    assert "Running stage 'train'" not in result.stdout
    assert lab.params()["train"]["lambda"] == float(run.data.params["train.lambda"])
    assert lab.run_ref() == run.info.run_id
    assert len(lab.runs()) == count


def test_mlflow_run_trains_one_new_model_in_one_run(lab):
    before = {run.info.run_id for run in lab.runs()}
    command = command_starting(COMMANDS, "mlflow run")
    lab.run(command)  # fails, among others, if MLflow raised "Changing param values is not allowed"

    (run,) = [run for run in lab.runs() if run.info.run_id not in before]
    assert_complete(lab, run)
    assert run.data.tags["mlflow.project.entryPoint"] == "main"
    assert run.data.params["lambda"] == "3" and run.data.params["train.lambda"] == "3.0"
    assert run.data.params["epochs"] == "2" and run.data.params["train.epochs"] == "2"
    assert run.data.params["penalty"] == "params.yaml", "a -P left out keeps the params.yaml value"
    assert lab.run_ref() == run.info.run_id
    assert run.data.tags["reproduce"] == reproduce_command(run)
    assert lab.params()["train"]["lambda"] == 3


def test_mlflow_ui_shows_every_run_with_its_pictures(lab, tmp_path):
    port = free_port()
    command = command_starting(COMMANDS, "mlflow ui").replace("--port 5000", f"--port {port}")
    assert f"--host {HOST}" in command
    ui = start_service(command, lab.root, lab.env, f"http://{HOST}:{port}", "/health", tmp_path / "ui.log")
    try:
        client = mlflow.MlflowClient(ui.url)
        (experiment,) = [e for e in client.search_experiments() if e.name == EXPERIMENT]
        shown = client.search_runs([experiment.experiment_id])
        assert {r.info.run_id for r in shown} == {r.info.run_id for r in lab.runs()}
        # the baseline, the retrained model, one per swept value and one from `mlflow run`
        assert len(shown) == 3 + len(SWEEP_LAMBDAS) and all(r.info.status == "FINISHED" for r in shown)
        assert all(math.isfinite(r.data.metrics["sample_fcd"]) for r in shown)
        picture = f"{ui.url}/get-artifact?path=sample/samples.png&run_uuid={shown[0].info.run_id}"
        with urllib.request.urlopen(picture, timeout=30) as response:
            assert response.read(8) == b"\x89PNG\r\n\x1a\n"
    finally:
        ui.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{ui.url}/health", timeout=5)


def wait_for_queue(lab: Lab, timeout: float) -> dict[str, str]:
    """Poll the README's `dvc queue status` until no experiment is queued or running."""
    command = command_starting(COMMANDS, "dvc queue status")
    deadline = time.monotonic() + timeout
    while True:
        table = lab.run(command).stdout
        statuses = dict(re.findall(r"^\w+\s+(\S+)\s+.*?\s(Queued|Running|Success|Failed)\s*$", table, re.M))
        if statuses and not {"Queued", "Running"} & set(statuses.values()):
            return statuses
        if time.monotonic() > deadline:
            raise AssertionError(f"the queue did not finish in {timeout:.0f} s:\n{table}")
        time.sleep(10)


def exp_show(lab: Lab) -> dict[str, tuple[dict, dict]]:
    """Experiment name -> (params.yaml, reports/metrics.json) as `dvc exp show` reports them."""
    found = {}
    for baseline in json.loads(lab.run(["dvc", "exp", "show", "--json"]).stdout):
        for experiment in baseline.get("experiments") or []:
            data = experiment["revs"][0]["data"]
            metrics = data["metrics"].get("reports/metrics.json", {}).get("data", {})
            found[experiment["name"]] = (data["params"]["params.yaml"]["data"], metrics)
    return found
