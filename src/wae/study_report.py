"""A study's results: each member's scores, summarised as mean ± std over seeds, as tables.

The scores come from the members' MLflow runs (scripts/study.py looks them up). Which metrics a
run holds is discovered, not assumed: a study names its metrics unprefixed (`sample_fcd`), and
every variant logged under a sampler's prefix (`gmm.sample_fcd`) is reported beside the prior's.
Scores of samples (`sample_*`, or any metric that has a prefixed variant) are reported per
sampler; the others (reconstruction, latent fit) belong to the model.

`build` makes the report from the members' scores and `write` saves it as one folder:
summary.md, summary.csv, members.csv, study.json and the study's plots.

Frames (pandas, long format):
- values:  one row per member and metric key: order, setting, seed, run_id, sampler, metric, key, value;
- summary: one row per setting and metric key: order, setting, sampler, metric, key, mean, std, n.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from wae.atomic import atomic_path, save_figure
from wae.studies import Member, Study, slug

PRIOR = "prior"  # the sampler whose scores are logged unprefixed
MODEL = ""  # the "sampler" of scores that do not depend on one (reconstruction, latent fit)


def split_key(key: str, metrics: Sequence[str]) -> tuple[str, str] | None:
    """`gmm.sample_fcd` -> ("gmm", "sample_fcd"); `sample_fcd` -> ("", "sample_fcd"); None when
    the key is none of `metrics`, prefixed or not."""
    if key in metrics:
        return "", key
    for metric in metrics:
        if key.endswith("." + metric):
            return key[: -len(metric) - 1], metric
    return None


def member_values(
    study: Study, found: Sequence[Member], scores: Mapping[str, tuple[str, Mapping[str, float]]]
) -> pd.DataFrame:
    """The long frame of each found member's scores; `scores` maps a member's digest to its run id
    and the run's metrics."""
    settings = _settings(study, found)
    rows = []
    for member in found:
        run_id, metrics = scores[member.digest]
        for key, value in metrics.items():
            parts = split_key(key, study.metrics)
            if parts is not None and math.isfinite(value):
                rows.append(
                    {
                        "order": settings.index(member.setting),
                        "setting": member.setting,
                        "seed": member.seed,
                        "run_id": run_id,
                        "sampler": parts[0],
                        "metric": parts[1],
                        "key": key,
                        "value": float(value),
                    }
                )
    columns = ["order", "setting", "seed", "run_id", "sampler", "metric", "key", "value"]
    values = pd.DataFrame(rows, columns=columns)
    # A metric with a sampler's variant is a score of samples: its unprefixed form is the prior's.
    sampled = set(values.loc[values["sampler"] != MODEL, "metric"]) | {
        m for m in values["metric"] if m.startswith("sample_")
    }
    prior = (values["sampler"] == MODEL) & values["metric"].isin(sampled)
    values.loc[prior, "sampler"] = PRIOR
    return values.sort_values(["order", "seed", "key"]).reset_index(drop=True)


def _settings(study: Study, found: Sequence[Member]) -> list:
    ordered = list(study.values) + list(study.optional_values)
    return ordered + [m.setting for m in found if m.setting not in ordered]


def _sampler_rank(sampler: str) -> tuple[bool, bool, str]:
    """The model's scores first, then the prior's, then other samplers by name."""
    return sampler != MODEL, sampler != PRIOR, sampler


