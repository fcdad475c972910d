"""DVC's own before/after comparison works on a committed pipeline, as in DVC's example project.

dvc.lock, the metrics and the training history are committed; data, models and samples stay in DVC's
cache. After an edit and a rerun, `dvc params diff`, `dvc metrics diff` and `dvc plots diff` compare
against the last commit, and a code change marks exactly the stages that run that code as changed.
"""

from __future__ import annotations

import csv
import io
import json

import pytest
import yaml
from project import sh, write_params

pytestmark = pytest.mark.slow


def test_a_committed_pipeline_compares_itself_with_an_edit_and_code_changes_rerun_what_they_touch(
    tiny_project,
):
    root, env = tiny_project
    sh(["dvc", "repro"], root, env, timeout=900)
    sh(["git", "add", "-A"], root, env)
    committed = set(sh(["git", "diff", "--cached", "--name-only"], root, env).stdout.split())
    # The small files travel with git; data, models and samples stay in DVC's cache.
    assert {"dvc.lock", "reports/metrics.json", "reports/train/history.csv"} <= committed
    assert not any(name.startswith(("data/", "models/", "samples/")) for name in committed), committed
    assert not any(name.endswith((".png", ".npy", ".npz", ".keras")) for name in committed), committed
    sh(["git", "commit", "-q", "-m", "baseline"], root, env)
    assert "up to date" in sh(["dvc", "status"], root, env).stdout.lower()

    # A code change reruns the stages that run that code and nothing else.
    layers = root / "src/wae/layers.py"
    original = layers.read_text()
    layers.write_text(original + "\n# an edit\n")
    status = sh(["dvc", "status"], root, env).stdout
    changed = {line.rstrip(":") for line in status.splitlines() if line and not line[0].isspace()}
    assert changed == {"train", "sample", "evaluate"}, status
    layers.write_text(original)

    # An edit of params.yaml, rerun: DVC compares the workspace with the last commit.
    before = json.loads((root / "reports/metrics.json").read_text())
    committed_lambda = yaml.safe_load((root / "params.yaml").read_text())["train"]["lambda"]
    write_params(root, {"train": {"lambda": 30.0}})
    sh(["dvc", "repro"], root, env, timeout=900)
    after = json.loads((root / "reports/metrics.json").read_text())

    params_diff = sh(["dvc", "params", "diff", "--json"], root, env).stdout
    lam = json.loads(params_diff)["params.yaml"]["train.lambda"]
    assert (lam["old"], lam["new"]) == (committed_lambda, 30.0)
    metrics_diff = json.loads(sh(["dvc", "metrics", "diff", "--json"], root, env).stdout)
    mse = metrics_diff["reports/metrics.json"]["test_recon_mse"]
    assert mse["old"] == pytest.approx(before["test_recon_mse"]) and mse["new"] == pytest.approx(
        after["test_recon_mse"]
    )
    shown = sh(["dvc", "metrics", "diff"], root, env).stdout
    assert "HEAD" in shown and "workspace" in shown and "failed to load" not in shown

    plots = json.loads(sh(["dvc", "plots", "diff", "--json"], root, env).stdout)["data"]
    (curves,) = plots["Training curves"]
    assert set(curves["revisions"]) == {"workspace", "HEAD"}
    assert {"HEAD", "workspace"} <= {image["revisions"][0] for image in plots["reports/sample/samples.png"]}

    # `dvc exp show` has the workspace row and the baseline row of the last commit, with its scores.
    table = sh(["dvc", "exp", "show", "--csv", "--no-pager"], root, env).stdout
    rows = {row["rev"]: row for row in csv.DictReader(io.StringIO(table))}
    assert {"workspace", "main"} <= set(rows), table
    assert rows["main"]["typ"] == "baseline"
    assert float(rows["main"]["test_recon_mse"]) == pytest.approx(before["test_recon_mse"])
    assert float(rows["workspace"]["test_recon_mse"]) == pytest.approx(after["test_recon_mse"])
