"""Where the codes of generated digits come from: the prior, or a density fitted to encoded digits.

A WAE's penalty pulls the codes of real digits towards the prior, but never all the way: decoding
plain prior draws gives some in-between digits. An *ex-post* sampler fits a density to the codes of
the training digits once training is over, and samples codes from it instead (Ghosh et al., "From
Variational to Deterministic Autoencoders", ICLR 2020: a 10-component Gaussian mixture halves the
FID of a WAE's MNIST samples). The decoder is the same; only the codes change.

One interface, `LatentSampler`: `fit` on the encoded training codes, `sample(n, seed)`, and
`state` / `from_state` for saving. To add a sampler, subclass it, decorate it with `@register`,
and give it its params in `wae.config.SampleConfig`: `sample.samplers` accepts every registered
name, and `sample` and `evaluate` handle it with no other change.

Fitted samplers are saved as plain `.npz` arrays (no pickle): `load` rebuilds one without
refitting, and the same seed gives the same codes. This module imports numpy only, so that
config validation can read the registry cheaply.
"""

from __future__ import annotations

import zipfile
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, TypeVar

import numpy as np

from wae.errors import WAEError

if TYPE_CHECKING:
    from wae.config import SampleConfig

PRIOR = "prior"  # the sampler whose draws are the post's samples: samples/samples.npy, `sample_fcd`


class LatentSampler(ABC):
    """Draws latent codes (n, latent_dim) for the decoder."""

    name: ClassVar[str]  # set by `register`
    uses_codes: ClassVar[bool] = True  # whether `fit` needs the encoded training digits

    @classmethod
    @abstractmethod
    def fit(
        cls, codes: np.ndarray | None, latent_dim: int, prior_std: float, config: SampleConfig
    ) -> LatentSampler:
        """Fit to encoded training codes (N, latent_dim) (None when `uses_codes` is False), with
        its params from `config`."""

    @abstractmethod
    def sample(self, n: int, seed: int) -> np.ndarray:
        """n codes, float32 (n, latent_dim); the same seed gives the same codes."""

    @property
    @abstractmethod
    def description(self) -> str:
        """What the codes are, for a picture's title: "codes from ..."."""

    @abstractmethod
    def state(self) -> dict[str, np.ndarray]:
        """Everything `from_state` needs, as arrays."""

    @classmethod
    @abstractmethod
    def from_state(cls, arrays: dict[str, np.ndarray]) -> LatentSampler:
        """Rebuild a fitted sampler from `state()`, without refitting."""


SAMPLERS: dict[str, type[LatentSampler]] = {}
_Sampler = TypeVar("_Sampler", bound=type[LatentSampler])


def register(name: str) -> Callable[[_Sampler], _Sampler]:
    """Class decorator: make a sampler available to `sample.samplers` under `name`."""

    def add(cls: _Sampler) -> _Sampler:
        if not name.isidentifier() or name in SAMPLERS:
            raise ValueError(f"sampler name {name!r} must be a new identifier")
        cls.name = name
        SAMPLERS[name] = cls
        return cls

    return add


# --- The samplers ----------------------------------------------------------------------------


def prior_samples(n: int, latent_dim: int, prior_std: float, seed: int) -> np.ndarray:
    """n codes from the prior N(0, prior_std^2 I), reproducible from the seed: the draws of the post's
    samples (the prior sampler), the sample stage's pictures and evaluate's latent MMD."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, latent_dim)) * prior_std).astype(np.float32)


@register(PRIOR)
class PriorSampler(LatentSampler):
    """The WAE's own prior N(0, prior_std^2 I): what the model was trained to decode."""

    uses_codes = False

    def __init__(self, latent_dim: int, prior_std: float) -> None:
        self.latent_dim, self.prior_std = latent_dim, prior_std

    @classmethod
    def fit(
        cls, codes: np.ndarray | None, latent_dim: int, prior_std: float, config: SampleConfig
    ) -> PriorSampler:
        return cls(latent_dim, prior_std)

    def sample(self, n: int, seed: int) -> np.ndarray:
        return prior_samples(n, self.latent_dim, self.prior_std, seed)

    @property
    def description(self) -> str:
        return f"codes from the prior N(0, {self.prior_std:g}² I)"

    def state(self) -> dict[str, np.ndarray]:
        return {"latent_dim": np.array(self.latent_dim), "prior_std": np.array(self.prior_std)}

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray]) -> PriorSampler:
        return cls(int(arrays["latent_dim"]), float(arrays["prior_std"]))