def summarise(study: Study, values: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample std (n - 1; NaN for one seed) and number of seeds per setting and metric key."""
    summary = (
        values.groupby(["order", "sampler", "metric", "key"])["value"]
        .agg(mean="mean", std="std", n="count")
        .reset_index()
    )
    setting_of = dict(zip(values["order"], values["setting"], strict=False))
    summary.insert(1, "setting", summary["order"].map(setting_of))
    metric_rank = {m: i for i, m in enumerate(study.metrics)}
    rank = [
        (o, metric_rank[m], _sampler_rank(s))
        for o, m, s in summary[["order", "metric", "sampler"]].itertuples(index=False)
    ]
    summary = summary.iloc[sorted(range(len(summary)), key=rank.__getitem__)]
    return summary.reset_index(drop=True)


def mean_pm_std(mean: float, std: float) -> str:
    """`25.12 ± 0.43`: the std to two significant digits, the mean to the same decimal place."""
    if not math.isfinite(std):
        return f"{mean:.4g}"
    if std == 0:
        return f"{mean:.4g} ± 0"
    decimals = min(max(0, 1 - math.floor(math.log10(std))), 8)
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _setting_text(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def markdown(study: Study, summary: pd.DataFrame, found: int, expected: int, missing: Sequence[str]) -> str:
    """The report as Markdown: one table of sample scores (a row per setting and sampler) and one of
    the model's scores (a row per setting), each cell mean ± std over the seeds found (n)."""
    seeds = ", ".join(map(str, study.seeds))
    lines = [
        f"# Study `{study.name}`",
        "",
        f"{study.description}.",
        "",
        f"Mean ± std (n - 1) over training seeds {seeds}; n is the number of seeds found. "
        f"Members found: {found} of {expected}.",
    ]
    if missing:
        lines += ["", "Missing (not finished, or failed): " + ", ".join(f"`{m}`" for m in missing) + "."]
    sections = [
        ("Samples", summary[summary["sampler"] != MODEL], True),
        ("Model", summary[summary["sampler"] == MODEL], False),
    ]
    for title, part, per_sampler in sections:
        if part.empty:
            continue
        metrics = [m for m in study.metrics if m in set(part["metric"])]
        header = [study.vary] + (["sampler"] if per_sampler else []) + ["n", *metrics]
        rows = []
        for (_, sampler), group in part.groupby(["order", "sampler"], sort=False):
            cells = {r.metric: mean_pm_std(r.mean, r.std) for r in group.itertuples()}
            first = group.iloc[0]
            rows.append(
                [_setting_text(first["setting"])]
                + ([sampler] if per_sampler else [])
                + [str(int(group["n"].max()))]
                + [cells.get(m, "–") for m in metrics]
            )
        lines += ["", f"## {title}", "", _table(header, rows)]
    return "\n".join(lines) + "\n"


def study_metrics(summary: pd.DataFrame) -> dict[str, float]:
    """The summary as flat MLflow metrics: `<key>/<setting>/mean` and `.../std` (std left out for one seed)."""
    metrics = {}
    for row in summary.itertuples():
        name = f"{row.key}/{slug(row.setting)}"
        metrics[f"{name}/mean"] = float(row.mean)
        if math.isfinite(row.std):
            metrics[f"{name}/std"] = float(row.std)
    return metrics


def figures(study: Study, summary: pd.DataFrame, values: pd.DataFrame) -> dict[str, Figure]:
    """The study's plots (Study.plots) by file name; a plot none of whose metrics any run has is left out."""
    from wae import plots

    drawn = {}
    for plot in study.plots:
        metrics = [m for m in plot.metrics if m in set(summary["metric"])]
        if not metrics:
            continue
        title = f"Study {study.name}: mean ± std over training seeds"
        if plot.against:
            drawn[plot.file] = plots.study_curves(summary, values, metrics, title, study.vary, plot.log_x)
        else:
            drawn[plot.file] = plots.study_bars(summary, values, metrics, title)
    return drawn


@dataclass(frozen=True)
class Report:
    study: Study
    found: list[Member]  # members with scores
    missing: list[Member]  # members without
    values: pd.DataFrame
    summary: pd.DataFrame
    markdown: str
    run_ids: dict[str, str]  # member digest -> run id, for the members found


def build(
    study: Study, grid: Sequence[Member], scores: Mapping[str, tuple[str, Mapping[str, float]]]
) -> Report:
    """The report of the members of `grid` that `scores` (digest -> run id and metrics) holds."""
    found = [m for m in grid if m.digest in scores]
    missing = [m for m in grid if m.digest not in scores]
    values = member_values(study, found, scores)
    summary = summarise(study, values)
    text = markdown(study, summary, len(found), len(grid), [m.name for m in missing])
    run_ids = {m.digest: scores[m.digest][0] for m in found}
    return Report(study, found, missing, values, summary, text, run_ids)


def definition(report: Report) -> dict[str, Any]:
    """study.json: the study and each member's overrides, digest and run (None when missing)."""
    study = report.study
    return {
        "name": study.name,
        "description": study.description,
        "vary": study.vary,
        "seeds": list(study.seeds),
        "fixed": dict(study.fixed),
        "per_value": {str(k): dict(v) for k, v in study.per_value.items()},
        "metrics": list(study.metrics),
        "members": [
            {
                "name": m.name,
                "overrides": m.overrides,
                "scores_digest": m.digest,
                "run_id": report.run_ids.get(m.digest),
            }
            for m in sorted(report.found + report.missing, key=lambda m: m.name)
        ],
    }


def write(folder: str | Path, report: Report) -> None:
    """Write the report into `folder`, replacing the whole folder at once (no half-written report)."""
    vary = report.study.vary
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        (tmp / "summary.md").write_text(report.markdown)
        summary = report.summary.drop(columns="order").rename(columns={"setting": vary})
        summary.to_csv(tmp / "summary.csv", index=False)
        wide = report.values.pivot_table(
            index=["order", "setting", "seed", "run_id"], columns="key", values="value"
        )
        keys = list(dict.fromkeys(report.summary["key"]))  # in the study's order of metrics, then samplers
        wide = wide.reset_index()[["setting", "seed", "run_id", *keys]].rename(columns={"setting": vary})
        wide.columns.name = None
        wide.to_csv(tmp / "members.csv", index=False)
        (tmp / "study.json").write_text(json.dumps(definition(report), indent=2) + "\n")
        for name, figure in figures(report.study, report.summary, report.values).items():
            save_figure(tmp / name, figure, dpi=100)
