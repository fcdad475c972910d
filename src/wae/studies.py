"""Named studies: one param varied over a few values, each trained with several seeds.

A single run per setting cannot tell a real difference from seed noise. A study trains every
setting with each of `seeds` (`train.seed`) and reports each metric as mean ± std over them.
Studies are defined the way presets are (wae.presets): plain values in this module.

    python scripts/study.py run regularisers      # or: make study STUDY=regularisers

Only the training seed varies. The data split (`data.seed`), the judge (`classifier.seed`) and
the draws of `sample` and `evaluate` stay fixed, so that every member is measured with the same
instrument: the judge is trained once and restored from DVC's run cache for all members, and
the spread over seeds is the spread of the trained models, not of the ruler.

The library knows nothing of DVC: `members` turns a study into validated param overrides, one set
per member, which scripts/study.py queues as DVC experiments. A member is found again in MLflow
by the digest of the params its scores depend on (`Params.scores_digest`), which `evaluate`
tags on the run it scores (`scores.params_digest`).
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from wae.config import ConfigError, Params, params_from_dict

SEED_KEY = "train.seed"
SEEDS = (0, 1, 2)

# The headline scores of `evaluate`, by their unprefixed (prior) name. A sampler other than the
# prior logs the same scores under its prefix (`gmm.sample_fcd`): the report finds every variant
# present in the runs, and skips a name that no run has.
MAIN_METRICS = (
    "sample_fcd",
    "sample_precision",
    "sample_recall",
    "recon_fcd",
    "test_recon_mse",
    "latent_mmd",
    "probe_accuracy",
)


@dataclass(frozen=True)
class Plot:
    """One figure of a study's report: a panel per metric, error bars of ± one std over seeds.

    `against=False` draws one group of bars per setting (for names such as regularisers);
    `against=True` draws each metric against the varied value, on a log axis if `log_x`.
    """

    file: str
    metrics: tuple[str, ...]
    against: bool = False
    log_x: bool = False


@dataclass(frozen=True)
class Study:
    name: str
    description: str
    vary: str  # the param compared, a dotted params.yaml key
    values: tuple[Any, ...]
    seeds: tuple[int, ...] = SEEDS
    fixed: Mapping[str, Any] = field(default_factory=dict)  # overrides shared by every member
    # Overrides for the members of one value only (say a regulariser's own λ), by value.
    per_value: Mapping[Any, Mapping[str, Any]] = field(default_factory=dict)
    # Values included only where params validation accepts them (a regulariser that may not exist).
    optional_values: tuple[Any, ...] = ()
    metrics: tuple[str, ...] = MAIN_METRICS
    plots: tuple[Plot, ...] = ()

    def validate(self) -> None:
        """Fail naming the field, the value and what is allowed."""
        values = self.values + self.optional_values

        def check(ok: bool, key: str, value: Any, allowed: str) -> None:
            if not ok:
                raise ConfigError(f"study {self.name}: {key} = {value!r} is not allowed; expected {allowed}")

        name_ok = re.fullmatch(r"[a-z0-9][a-z0-9_-]*", self.name) is not None
        check(name_ok, "name", self.name, "lower-case letters, digits, '-' and '_' (it names files)")
        check(
            "." in self.vary and self.vary != SEED_KEY,
            "vary",
            self.vary,
            f"a dotted key other than {SEED_KEY}",
        )
        distinct_values = len(set(map(repr, values))) == len(values)
        check(len(values) > 0 and distinct_values, "values", list(values), "at least one value, no repeats")
        integers = all(isinstance(s, int) and not isinstance(s, bool) for s in self.seeds)
        distinct_seeds = len(set(self.seeds)) == len(self.seeds)
        check(
            len(self.seeds) > 0 and integers and distinct_seeds,
            "seeds",
            list(self.seeds),
            "at least one integer seed, no repeats",
        )
        clash = {self.vary, SEED_KEY} & set(self.fixed)
        check(not clash, "fixed", dict(self.fixed), f"no value for {' or '.join(sorted(clash))}")
        for value, overrides in self.per_value.items():
            clash = {self.vary, SEED_KEY} & set(overrides)
            check(value in values, "per_value", value, f"one of the values {list(values)}")
            check(not clash, "per_value", dict(overrides), f"no value for {' or '.join(sorted(clash))}")
        check(len(self.metrics) > 0, "metrics", list(self.metrics), "at least one metric")
        for plot in self.plots:
            check(set(plot.metrics) <= set(self.metrics), "plots", plot.file, "metrics among the study's")
            numbers = all(_is_number(v) for v in values)
            check(
                numbers or not plot.against,
                "plots",
                plot.file,
                f"bars: {self.vary} has values that are not numbers",
            )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# Penalties compared by `regularisers`, each with params.yaml's defaults (architecture, λ, ...), except
# two whose λ means something else. `kl`: λ is the VAE's β, and with this project's cost (0.05 x squared
# L2 per digit) the default λ = 1 is a β that collapses the posterior (2026-11-26, full data: test MSE
# 0.067, the mean digit for every code); 0.01 (a Gaussian decoder of variance 0.1 per pixel) keeps all
# 12 code dimensions active with codes that follow N(0, I), and gave the best prior samples of 0.001-0.1
# (docs/studies.md). `none`: no latent penalty, so λ = 0 says so.
REGULARISERS = ("mmd", "gan", "swd", "kl", "none")
REGULARISER_OVERRIDES = {"kl": {"train.lambda": 0.01}, "none": {"train.lambda": 0.0}}
LAMBDAS = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)

STUDIES: dict[str, Study] = {
    study.name: study
    for study in (
        Study(
            name="regularisers",
            description="WAE-MMD, WAE-GAN, SWAE, VAE and a plain auto-encoder (and RAE where it exists), "
            "each with the default architecture and params, over 3 training seeds",
            vary="train.penalty",
            values=REGULARISERS,
            optional_values=("rae",),
            per_value=REGULARISER_OVERRIDES,
            plots=(Plot("metrics.png", MAIN_METRICS),),
        ),
        Study(
            name="lambda",
            description="WAE-MMD with λ from 0.3 to 100 over 3 training seeds: reconstruction against "
            "prior fit",
            vary="train.lambda",
            values=LAMBDAS,
            fixed={"train.penalty": "mmd"},
            plots=(
                Plot("fcd_mse_vs_lambda.png", ("sample_fcd", "test_recon_mse"), against=True, log_x=True),
                Plot("metrics.png", MAIN_METRICS, against=True, log_x=True),
            ),
        ),
    )
}


@dataclass(frozen=True)
class Member:
    """One trained model of a study: a value of the varied param and a seed."""

    study: str
    setting: Any
    seed: int
    overrides: dict[str, Any]  # dotted params key -> value, applied to params.yaml
    params: Params  # the member's complete, validated params

    @property
    def digest(self) -> str:
        """What finds the member's run again: `evaluate` tags it as `scores.params_digest`."""
        return self.params.scores_digest()

    @property
    def name(self) -> str:
        """The name of its DVC experiment, `lambda-0.3-s1-<digest>`: the digest keeps members of other
        params (after an edit of params.yaml) apart, so each run's `dvc exp apply` tag stays true."""
        return f"{self.study}-{slug(self.setting)}-s{self.seed}-{self.digest[:6]}"