@register("gmm")
class GaussianMixtureSampler(LatentSampler):
    """A Gaussian mixture with full covariances fitted to the encoded training codes.

    Fitted by scikit-learn's `GaussianMixture` (k-means initialisation, seeded by `sample.seed`);
    sampled here with numpy from the weights, means and covariances alone, so a saved mixture
    samples the same codes without scikit-learn's object.
    """

    def __init__(self, weights: np.ndarray, means: np.ndarray, covariances: np.ndarray) -> None:
        self.weights = np.asarray(weights, np.float64)
        self.means = np.asarray(means, np.float64)
        self.covariances = np.asarray(covariances, np.float64)
        self._cholesky = np.linalg.cholesky(self.covariances)

    @classmethod
    def fit(
        cls, codes: np.ndarray | None, latent_dim: int, prior_std: float, config: SampleConfig
    ) -> GaussianMixtureSampler:
        from sklearn.mixture import GaussianMixture

        codes = np.asarray(codes, np.float64)
        if len(codes) < config.gmm_components:
            raise WAEError(
                f"params: sample.gmm_components = {config.gmm_components} is more than the {len(codes)} "
                "training codes to fit; lower it"
            )
        mixture = GaussianMixture(
            config.gmm_components, covariance_type="full", random_state=config.seed, max_iter=200
        )
        mixture.fit(codes)
        return cls(mixture.weights_, mixture.means_, mixture.covariances_)

    def sample(self, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        components = rng.choice(len(self.weights), size=n, p=self.weights / self.weights.sum())
        noise = rng.standard_normal((n, self.means.shape[1]))
        codes = self.means[components] + np.einsum("nij,nj->ni", self._cholesky[components], noise)
        return codes.astype(np.float32)

    @property
    def description(self) -> str:
        return f"codes from a {len(self.weights)}-component Gaussian mixture fitted to the training codes"

    def state(self) -> dict[str, np.ndarray]:
        return {"weights": self.weights, "means": self.means, "covariances": self.covariances}

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray]) -> GaussianMixtureSampler:
        return cls(arrays["weights"], arrays["means"], arrays["covariances"])


# --- Fitting, saving, loading, naming --------------------------------------------------------


def fit(
    name: str, codes: np.ndarray | None, latent_dim: int, prior_std: float, config: SampleConfig
) -> LatentSampler:
    """The sampler `name` fitted to the encoded training codes (N, latent_dim)."""
    return SAMPLERS[name].fit(codes, latent_dim, prior_std, config)


def save(path: str | Path, sampler: LatentSampler) -> None:
    """Write a fitted sampler as a plain .npz (its kind and its arrays), atomically."""
    from wae.atomic import save_npz

    save_npz(path, kind=np.array(sampler.name), **sampler.state())


def load(path: str | Path) -> LatentSampler:
    """Rebuild a sampler that `save` wrote (no pickle, no refitting)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise WAEError(f"{path}: not a saved sampler ({err}); rerun the sample stage") from None
    kind = str(arrays.pop("kind", ""))
    if kind not in SAMPLERS:
        raise WAEError(f"{path}: unknown sampler kind {kind!r}; known: {', '.join(SAMPLERS)}")
    return SAMPLERS[kind].from_state(arrays)


def samples_stem(name: str) -> str:
    """File stem of a sampler's samples and grid: the prior's keep the post's `samples`, others
    `<name>_samples` (samples/gmm_samples.npy, reports/sample/gmm_samples.png)."""
    return "samples" if name == PRIOR else f"{name}_samples"


def metric_prefix(name: str) -> str:
    """Prefix of a sampler's scores in metrics.json: none for the prior (`sample_fcd`), else
    `<name>.` (`gmm.sample_fcd`)."""
    return "" if name == PRIOR else f"{name}."
