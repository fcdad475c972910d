"""Latent samplers: the prior as before, a Gaussian mixture fitted to codes, saved and reloaded as arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from project import shipped_with

from wae import samplers
from wae.config import ConfigError, SampleConfig, params_from_dict
from wae.errors import WAEError
from wae.samplers import prior_samples


def three_clusters(n: int = 3000, seed: int = 0) -> np.ndarray:
    """Codes in 2-D from three well-separated Gaussians of different shapes and weights."""
    rng = np.random.default_rng(seed)
    sizes = (n // 2, n // 3, n - n // 2 - n // 3)
    centres = ((-4.0, 0.0), (3.0, 3.0), (3.0, -3.0))
    scales = ((0.5, 0.5), (1.0, 0.2), (0.3, 1.0))
    parts = [rng.normal(c, s, (k, 2)) for k, c, s in zip(sizes, centres, scales, strict=True)]
    return np.concatenate(parts).astype(np.float32)


def test_the_prior_sampler_draws_what_the_pipeline_always_drew() -> None:
    sampler = samplers.fit("prior", None, latent_dim=8, prior_std=2.0, config=SampleConfig())
    np.testing.assert_array_equal(sampler.sample(100, seed=1), prior_samples(100, 8, 2.0, seed=1))


def test_a_gaussian_mixture_fitted_to_codes_samples_where_the_codes_are() -> None:
    codes = three_clusters()
    gmm = samplers.fit("gmm", codes, 2, 1.0, SampleConfig(gmm_components=3, seed=0))
    drawn = gmm.sample(20000, seed=5)
    assert drawn.shape == (20000, 2) and drawn.dtype == np.float32
    np.testing.assert_allclose(drawn.mean(axis=0), codes.mean(axis=0), atol=0.1)
    np.testing.assert_allclose(np.cov(drawn, rowvar=False), np.cov(codes, rowvar=False), atol=0.25)
    # Every draw lies near one of the three clusters: none in the empty middle the prior would fill.
    assert np.mean(np.linalg.norm(drawn, axis=1) < 1.0) < 0.01
    assert np.mean(np.linalg.norm(prior_samples(20000, 2, 1.0, 5), axis=1) < 1.0) > 0.35


def test_a_saved_gmm_reloads_without_refitting_and_gives_the_same_codes_for_the_same_seed(
    tmp_path: Path,
) -> None:
    gmm = samplers.fit("gmm", three_clusters(), 2, 1.0, SampleConfig(gmm_components=3))
    path = tmp_path / "samplers" / "gmm.npz"
    samplers.save(path, gmm)
    with np.load(path, allow_pickle=False) as saved:  # plain arrays: loads with pickle off
        assert sorted(saved.files) == ["covariances", "kind", "means", "weights"]
    loaded = samplers.load(path)
    assert type(loaded) is type(gmm) and loaded.description == gmm.description
    np.testing.assert_array_equal(loaded.sample(500, seed=3), gmm.sample(500, seed=3))
    assert not np.array_equal(loaded.sample(500, seed=4), gmm.sample(500, seed=3))
    assert sorted(p.name for p in path.parent.iterdir()) == ["gmm.npz"]  # no temporary left behind


def test_the_same_params_fit_the_same_mixture() -> None:
    config = SampleConfig(gmm_components=3, seed=2)
    first = samplers.fit("gmm", three_clusters(), 2, 1.0, config).state()
    second = samplers.fit("gmm", three_clusters(), 2, 1.0, config).state()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])


def test_a_saved_prior_reloads_too(tmp_path: Path) -> None:
    samplers.save(tmp_path / "prior.npz", samplers.fit("prior", None, 3, 0.5, SampleConfig()))
    np.testing.assert_array_equal(
        samplers.load(tmp_path / "prior.npz").sample(10, 1), prior_samples(10, 3, 0.5, 1)
    )


def test_loading_something_else_fails_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(WAEError, match=r"junk\.npz: not a saved sampler"):
        samplers.load(tmp_path / "junk.npz")
    np.savez(tmp_path / "odd.npz", kind=np.array("kde"), means=np.zeros(2))
    with pytest.raises(WAEError, match=r"odd\.npz: unknown sampler kind 'kde'; known: prior, gmm"):
        samplers.load(tmp_path / "odd.npz")


def test_more_components_than_codes_fails_naming_the_param() -> None:
    with pytest.raises(WAEError, match=r"sample\.gmm_components = 10 .* 5 training codes"):
        samplers.fit("gmm", three_clusters()[:5], 2, 1.0, SampleConfig(gmm_components=10))


@pytest.mark.parametrize(
    ("samplers_value", "message"),
    [
        (["prior", "kde"], r"sample\.samplers = 'kde' is not allowed; expected one of prior, gmm"),
        (["gmm"], r"sample\.samplers = \['gmm'\] .* holds prior"),
        (["prior", "gmm", "gmm"], r"distinct"),
        ("prior", r"a list"),
    ],
)
def test_params_name_only_registered_samplers_and_always_the_prior(samplers_value, message) -> None:
    with pytest.raises(ConfigError, match=message):
        params_from_dict(shipped_with({"sample": {"samplers": samplers_value}}))
    with pytest.raises(ConfigError, match=r"sample\.gmm_components = 0"):
        params_from_dict(shipped_with({"sample": {"gmm_components": 0}}))


def test_names_of_files_and_metrics_keep_the_prior_s_as_they_were() -> None:
    assert samplers.samples_stem("prior") == "samples" and samplers.metric_prefix("prior") == ""
    assert samplers.samples_stem("gmm") == "gmm_samples" and samplers.metric_prefix("gmm") == "gmm."
