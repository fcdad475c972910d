"""MLproject: every entry point calls scripts/mlproject_run.py, which turns -P values into `dvc exp run -S`.

The whole pipeline through `mlflow run` (entry point `main`) is run in tests/test_experiments.py; here, the
runner's mapping, and one stage entry point through a real `mlflow run`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import yaml
from project import sh

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("mlproject_run", REPO / "scripts/mlproject_run.py")
runner = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(runner)
STAGES = list(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])


def test_given_values_become_overrides_and_left_out_ones_keep_params_yaml():
    pairs = ["train.epochs=5", "train.lambda=params.yaml", "train.penalty=gan", "train.lr=1e-3"]
    overrides = ["-S", "train.epochs=5", "-S", "train.penalty=gan", "-S", "train.lr=1e-3"]
    assert runner.commands("main", pairs, STAGES) == [
        ["dvc", "repro", "classifier"],
        ["dvc", "exp", "run", "--force", "--downstream", "train", *overrides],
    ]
    assert runner.commands("sample", ["sample.seed=params.yaml"], STAGES) == [
        ["dvc", "exp", "run", "--single-item", "--force", "sample"]
    ]


def test_every_mlproject_entry_point_calls_the_runner_with_its_parameters():
    entry_points = yaml.safe_load((REPO / "MLproject").read_text())["entry_points"]
    assert set(entry_points) == {"main", *STAGES}
    for name, entry in entry_points.items():
        words = entry["command"].split()
        assert words[:3] == ["python", "scripts/mlproject_run.py", name], entry["command"]
        assert sorted(w.split("=")[1] for w in words[3:]) == sorted(f"{{{p}}}" for p in entry["parameters"])
        assert all(p["default"] == runner.KEEP for p in entry["parameters"].values())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["evalute", "evaluate.seed=3"], "unknown entry point 'evalute'; expected main or one of prepare"),
        (["train", "lambda=3"], "'lambda=3' is not SECTION.KEY=VALUE"),
    ],
)
def test_a_bad_entry_point_or_pair_is_named_and_nothing_runs(argv, message, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    assert runner.main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_a_stage_entry_point_applies_its_parameter_with_dvc(tiny_project):
    root, env = tiny_project
    command = "mlflow run . -e prepare --env-manager local --experiment-name wae-mnist -P train_subset=2000"
    result = sh(command, root, env)
    assert "+ dvc exp run --single-item --force prepare -S data.train_subset=2000" in result.stdout
    params = yaml.safe_load((root / "params.yaml").read_text())
    assert params["data"]["train_subset"] == 2000 and params["data"]["val_size"] == 500, "others kept"
    with np.load(root / "data/prepared/mnist.npz") as prepared:
        assert len(prepared["x_train"]) == 2000
