"""The scores of reports/metrics.json: each checked on a case whose answer is known by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg

from wae import metrics
from wae.classifier import build_classifier
from wae.config import ConfigError, EvaluateConfig, TrainConfig
from wae.data import MnistSplits, load_mnist, split
from wae.models import build_models
from wae.regularisers.mmd import MMD_SCALES, mmd_penalty

# --- Fréchet distance -------------------------------------------------------------------------


def test_frechet_distance_of_a_feature_set_with_itself_is_zero() -> None:
    feats = np.random.default_rng(0).gamma(2.0, size=(3000, 64))  # skewed, like ReLU features
    trace = np.trace(metrics.gaussian_fit(feats)[1])
    assert metrics.feature_frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-9 * trace)


def test_frechet_distance_in_one_dimension_is_mean_and_std_gaps_squared() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(1.0, 2.0, 5000), rng.normal(-0.5, 0.5, 4000)
    by_hand = (a.mean() - b.mean()) ** 2 + (a.std(ddof=1) - b.std(ddof=1)) ** 2
    assert metrics.feature_frechet_distance(a[:, None], b[:, None]) == pytest.approx(by_hand, rel=1e-10)
    assert by_hand == pytest.approx(1.5**2 + 1.5**2, rel=0.05)  # and it is the population value


def test_frechet_distance_matches_the_textbook_formula_with_scipy_sqrtm() -> None:
    rng = np.random.default_rng(2)
    a = rng.normal(size=(800, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(size=(900, 6)) @ rng.normal(size=(6, 6)) + 0.3
    (mu1, s1), (mu2, s2) = metrics.gaussian_fit(a), metrics.gaussian_fit(b)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    textbook = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
    assert metrics.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(textbook, rel=1e-8)


def test_dead_features_give_a_finite_distance_equal_to_the_live_ones() -> None:
    """ReLU units that never fire make the covariance singular; they must not turn the score into NaN."""
    rng = np.random.default_rng(3)
    live_a, live_b = rng.normal(size=(1000, 5)), rng.normal(0.2, 1.3, size=(1000, 5))
    dead = np.zeros((1000, 3))
    with_dead = metrics.feature_frechet_distance(np.hstack([live_a, dead]), np.hstack([live_b, dead]))
    assert math.isfinite(with_dead)
    assert with_dead == pytest.approx(metrics.feature_frechet_distance(live_a, live_b), rel=1e-9)


# --- MMD --------------------------------------------------------------------------------------


def naive_mmd(x: np.ndarray, y: np.ndarray, prior_std: float) -> float:
    """The paper's unbiased MMD^2 with the IMQ kernel, term by term in Python loops."""
    base = 2.0 * x.shape[1] * prior_std**2

    def k(u: np.ndarray, v: np.ndarray) -> float:
        d2 = float(np.sum((u - v) ** 2))
        return sum(base * s / (base * s + d2) for s in MMD_SCALES)

    n, m = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return xx + yy - 2 * xy


def test_training_penalty_and_evaluation_mmd_match_the_naive_formula() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(0.5, 1.0, (12, 3))
    y = rng.normal(0.0, 2.0, (15, 3))
    expected = naive_mmd(x, y, prior_std=2.0)
    assert float(mmd_penalty(x, y, 2.0)) == pytest.approx(expected, rel=1e-4)
    # chunk=5: several blocks of uneven sizes, summed in float64
    assert metrics.mmd(x, y, 2.0, chunk=5) == pytest.approx(expected, rel=1e-9)


def test_chunked_mmd_agrees_with_the_training_penalty_on_a_larger_set() -> None:
    rng = np.random.default_rng(5)
    codes, prior = rng.normal(0.3, 1.2, (600, 8)), rng.normal(size=(600, 8))
    assert metrics.mmd(codes, prior, 1.0, chunk=256) == pytest.approx(
        float(mmd_penalty(codes, prior, 1.0)), rel=1e-3
    )


def test_mmd_is_near_zero_between_prior_samples_and_clearly_positive_off_the_prior() -> None:
    rng = np.random.default_rng(6)
    prior_a, prior_b = rng.normal(size=(1000, 8)), rng.normal(size=(1000, 8))
    same = metrics.mmd(prior_a, prior_b, 1.0)
    assert abs(same) < 5e-3  # sampling noise of the unbiased estimate at n = 1000 (about 1e-3)
    assert metrics.mmd(prior_a + 1.0, prior_b, 1.0) > 0.5  # mean shifted by one std in every dim
    assert metrics.mmd(prior_a * 1.5, prior_b, 1.0) > 0.1  # codes too spread out
    # The kernel bandwidth follows prior_std: rescaling codes and prior together changes nothing.
    assert metrics.mmd(2 * prior_a, 2 * prior_b, 2.0) == pytest.approx(same, rel=1e-9)


