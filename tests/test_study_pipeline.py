"""A study end to end, as a user runs it, in a throw-away copy of the project: `make study` queues a
two-member study of tiny runs and is interrupted; run again it queues nothing twice, waits for DVC's queue
and reports; a third run queues nothing; `make study-report` reuses the study's run. A study whose DVC
queue loses its worker while members wait starts the queue again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pandas as pd
import psutil
import pytest
from project import make_project, project_env, sh

pytestmark = pytest.mark.slow

VENV = Path(sys.executable).parent.parent
# One setting, two training seeds: the smallest study with a spread.
STUDY = 'STUDY=tiny STUDY_ARGS="--vary train.lambda=10 --seeds 0,1"'
EXPERIMENT = "wae-mnist"


def make(target: str, jobs: int = 2) -> str:
    """`make <target>` with this virtualenv, which make must not try to rebuild (-o: take it as up to date)."""
    (stamp,) = VENV.glob(".installed-*")
    tf = stamp.name.removeprefix(".installed-")
    return f"make {target} {STUDY} JOBS={jobs} VENV={VENV} TF={tf} -o {stamp}"


@pytest.fixture
def lab(tmp_path: Path, data_home_session: Path):
    env = project_env(data_home_session)
    root = make_project(tmp_path / "project", env, {"train": {"epochs": 1}})
    yield root, env
    stop_queue_workers(root, env)


def stop_queue_workers(root: Path, env: dict[str, str]) -> None:
    workers = [p for p in psutil.process_iter(["cmdline", "cwd"]) if is_queue_worker(p, root)]
    sh(["dvc", "queue", "stop", "--kill"], root, env, check=False)  # a failed test may leave members running
    _, alive = psutil.wait_procs(workers, timeout=60)
    for process in alive:
        process.kill()


def is_queue_worker(process: psutil.Process, root: Path) -> bool:
    return process.info["cwd"] == str(root) and "queue-worker" in (process.info["cmdline"] or [])


def runs(root: Path) -> list[mlflow.entities.Run]:
    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return client.search_runs([experiment.experiment_id]) if experiment else []


def start_study(root: Path, env: dict[str, str], log: Path, jobs: int = 2) -> subprocess.Popen:
    """`make study` in the background, in its own process group, its output going to `log`."""
    with open(log, "w") as out:
        return subprocess.Popen(
            make("study", jobs), shell=True, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def wait_for_output(make_study: subprocess.Popen, log: Path, text: str) -> None:
    deadline = time.monotonic() + 1200
    while text not in log.read_text():
        assert make_study.poll() is None, log.read_text()[-5000:]
        assert time.monotonic() < deadline, log.read_text()[-5000:]
        time.sleep(1)


def interrupt_once_running(root: Path, env: dict[str, str], log: Path) -> str:
    """Start `make study`, press Ctrl-C once its members run (SIGINT to its process group), return its output."""
    make_study = start_study(root, env, log)
    wait_for_output(make_study, log, " running (")
    os.killpg(make_study.pid, signal.SIGINT)
    assert make_study.wait(timeout=60) != 0
    return log.read_text()


def test_a_study_queues_its_members_once_resumes_after_ctrl_c_and_reports_mean_and_std(lab, tmp_path):
    root, env = lab
    first = interrupt_once_running(root, env, tmp_path / "first.log")
    assert "0 done, 0 already in DVC's queue, 2 to queue" in first
    assert first.count("queued tiny-10-s") == 2
    assert "interrupted: the queue keeps running" in first

    second = sh(make("study"), root, env, timeout=1800).stdout  # minutes, unless the machine is shared
    assert "2 in all, " in second and ", 0 to queue" in second, second[-3000:]
    assert "queued tiny" not in second

    # The report: mean ± std over the two seeds, for every score the runs hold.
    report = root / "reports/studies/tiny"
    text = (report / "summary.md").read_text()
    assert "Members found: 2 of 2" in text and "| train.lambda | sampler | n | sample_fcd |" in text
    summary = pd.read_csv(report / "summary.csv")
    fcd = summary[summary["key"] == "sample_fcd"].iloc[0]
    assert fcd["train.lambda"] == 10 and fcd["sampler"] == "prior" and fcd["n"] == 2 and fcd["std"] >= 0
    assert f"| 10 | prior | 2 | {fcd_cell(fcd)} |" in text
    members = pd.read_csv(report / "members.csv")
    assert sorted(members["seed"]) == [0, 1] and members["sample_fcd"].mean() == pytest.approx(fcd["mean"])
    for picture in ("metrics.png",):
        assert (report / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # MLflow: the study's own run, holding the report, with the two members as its children.
    (study,) = [r for r in runs(root) if r.data.tags.get("study") == "tiny"]
    assert study.info.status == "FINISHED" and study.info.run_name == "study-tiny"
    assert study.data.metrics["sample_fcd/10/mean"] == pytest.approx(fcd["mean"])
    assert study.data.tags["mlflow.note.content"] == text
    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    assert {"summary.md", "summary.csv", "members.csv", "metrics.png"} <= {
        a.path for a in client.list_artifacts(study.info.run_id)
    }
    children = [r for r in runs(root) if r.data.tags.get("mlflow.parentRunId") == study.info.run_id]
    assert sorted(int(r.data.params["train.seed"]) for r in children) == [0, 1]
    assert {r.data.params["train.lambda"] for r in children} == {"10.0"}
    assert all(
        r.info.status == "FINISHED" and r.data.tags["study.tiny"].startswith("tiny-10-s") for r in children
    )
    assert {r.info.run_id for r in children} == set(members["run_id"])
    for run in children:  # two members wrote to one SQLite store at the same time
        log = sh(["dvc", "queue", "logs", run.data.tags["study.tiny"]], root, env).stdout
        assert "database is locked" not in log and "Traceback" not in log, log[-3000:]

    # Run again: everything is done, nothing is queued or trained, the same study run is reused.
    count = len(runs(root))
    third = sh(make("study"), root, env, timeout=600).stdout
    assert "2 done, 0 already in DVC's queue, 0 to queue" in third and "queued tiny" not in third
    assert sh(["dvc", "queue", "status"], root, env).stdout.count("tiny-10-s") == 2
    sh(make("study-report"), root, env, timeout=600)
    assert len(runs(root)) == count
    history = client.get_metric_history(study.info.run_id, "sample_fcd/10/mean")
    assert len(history) == 3, "each report logged into the one study run"


def fcd_cell(row: pd.Series) -> str:
    from wae.study_report import mean_pm_std

    return mean_pm_std(row["mean"], row["std"])


def test_a_study_whose_queue_has_lost_its_worker_starts_it_again(lab, tmp_path):
    """DVC's worker leaves now and then with members still queued, or a user stops it: the waiting
    study starts the queue again instead of waiting for ever."""
    root, env = lab
    log = tmp_path / "study.log"
    make_study = start_study(root, env, log, jobs=1)  # one worker: the second member waits in the queue
    try:
        wait_for_output(make_study, log, "1 queued, 1 running (")
        # The worker finishes the member it runs, then leaves; the other member stays queued.
        sh(["dvc", "queue", "stop"], root, env)
        assert make_study.wait(timeout=1200) == 0, log.read_text()[-5000:]
    finally:
        if make_study.poll() is None:
            os.killpg(make_study.pid, signal.SIGKILL)
    output = log.read_text()
    assert "members are queued and none runs: DVC's queue has no worker; starting it" in output
    assert "2 success (" in output
    assert "Members found: 2 of 2" in (root / "reports/studies/tiny/summary.md").read_text()
