"""Typed, validated settings: `params.yaml` is read once into a `Params` object.

params.yaml is the one source of truth: it must hold every key, and nothing else. Every key is
typed and range-checked before any stage does work. A bad value fails with a `ConfigError` that
names the key, the value and what is allowed; an unknown key (a typo such as `train.lamda`) is
rejected with the closest valid key suggested; a missing key is named with the line to add; a
size that cannot fit in this machine's memory is named before it ends in an out-of-memory crash.

The dataclass defaults below equal the shipped params.yaml (a test holds them together): they
serve code that builds a config by hand (tests, benchmarks), never the pipeline.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import types
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from wae.architectures import ARCHITECTURES
from wae.errors import WAEError
from wae.regularisers import IGNORES_LAMBDA, REGULARISERS


class ConfigError(WAEError, ValueError):
    """A setting in params.yaml is missing, unknown, mistyped or out of range."""


class ConfigWarning(UserWarning):
    """A setting in params.yaml is valid but has no effect with the others."""


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"params: {key} = {value!r} is not allowed; expected {allowed}")


def _positive(key: str, value: float) -> None:
    _check(value > 0 and math.isfinite(value), key, value, "a finite number > 0")


def _at_least(key: str, value: float, low: float) -> None:
    _check(value >= low, key, value, f"a number >= {low}")


def _one_of(key: str, value: str, registry: dict[str, Any]) -> None:
    _check(value in registry, key, value, "one of " + ", ".join(repr(name) for name in registry))


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

    architecture: str = "small"  # a name in wae.architectures.ARCHITECTURES
    latent_dim: int = 12
    prior_std: float = 1.0
    penalty: str = "mmd"  # a name in wae.regularisers.REGULARISERS
    lambda_: float = 1.0  # written `lambda` in params.yaml
    swd_projections: int = 50  # swd: random directions per step
    recon_cost: Literal["l2sq", "mse"] = "l2sq"  # l2sq: squared L2 norm per image; mse: mean per pixel
    recon_weight: float = 0.05
    batch_size: int = 100
    epochs: int = 16
    lr: float = 2e-3
    disc_lr: float = 5e-4
    adam_beta1: float = 0.5
    adam_epsilon: float = 1e-7  # Keras's default; TensorFlow 1's (the paper's and the post's code) is 1e-8
    lr_schedule: Literal["constant", "piecewise", "cosine"] = "cosine"
    lr_milestones: tuple[int, ...] = ()
    lr_factors: tuple[float, ...] = ()
    seed: int = 0
    pretrain_steps: int = 0  # encoder pre-training steps before the first epoch (the paper's code: 200)
    steps_per_execution: int = 10
    strategy: Literal["none", "mirrored", "multi_worker"] = "none"
    precision: Literal["auto", "float32", "mixed_bfloat16", "mixed_float16"] = "auto"
    xla: bool = False

    def validate(self, section: str) -> None:
        _one_of(f"{section}.architecture", self.architecture, ARCHITECTURES)
        _at_least(f"{section}.latent_dim", self.latent_dim, 1)
        _positive(f"{section}.prior_std", self.prior_std)
        _one_of(f"{section}.penalty", self.penalty, REGULARISERS)
        _check(
            self.lambda_ >= 0 and math.isfinite(self.lambda_),
            f"{section}.lambda",
            self.lambda_,
            "a finite number >= 0",
        )
        if self.penalty in IGNORES_LAMBDA and self.lambda_ != 0:
            warnings.warn(
                f"params: {section}.lambda = {self.lambda_!r} is ignored: {section}.penalty = "
                f"{self.penalty!r} has no latent penalty (set {section}.lambda: 0 to say so)",
                ConfigWarning,
                stacklevel=2,
            )
        _at_least(f"{section}.swd_projections", self.swd_projections, 1)
        _positive(f"{section}.recon_weight", self.recon_weight)
        _at_least(f"{section}.batch_size", self.batch_size, 1)
        _at_least(f"{section}.epochs", self.epochs, 1)
        _positive(f"{section}.lr", self.lr)
        _positive(f"{section}.disc_lr", self.disc_lr)
        _check(0 <= self.adam_beta1 < 1, f"{section}.adam_beta1", self.adam_beta1, "0 <= adam_beta1 < 1")
        _positive(f"{section}.adam_epsilon", self.adam_epsilon)
        _at_least(f"{section}.pretrain_steps", self.pretrain_steps, 0)
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
    """The `sample` stage: where codes come from, how many digits to draw, and how to show them."""

    samplers: tuple[str, ...] = ("prior", "gmm")  # names in wae.samplers.SAMPLERS; prior is required
    gmm_components: int = 10
    n_samples: int = 10000
    grid_size: int = 5
    n_reconstructions: int = 10
    n_interpolations: int = 8
    interpolation_steps: int = 10
    traversal_steps: int = 15
    seed: int = 1

    def validate(self, section: str) -> None:
        from wae.samplers import PRIOR, SAMPLERS  # the registry (numpy only: no TensorFlow here)

        known = ", ".join(SAMPLERS)
        for name in self.samplers:
            _check(name in SAMPLERS, f"{section}.samplers", name, f"one of {known}")
        _check(
            PRIOR in self.samplers and len(set(self.samplers)) == len(self.samplers),
            f"{section}.samplers",
            list(self.samplers),
            f"a list of distinct samplers ({known}) that holds {PRIOR} (its draws are the post's samples)",
        )
        _at_least(f"{section}.gmm_components", self.gmm_components, 1)
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
        _at_least(f"{section}.n_samples", self.n_samples, 10)  # precision/recall: k-NN balls, k up to 5
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
    if not isinstance(raw, dict):
        keys = ", ".join(f"{section}.{_yaml_key(f.name)}" for f in dataclasses.fields(cls))
        raise ConfigError(f"params: {section} must be a mapping of its keys ({keys}), got {raw!r}")
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


def _missing_keys(raw: dict[str, Any]) -> list[str]:
    """`section.key` of every setting that `raw` lacks (a whole missing section lists all its keys)."""
    defaults = to_dict(Params())
    return [
        f"{section}.{key}"
        for section, values in defaults.items()
        for key in values
        if not isinstance(raw.get(section), dict) or key not in raw[section]
    ]


def _missing_error(missing: list[str]) -> ConfigError:
    defaults = to_dict(Params())
    lines = []
    for section in defaults:
        keys = [m.split(".", 1)[1] for m in missing if m.startswith(f"{section}.")]
        if keys:
            lines.append(f"  {section}:")
            lines += [f"    {key}: {json.dumps(defaults[section][key])}" for key in keys]
    return ConfigError(
        f"params: missing {', '.join(missing)}; params.yaml must set every key. Add (shipped values):\n"
        + "\n".join(lines)
    )


def params_from_dict(raw: Any, memory_bytes: int | None = None) -> Params:
    """Validate a parsed params mapping: every section and key present, none unknown, all in range.

    `memory_bytes` (default: this machine's memory) bounds the sizes that must fit in memory.
    """
    if raw is None:
        raise ConfigError(
            f"params: the file is empty; it must hold the sections {', '.join(to_dict(Params()))} "
            "with every key (the shipped params.yaml lists them: `git checkout params.yaml`)"
        )
    if not isinstance(raw, dict):
        raise ConfigError("params: the file must hold a mapping of sections (data, train, ...)")
    sections = {f.name: f for f in dataclasses.fields(Params)}
    hints = typing.get_type_hints(Params)
    built = {}
    for name, value in raw.items():
        if name not in sections:
            raise _unknown_key(str(name), list(sections))
        built[name] = _build_section(hints[name], name, value)
    missing = _missing_keys(raw)
    if missing:
        raise _missing_error(missing)
    params = Params(**built)
    check_fits_in_memory(params, memory_bytes if memory_bytes is not None else machine_memory())
    return params


# --- What must fit in memory ------------------------------------------------------------------

IMAGE_BYTES = 28 * 28 * 4  # one float32 digit
# Rough float32 activations kept for the backward pass, per training image (forward + gradients).
ACTIVATION_BYTES = {"small": 2_000_000, "post": 3_000_000, "paper": 12_000_000}
KERNEL_MATRICES = 24  # n x n float32 matrices a penalty step may hold (kernels per scale, gradients)
LATENT_WIDTH = 1024  # widest layer next to the latent code (weights to and from it, with Adam's slots)


def machine_memory() -> int:
    """This machine's physical memory in bytes."""
    import psutil

    return int(psutil.virtual_memory().total)


def memory_needs(params: Params) -> dict[str, int]:
    """Rough bytes each size setting needs on its own: a setting that needs more than the machine
    has can only end in an out-of-memory crash, so it is refused before any work."""
    t, s, e = params.train, params.sample, params.evaluate
    return {
        "train.batch_size": t.batch_size * ACTIVATION_BYTES[t.architecture]
        + KERNEL_MATRICES * 4 * t.batch_size**2,
        "train.latent_dim": 4 * t.latent_dim * (LATENT_WIDTH * 2 * 4 + t.batch_size * 8),
        "sample.n_samples": 3 * s.n_samples * IMAGE_BYTES,
        "evaluate.n_samples": 4 * e.n_samples * IMAGE_BYTES,
        "evaluate.probe_train_size": 4 * e.probe_train_size * IMAGE_BYTES,
    }


def check_fits_in_memory(params: Params, memory_bytes: int) -> None:
    values = params.flat()
    for key, needed in memory_needs(params).items():
        if needed > memory_bytes:
            raise ConfigError(
                f"params: {key} = {values[key]} needs about {needed / 2**30:,.0f} GiB of memory, more than "
                f"this machine's {memory_bytes / 2**30:,.0f} GiB; lower it"
            )


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml (a safe YAML loader; every key required)."""
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