def test_latent_moments_report_each_dimension_against_the_prior() -> None:
    codes = np.random.default_rng(7).normal(0.0, 2.0, (20000, 20))
    codes[:, 3] += 0.5
    moments = metrics.latent_moments(codes)
    assert moments["latent_mean_abs_max"] == pytest.approx(0.5, abs=0.05)
    assert moments["latent_std_min"] == pytest.approx(2.0, rel=0.03)
    assert moments["latent_std_max"] == pytest.approx(2.0, rel=0.03)
    assert moments["latent_mean_3"] == pytest.approx(0.5, abs=0.05)
    assert "latent_std_15" in moments and "latent_std_16" not in moments  # per dim: first 16 only


# --- Samples judged by the classifier, probe, reconstruction ----------------------------------


def test_class_entropy_is_zero_for_one_digit_and_ln10_for_all_digits_equally() -> None:
    one_digit = np.tile(np.eye(10)[3], (500, 1))
    uniform = np.eye(10)[np.arange(1000) % 10]
    assert metrics.class_entropy(one_digit) == 0.0
    assert metrics.class_entropy(uniform) == pytest.approx(math.log(10))
    assert metrics.mean_confidence(uniform) == 1.0
    assert metrics.mean_confidence(np.full((5, 10), 0.1)) == pytest.approx(0.1)


def test_probe_reads_labels_from_separated_codes_and_not_from_noise() -> None:
    rng = np.random.default_rng(8)
    centres = 4.0 * rng.normal(size=(10, 8))  # one cluster per digit in an 8-d latent
    labels = rng.integers(0, 10, 4000)
    codes = centres[labels] + rng.normal(size=(4000, 8))
    assert metrics.probe_accuracy(codes[:3000], labels[:3000], codes[3000:], labels[3000:]) > 0.9
    noise = rng.normal(size=(4000, 8))
    assert metrics.probe_accuracy(noise[:3000], labels[:3000], noise[3000:], labels[3000:]) < 0.2


def test_reconstruction_errors_on_the_pixel_scale() -> None:
    images = np.random.default_rng(9).integers(0, 256, (20, 28, 28, 1)).astype(np.uint8)
    perfect = images.astype(np.float32) / 255.0
    assert metrics.reconstruction_errors(images, perfect)["test_recon_mse"] == pytest.approx(0.0, abs=1e-12)
    off = metrics.reconstruction_errors(np.zeros((4, 28, 28, 1), np.uint8), np.full((4, 28, 28, 1), 0.1))
    assert off["test_recon_mse"] == pytest.approx(0.01)
    assert off["test_recon_bce"] == pytest.approx(-math.log(0.9))
    wrong = metrics.reconstruction_errors(np.full((1, 28, 28, 1), 255, np.uint8), np.zeros((1, 28, 28, 1)))
    assert math.isfinite(wrong["test_recon_bce"])  # clipped: a black pixel drawn white is not infinity


# --- All of metrics.json at once --------------------------------------------------------------


@pytest.fixture(scope="module")
def small_splits(mnist_dir) -> MnistSplits:
    s = split(load_mnist(mnist_dir), val_size=100)
    return MnistSplits(s.x_train[:600], s.y_train[:600], s.x_val, s.y_val, s.x_test[:500], s.y_test[:500])


def test_evaluate_wae_gives_every_score_and_the_same_numbers_twice(small_splits: MnistSplits) -> None:
    nets = build_models(TrainConfig(latent_dim=3))  # untrained: the scores need not be good, only defined
    judge = build_classifier()
    rng = np.random.default_rng(10)
    samples = {name: rng.uniform(0, 1, (300, 28, 28, 1)).astype(np.float32) for name in ("prior", "gmm")}
    config = EvaluateConfig(n_samples=300, mmd_samples=200, probe_train_size=400, seed=3)
    args = (nets.encoder, nets.decoder, judge, small_splits, samples, 1.0, config)
    first, second = metrics.evaluate_wae(*args), metrics.evaluate_wae(*args)
    per_sampler = {
        "sample_fcd", "sample_confidence", "sample_class_entropy", "sample_precision", "sample_recall",
        "sample_density", "sample_coverage",
    }  # fmt: skip
    expected = {
        "test_recon_mse", "test_recon_bce", "recon_fcd", "recon_accuracy", "latent_mmd",
        "latent_mean_abs_max", "latent_std_min", "latent_std_max", "probe_accuracy",
    }  # fmt: skip
    expected |= per_sampler | {f"gmm.{key}" for key in per_sampler}
    assert expected <= first.metrics.keys()
    assert {f"latent_std_{d}" for d in range(3)} <= first.metrics.keys()
    assert all(isinstance(v, float) and math.isfinite(v) for v in first.metrics.values())
    assert first.metrics == second.metrics
    assert first.test_codes.shape == (500, 3)


def test_evaluate_wae_refuses_more_samples_than_were_drawn(small_splits: MnistSplits) -> None:
    nets = build_models(TrainConfig(latent_dim=2))
    samples = {"prior": np.zeros((100, 28, 28, 1), np.float32), "gmm": np.zeros((50, 28, 28, 1), np.float32)}
    with pytest.raises(ConfigError, match=r"evaluate\.n_samples = 100 .* samples/gmm_samples\.npy"):
        metrics.evaluate_wae(
            nets.encoder,
            nets.decoder,
            build_classifier(),
            small_splits,
            samples,
            1.0,
            EvaluateConfig(n_samples=100),
        )
