"""Studies as a user defines and reads them: members as validated overrides, and the report's numbers.

No training here: the scores are made up, so that the expected means and stds are known.
tests/test_study_pipeline.py runs a real study end to end.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from matplotlib.container import ErrorbarContainer
from project import make_project, project_env, sh

from wae import studies, study_report
from wae.atomic import save_figure
from wae.config import ConfigError, params_from_dict
from wae.studies import Plot, Study

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def base() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def test_the_lambda_study_trains_wae_mmd_at_six_lambdas_with_three_training_seeds(base):
    grid = studies.members(studies.get("lambda"), base)

    assert len(grid) == 18
    assert {(m.setting, m.seed) for m in grid} == {(lam, s) for lam in studies.LAMBDAS for s in (0, 1, 2)}
    for member in grid:
        assert member.params.train.penalty == "mmd"
        assert member.params.train.lambda_ == member.setting and member.params.train.seed == member.seed
        # Only the training seed varies: the data split, the judge and the scoring draws stay fixed.
        assert member.params.data == params_from_dict(base).data
        assert member.params.classifier == params_from_dict(base).classifier
        assert member.params.sample.seed == base["sample"]["seed"]
        assert member.params.evaluate.seed == base["evaluate"]["seed"]
    assert len({m.digest for m in grid}) == 18 and len({m.name for m in grid}) == 18
    assert grid[0].name.startswith("lambda-0.3-s0-")


def test_a_member_whose_params_do_not_validate_fails_naming_it(base):
    study = Study("pens", "penalties", "train.penalty", ("mmd", "no-such-penalty"), seeds=(0, 1))

    with pytest.raises(ConfigError, match=r"member train\.penalty=no-such-penalty seed 0: .*train\.penalty"):
        studies.members(study, base)


def test_an_optional_value_is_included_only_where_the_config_accepts_it(base):
    study = Study("pens", "penalties", "train.penalty", ("mmd",), seeds=(0,), optional_values=("gan", "nope"))

    assert [m.setting for m in studies.members(study, base)] == ["mmd", "gan"]


def test_overrides_of_one_value_apply_to_its_members_only(base):
    study = Study(
        "pens",
        "penalties",
        "train.penalty",
        ("mmd", "gan"),
        seeds=(0, 1),
        per_value={"gan": {"train.lambda": 1.0}},
    )

    lambdas = {(m.setting, m.params.train.lambda_) for m in studies.members(study, base)}
    assert lambdas == {("mmd", base["train"]["lambda"]), ("gan", 1.0)}


def test_members_that_would_train_the_same_model_are_refused(base):
    study = Study("evals", "scoring seeds", "evaluate.seed", (1, 2), seeds=(0,))

    with pytest.raises(ConfigError, match="train the same model"):
        studies.members(study, base)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "Bad Name"}, "name"),
        ({"vary": "train.seed"}, "vary"),
        ({"seeds": (0, 0)}, "seeds"),
        ({"values": ()}, "values"),
        ({"fixed": {"train.lambda": 1.0}}, "fixed"),
        ({"per_value": {5.0: {"train.epochs": 1}}}, "per_value"),
        ({"per_value": {1.0: {"train.seed": 1}}}, "per_value"),
        (
            {"values": ("mmd",), "vary": "train.penalty", "plots": (Plot("x.png", ("sample_fcd",), True),)},
            "plots",
        ),
    ],
)
def test_a_malformed_study_fails_naming_the_field(base, fields, message):
    study = Study(**{"name": "s", "description": "", "vary": "train.lambda", "values": (1.0, 3.0), **fields})

    with pytest.raises(ConfigError, match=f"study .*: {message} = "):
        studies.members(study, base)


def made_up_scores(grid):
    """Known scores per member: prior and GMM sample FCD, and the test MSE (a model score)."""
    scores = {}
    for member in grid:
        lam, seed = member.setting, member.seed
        scores[member.digest] = (
            f"run-{member.name}",
            {
                "sample_fcd": 20.0 + lam + seed,
                "gmm.sample_fcd": 10.0 + seed,
                "test_recon_mse": 0.01 * lam,
                "train_recon": 1.0,  # not a study metric: left out
            },
        )
    return scores


def test_the_summary_gives_mean_and_std_over_seeds_for_each_sampler_present(base):
    study = studies.adhoc("lams", "train.lambda", [1.0, 10.0], seeds=[0, 1, 2])
    grid = studies.members(study, base)
    values = study_report.member_values(study, grid, made_up_scores(grid))
    summary = study_report.summarise(study, values)

    row = summary[(summary["setting"] == 10.0) & (summary["key"] == "sample_fcd")].iloc[0]
    assert row["sampler"] == "prior" and row["n"] == 3
    assert row["mean"] == pytest.approx(31.0) and row["std"] == pytest.approx(statistics.stdev([30, 31, 32]))
    gmm = summary[(summary["setting"] == 1.0) & (summary["key"] == "gmm.sample_fcd")].iloc[0]
    assert gmm["sampler"] == "gmm" and gmm["metric"] == "sample_fcd" and gmm["mean"] == pytest.approx(11.0)
    mse = summary[summary["key"] == "test_recon_mse"]
    assert set(mse["sampler"]) == {study_report.MODEL} and mse["std"].tolist() == [0.0, 0.0]
    assert "train_recon" not in set(summary["key"])

    text = study_report.markdown(study, summary, len(grid), len(grid), [])
    assert "| train.lambda | sampler | n | sample_fcd |" in text
    assert "| 10 | prior | 3 | 31.0 ± 1.0 |" in text and "| 10 | gmm | 3 | 11.0 ± 1.0 |" in text
    assert "| train.lambda | n | test_recon_mse |" in text

    metrics = study_report.study_metrics(summary)
    assert metrics["sample_fcd/10/mean"] == pytest.approx(31.0)
    assert metrics["gmm.sample_fcd/1/std"] == pytest.approx(1.0)


def test_one_seed_gives_a_mean_without_a_spread(base):
    study = studies.adhoc("one", "train.lambda", [1.0], seeds=[4])
    grid = studies.members(study, base)
    summary = study_report.summarise(study, study_report.member_values(study, grid, made_up_scores(grid)))

    assert summary["n"].tolist() == [1, 1, 1] and summary["std"].isna().all()
    assert "| 1 | prior | 1 | 25 |" in study_report.markdown(study, summary, 1, 1, [])
    assert not any(key.endswith("/std") for key in study_report.study_metrics(summary))


@pytest.mark.parametrize(
    ("mean", "std", "text"),
    [(25.123, 0.43, "25.12 ± 0.43"), (0.012913, 0.00031, "0.01291 ± 0.00031"), (125.4, 12.2, "125 ± 12"),
     (0.9, 0.0, "0.9 ± 0"), (3.14159, math.nan, "3.142")],
)  # fmt: skip
def test_mean_and_std_are_written_to_the_precision_of_the_spread(mean, std, text):
    assert study_report.mean_pm_std(mean, std) == text


def test_the_plots_draw_error_bars_per_setting_or_against_a_log_axis(base, tmp_path):
    lambdas = studies.members(studies.get("lambda"), base)
    values = study_report.member_values(studies.get("lambda"), lambdas, made_up_scores(lambdas))
    summary = study_report.summarise(studies.get("lambda"), values)
    figures = study_report.figures(studies.get("lambda"), summary, values)

    assert set(figures) == {"fcd_mse_vs_lambda.png", "metrics.png"}
    fcd, mse = figures["fcd_mse_vs_lambda.png"].axes
    assert (
        fcd.get_xscale() == "log" and fcd.get_title() == "sample_fcd" and mse.get_title() == "test_recon_mse"
    )
    assert sum(isinstance(c, ErrorbarContainer) for c in fcd.containers) == 2  # prior and gmm
    save_figure(tmp_path / "curves.png", figures["metrics.png"])
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    pens = studies.adhoc("pens", "train.penalty", ["mmd", "gan"], seeds=[0, 1])
    grid = studies.members(pens, base)
    scores = {m.digest: (m.name, {"sample_fcd": 20.0 + m.seed, "probe_accuracy": 0.9}) for m in grid}
    values = study_report.member_values(pens, grid, scores)
    (bars,) = study_report.figures(pens, study_report.summarise(pens, values), values).values()
    panel = bars.axes[0]
    assert [t.get_text() for t in panel.get_xticklabels()] == ["mmd", "gan"]
    assert [p.get_height() for p in panel.patches] == pytest.approx([20.5, 20.5])


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, data_home_session: Path) -> tuple[Path, dict[str, str]]:
    """One committed copy of the project for the command-line cases: none of them may write anything."""
    env = project_env(data_home_session)
    root = tmp_path_factory.mktemp("studies") / "project"
    root.mkdir()
    return make_project(root, env), env


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "nope"], "unknown study 'nope'; choose one of: regularisers, lambda"),
        (["run", "mine", "--vary", "train.lamda=1,2"], "unknown key train.lamda; did you mean train.lambda?"),
        (["run", "mine", "--vary", "train.lambda=1,2", "--seeds", "0,0"], "seeds = [0, 0] is not allowed"),
        (["run", "mine", "--vary", "train.lambda=-1"], "train.lambda = -1.0 is not allowed"),
        (["run", "lambda", "--jobs", "0"], "--jobs 0: expected a number of experiments >= 1"),
        (["report", "lambda", "--seeds", "0"], "a named study takes none"),
    ],
)
def test_a_bad_study_fails_before_any_work_naming_what_is_wrong(project, args, message):
    root, env = project
    result = sh([sys.executable, "scripts/study.py", *args], root, env, check=False)

    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not (root / "mlflow.db").exists() and not (root / "reports").exists()
    assert not (root / ".dvc/tmp/exps").exists(), "nothing was queued"


def test_the_report_folder_is_replaced_as_a_whole_with_tables_definition_and_plots(base, tmp_path):
    study = studies.adhoc("lams", "train.lambda", [1.0, 10.0], seeds=[0, 1])
    grid = studies.members(study, base)
    scores = made_up_scores(grid[:3])  # the last member has no run yet
    folder = tmp_path / "reports/studies/lams"
    folder.mkdir(parents=True)
    (folder / "old.png").write_bytes(b"from an earlier report")

    report = study_report.build(study, grid, scores)
    study_report.write(folder, report)

    assert sorted(p.name for p in folder.iterdir()) == [
        "members.csv", "metrics.png", "study.json", "summary.csv", "summary.md",
    ]  # fmt: skip
    assert [m.name for m in report.missing] == [grid[3].name]
    assert f"Missing (not finished, or failed): `{grid[3].name}`" in (folder / "summary.md").read_text()
    members = pd.read_csv(folder / "members.csv")
    assert list(members["run_id"]) == [f"run-{m.name}" for m in grid[:3]]
    assert list(members["train.lambda"]) == [1.0, 1.0, 10.0] and "gmm.sample_fcd" in members
    definition = json.loads((folder / "study.json").read_text())
    assert {m["name"]: m["run_id"] for m in definition["members"]}[grid[3].name] is None
    assert definition["members"][0]["overrides"]["train.seed"] in (0, 1)
    assert not list(tmp_path.glob("reports/studies/.lams*")), "no temporary folder left behind"
