"""Typed, validated settings: `params.yaml` is read once into a `Params` object.

Every key is typed and range-checked before any stage does work. A bad value fails with a
`ConfigError` that names the key, the value and what is allowed; an unknown key (a typo such
as `train.lamda`) is rejected with the closest valid key suggested.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from wae.errors import WAEError


class ConfigError(WAEError, ValueError):
    """A setting in params.yaml is missing, unknown, mistyped or out of range."""


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"params: {key} = {value!r} is not allowed; expected {allowed}")


def _positive(key: str, value: float) -> None:
    _check(value > 0 and math.isfinite(value), key, value, "a finite number > 0")


def _at_least(key: str, value: float, low: float) -> None:
    _check(value >= low, key, value, f"a number >= {low}")


@dataclass(frozen=True)
class DataConfig:
    """The `prepare` stage: where MNIST comes from and how it is split."""

    source: str = "auto"  # "auto": $WAE_DATA_HOME/mnist, downloaded if missing; else a file or folder
    mirrors: tuple[str, ...] = (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    )
    val_size: int = 5000
    train_subset: int = 0  # 0: all training digits left after the validation split
    seed: int = 0

    def validate(self, section: str) -> None:
        _check(bool(self.source), f"{section}.source", self.source, '"auto" or a path')
        _check(0 <= self.val_size < 60000, f"{section}.val_size", self.val_size, "0 <= val_size < 60000")
        _at_least(f"{section}.train_subset", self.train_subset, 0)
        _check(
            self.train_subset <= 60000 - self.val_size,
            f"{section}.train_subset",
            self.train_subset,
            f"at most 60000 - val_size = {60000 - self.val_size} (0 for all)",
        )
        for url in self.mirrors:
            _check(url.startswith(("http://", "https://")), f"{section}.mirrors", url, "http(s) URLs")


@dataclass(frozen=True)
class ClassifierConfig:
    """The judge used by `evaluate`: a small CNN trained on the prepared training split."""

    epochs: int = 3
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0

    def validate(self, section: str) -> None:
        _at_least(f"{section}.epochs", self.epochs, 1)
        _at_least(f"{section}.batch_size", self.batch_size, 1)
        _positive(f"{section}.lr", self.lr)


@dataclass(frozen=True)
class TrainConfig:
    """The `train` stage: architecture, penalty, optimisation and devices."""

    architecture: Literal["small", "post", "paper"] = "small"
    latent_dim: int = 8
    prior_std: float = 1.0
    penalty: Literal["mmd", "gan"] = "mmd"
    lambda_: float = 3.0  # written `lambda` in params.yaml
    recon_cost: Literal["l2sq", "mse"] = "l2sq"  # l2sq: squared L2 norm per image; mse: mean per pixel
    recon_weight: float = 0.05
    batch_size: int = 100
    epochs: int = 12
    lr: float = 2e-3
    disc_lr: float = 5e-4
    adam_beta1: float = 0.5
    lr_schedule: Literal["constant", "piecewise", "cosine"] = "cosine"
    lr_milestones: tuple[int, ...] = ()
    lr_factors: tuple[float, ...] = ()
    seed: int = 0
    steps_per_execution: int = 10
    strategy: Literal["none", "mirrored", "multi_worker"] = "none"
    precision: Literal["auto", "float32", "mixed_bfloat16", "mixed_float16"] = "auto"
    xla: bool = False

    def validate(self, section: str) -> None:
        _at_least(f"{section}.latent_dim", self.latent_dim, 1)
        _positive(f"{section}.prior_std", self.prior_std)
        _check(
            self.lambda_ >= 0 and math.isfinite(self.lambda_),
            f"{section}.lambda",
            self.lambda_,
            "a finite number >= 0",
        )
        _positive(f"{section}.recon_weight", self.recon_weight)
        _at_least(f"{section}.batch_size", self.batch_size, 1)
        _at_least(f"{section}.epochs", self.epochs, 1)
        _positive(f"{section}.lr", self.lr)
        _positive(f"{section}.disc_lr", self.disc_lr)
        _check(0 <= self.adam_beta1 < 1, f"{section}.adam_beta1", self.adam_beta1, "0 <= adam_beta1 < 1")
        _at_least(f"{section}.steps_per_execution", self.steps_per_execution, 1)
        _check(
            len(self.lr_milestones) == len(self.lr_factors),
            f"{section}.lr_factors",
            list(self.lr_factors),
            f"one factor per milestone ({len(self.lr_milestones)} milestones)",
        )
        _check(
            list(self.lr_milestones) == sorted(set(self.lr_milestones))
            and all(m >= 1 for m in self.lr_milestones),
            f"{section}.lr_milestones",
            list(self.lr_milestones),
            "strictly increasing epoch numbers >= 1",
        )
        for factor in self.lr_factors:
            _positive(f"{section}.lr_factors", factor)


@dataclass(frozen=True)
class SampleConfig:
    """The `sample` stage: how many codes to draw from the prior and how to show them."""

    n_samples: int = 10000
    grid_size: int = 5
    n_reconstructions: int = 10
    n_interpolations: int = 8
    interpolation_steps: int = 10
    traversal_steps: int = 15
    seed: int = 1

    def validate(self, section: str) -> None:
        _at_least(f"{section}.n_samples", self.n_samples, 1)
        _check(
            self.grid_size >= 1 and self.grid_size**2 <= self.n_samples,
            f"{section}.grid_size",
            self.grid_size,
            f"1 <= grid_size and grid_size**2 <= n_samples ({self.n_samples})",
        )
        for name in ("n_reconstructions", "n_interpolations"):
            _at_least(f"{section}.{name}", getattr(self, name), 1)
        for name in ("interpolation_steps", "traversal_steps"):
            _at_least(f"{section}.{name}", getattr(self, name), 2)


@dataclass(frozen=True)
class EvaluateConfig:
    """The `evaluate` stage: sample sizes of the scores in metrics.json."""

    n_samples: int = 10000
    mmd_samples: int = 5000
    probe_train_size: int = 10000
    seed: int = 2

    def validate(self, section: str) -> None:
        _at_least(f"{section}.n_samples", self.n_samples, 2)
        _at_least(f"{section}.mmd_samples", self.mmd_samples, 2)
        _at_least(f"{section}.probe_train_size", self.probe_train_size, 10)


@dataclass(frozen=True)
class MlflowConfig:
    """Where runs are recorded (the store itself comes from MLFLOW_TRACKING_URI or the repo root)."""

    experiment_name: str = "wae-mnist"
    registered_model_name: str = "wae-decoder"
    model_alias: str = "current"

    def validate(self, section: str) -> None:
        for name in ("experiment_name", "registered_model_name", "model_alias"):
            value = getattr(self, name)
            _check(bool(value.strip()), f"{section}.{name}", value, "a non-empty name")
        _check(
            self.model_alias.replace("-", "").replace("_", "").isalnum(),
            f"{section}.model_alias",
            self.model_alias,
            "letters, digits, '-' and '_'",
        )
        _check(
            self.model_alias.lower() != "latest" and not self.model_alias.lower().startswith("v"),
            f"{section}.model_alias",
            self.model_alias,
            "a name other than 'latest' or 'v<number>' (MLflow reserves those)",
        )


@dataclass(frozen=True)
class Params:
    data: DataConfig = field(default_factory=DataConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)

    def flat(self) -> dict[str, Any]:
        """Every setting as `section.key` -> value, as written in params.yaml (for MLflow params)."""
        flat: dict[str, Any] = {}
        for section, values in to_dict(self).items():
            for key, value in values.items():
                flat[f"{section}.{key}"] = value
        return flat

    def digest(self, *sections: str) -> str:
        """A short hash of some sections (all by default): equal settings, equal digest."""
        chosen = {k: v for k, v in to_dict(self).items() if not sections or k in sections}
        return hashlib.sha256(json.dumps(chosen, sort_keys=True).encode()).hexdigest()[:16]

    def scores_digest(self) -> str:
        """A short hash of every setting that `evaluate`'s scores depend on: the data split, the judge,
        the training, the samples and the scoring. Left out: where the data files come from (not what
        they hold) and where runs are recorded. `evaluate` tags it on the run it scores; a study finds
        its members by it (wae.studies)."""
        chosen = to_dict(self)
        del chosen["mlflow"]
        chosen["data"] = {k: v for k, v in chosen["data"].items() if k not in ("source", "mirrors")}
        return hashlib.sha256(json.dumps(chosen, sort_keys=True).encode()).hexdigest()[:16]


def _yaml_key(name: str) -> str:
    return name.rstrip("_")


def to_dict(params: Params) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for section in dataclasses.fields(params):
        value = getattr(params, section.name)
        out[section.name] = {
            _yaml_key(f.name): list(v) if isinstance(v := getattr(value, f.name), tuple) else v
            for f in dataclasses.fields(value)
        }
    return out


def _unknown_key(key: str, valid: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else f"; valid keys: {', '.join(sorted(valid))}"
    return ConfigError(f"params: unknown key {key}{hint}")


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Check one YAML value against a field's type hint and return it in that type."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        choices = typing.get_args(hint)
        _check(value in choices, key, value, "one of " + ", ".join(repr(c) for c in choices))
        return value
    if origin is tuple:
        _check(isinstance(value, list | tuple), key, value, "a list")
        item_hint = typing.get_args(hint)[0]
        return tuple(_coerce(key, item, item_hint) for item in value)
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"unsupported type for {key}: {hint}")
    if hint is bool:
        _check(isinstance(value, bool), key, value, "true or false")
        return value
    if hint is int:
        _check(isinstance(value, int) and not isinstance(value, bool), key, value, "an integer")
        return value
    if hint is float:
        # YAML reads 1e-3 (no dot) as a string: accept numeric strings, reject the rest.
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                _check(False, key, value, "a number")
        _check(isinstance(value, int | float) and not isinstance(value, bool), key, value, "a number")
        _check(math.isfinite(float(value)), key, value, "a finite number")
        return float(value)
    if hint is str:
        _check(isinstance(value, str), key, value, "a string")
        return value
    raise TypeError(f"unsupported type for {key}: {hint}")


def _build_section(cls: type, section: str, raw: Any) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"params: {section} must be a mapping of keys to values, got {raw!r}")
    fields = {_yaml_key(f.name): f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in raw.items():
        if key not in fields:
            raise _unknown_key(f"{section}.{key}", [f"{section}.{k}" for k in fields])
        f = fields[key]
        values[f.name] = _coerce(f"{section}.{key}", value, hints[f.name])
    config = cls(**values)
    config.validate(section)
    return config


def params_from_dict(raw: Any) -> Params:
    """Validate a parsed params mapping (missing keys take their defaults)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("params: the file must hold a mapping of sections (data, train, ...)")
    sections = {f.name: f for f in dataclasses.fields(Params)}
    hints = typing.get_type_hints(Params)
    built = {}
    for name, value in raw.items():
        if name not in sections:
            raise _unknown_key(str(name), list(sections))
        built[name] = _build_section(hints[name], name, value)
    return Params(**built)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml with a safe YAML loader."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"params: {path} does not exist") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"params: {path} is not valid YAML: {err}") from None
    return params_from_dict(raw)