def slug(value: Any) -> str:
    """A value as a name fragment: letters, digits, '.', '_' and '-' (valid in git refs and metric names)."""
    text = f"{value:g}" if _is_number(value) else str(value)
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "value"


def apply_overrides(raw: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """params.yaml's mapping with dotted `section.key` overrides applied (as `dvc exp run -S`)."""
    merged = copy.deepcopy(dict(raw))
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        if not name:
            raise ConfigError(f"params: override {key!r} is not a dotted key such as train.lambda")
        if not isinstance(merged.get(section, {}), dict):
            raise ConfigError(f"params: {section} must be a mapping of keys to values")
        merged.setdefault(section, {})[name] = value
    return merged


def members(study: Study, base: Mapping[str, Any]) -> list[Member]:
    """Every member of `study` as validated overrides of the parsed params.yaml `base`.

    Fails before any work, naming the member and the bad value, when a member's params do not
    validate (a regulariser that does not exist yet, a typo in a key) or when two members would
    train the same model (they would share one run: vary a param that changes training).
    """
    study.validate()
    settings = list(study.values) + [v for v in study.optional_values if _accepted(study, base, v)]
    found: list[Member] = []
    trained: dict[str, Member] = {}
    for setting in settings:
        for seed in study.seeds:
            overrides = {
                study.vary: setting,
                **study.fixed,
                **study.per_value.get(setting, {}),
                SEED_KEY: seed,
            }
            try:
                params = params_from_dict(apply_overrides(base, overrides))
            except ConfigError as err:
                raise ConfigError(
                    f"study {study.name}, member {study.vary}={setting} seed {seed}: {err}"
                ) from None
            member = Member(study.name, setting, seed, overrides, params)
            key = params.digest("data", "classifier", "train")
            if key in trained:
                raise ConfigError(
                    f"study {study.name}: members {trained[key].name} and {member.name} train the same model; "
                    f"vary a param that changes training (data, classifier or train), not {study.vary}"
                )
            trained[key] = member
            found.append(member)
    return found


def _accepted(study: Study, base: Mapping[str, Any], value: Any) -> bool:
    try:
        params_from_dict(
            apply_overrides(base, {study.vary: value, **study.fixed, **study.per_value.get(value, {})})
        )
    except ConfigError:
        return False
    return True


def get(name: str) -> Study:
    if name not in STUDIES:
        raise ConfigError(f"unknown study {name!r}; choose one of: {', '.join(STUDIES)}")
    return STUDIES[name]


def adhoc(
    name: str,
    vary: str,
    values: Sequence[Any],
    seeds: Sequence[int] = SEEDS,
    fixed: Mapping[str, Any] | None = None,
    log_x: bool = False,
) -> Study:
    """A study given on the command line: its metrics are the main ones, drawn against the values
    when they are all numbers, else as bars."""
    numeric = all(_is_number(v) for v in values)
    study = Study(
        name=name,
        description=f"{vary} over {', '.join(map(str, values))}",
        vary=vary,
        values=tuple(values),
        seeds=tuple(seeds),
        fixed=dict(fixed or {}),
        plots=(Plot("metrics.png", MAIN_METRICS, against=numeric, log_x=log_x and numeric),),
    )
    study.validate()
    return study
