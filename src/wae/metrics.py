"""How good is a trained WAE: the numbers `evaluate` writes to reports/metrics.json.

Each score answers one question a user asks of an auto-encoder with a prior:
- Does it reconstruct?            `test_recon_mse`, `test_recon_bce`, `recon_fcd`, `recon_accuracy`
- Do samples look like digits, sharp and of every class?  For prior samples:
                                  `sample_fcd`, `sample_confidence`, `sample_class_entropy`
- Are they like real digits (fidelity), and do they make every style of them (diversity)?
                                  `sample_precision`, `sample_recall`, `sample_density`,
                                  `sample_coverage` (wae.precision_recall)
  Samples of another latent sampler (wae.samplers) get the same scores under its prefix:
  `gmm.sample_fcd`, `gmm.sample_precision`, ...
- Did the penalty pull the codes onto the prior?
                                  `latent_mmd`, `latent_mean_abs_max`, `latent_std_min/max` (+ per dim)
- Does the latent space keep the digit identity?   `probe_accuracy`

Everything is deterministic given the inputs and seeds: two runs write identical numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from wae.config import EvaluateConfig

if TYPE_CHECKING:
    import keras

    from wae.data import MnistSplits

BCE_EPS = 1e-7  # clip reconstructions away from 0 and 1 so the cross-entropy never takes log(0)
PER_DIM_LIMIT = 16  # per-dimension latent statistics are reported for the first 16 dimensions
MMD_CHUNK = 2500


# --- Reconstruction ---------------------------------------------------------------------------


def _unit(images: np.ndarray) -> np.ndarray:
    if images.dtype == np.uint8:
        return images.astype(np.float64) / 255.0
    return np.asarray(images, np.float64)


def reconstruction_errors(images: np.ndarray, reconstructions: np.ndarray) -> dict[str, float]:
    """Per-pixel mean squared error and binary cross-entropy (grey levels read as probabilities)."""
    x, x_hat = _unit(images), _unit(reconstructions)
    mse = np.mean((x - x_hat) ** 2)
    x_hat = np.clip(x_hat, BCE_EPS, 1.0 - BCE_EPS)
    bce = -np.mean(x * np.log(x_hat) + (1.0 - x) * np.log1p(-x_hat))
    return {"test_recon_mse": float(mse), "test_recon_bce": float(bce)}


# --- Fréchet distance between feature distributions ------------------------------------------


def gaussian_fit(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (F,) and covariance (F, F) of features (N, F), in float64."""
    feats = np.asarray(feats, np.float64)
    if feats.ndim == 1:
        feats = feats[:, None]
    return feats.mean(axis=0), np.atleast_2d(np.cov(feats, rowvar=False))


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix; round-off negative eigenvalues become 0."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2.0)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^1/2) between two Gaussians.

    tr((S1 S2)^1/2) is computed as the sum of square roots of the eigenvalues of
    S1^1/2 S2 S1^1/2, which is similar to S1 S2 but symmetric PSD: `eigh` is stable on it, it
    needs no inverse (ReLU features often give singular covariances, no eps*I is needed) and it
    never yields the imaginary parts that `scipy.linalg.sqrtm` of the non-symmetric S1 S2 can.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    cov1, cov2 = np.atleast_2d(np.asarray(cov1, np.float64)), np.atleast_2d(np.asarray(cov2, np.float64))
    root1 = _psd_sqrt(cov1)
    middle = root1 @ cov2 @ root1
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2.0)
    trace_covmean = np.sum(np.sqrt(np.clip(eigenvalues, 0.0, None)))
    diff = mu1 - mu2
    distance = diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * trace_covmean
    return float(max(distance, 0.0))  # exact value >= 0; round-off may dip below


def feature_frechet_distance(feats1: np.ndarray, feats2: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (the FID recipe)."""
    return frechet_distance(*gaussian_fit(feats1), *gaussian_fit(feats2))


# --- Samples judged by the classifier ---------------------------------------------------------


def mean_confidence(proba: np.ndarray) -> float:
    """Mean max class probability: blurry in-between digits score low, crisp ones near 1."""
    return float(np.mean(np.max(proba, axis=1)))


def class_entropy(proba: np.ndarray, n_classes: int = 10) -> float:
    """Entropy (nats) of the predicted-class histogram: 0 if every sample is one digit, ln 10 if uniform."""
    counts = np.bincount(np.argmax(proba, axis=1), minlength=n_classes).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(max(-np.sum(p * np.log(p)), 0.0)) + 0.0  # + 0.0: no "-0.0" in metrics.json


# --- Latent space against the prior -----------------------------------------------------------


def _block_kernel_sum(a: np.ndarray, b: np.ndarray, latent_dim: int, prior_std: float) -> float:
    import tensorflow as tf

    from wae.regularisers.mmd import imq_kernel_sum

    a, b = tf.constant(a, tf.float64), tf.constant(b, tf.float64)
    a2 = tf.reduce_sum(tf.square(a), axis=1, keepdims=True)
    b2 = tf.reduce_sum(tf.square(b), axis=1, keepdims=True)
    d2 = tf.maximum(a2 + tf.transpose(b2) - 2.0 * tf.matmul(a, b, transpose_b=True), 0.0)
    return float(tf.reduce_sum(imq_kernel_sum(d2, latent_dim, prior_std)))


def _kernel_sum(a: np.ndarray, b: np.ndarray, latent_dim: int, prior_std: float, chunk: int) -> float:
    return sum(
        _block_kernel_sum(a[i : i + chunk], b[j : j + chunk], latent_dim, prior_std)
        for i in range(0, len(a), chunk)
        for j in range(0, len(b), chunk)
    )


def mmd(z_encoded: np.ndarray, z_prior: np.ndarray, prior_std: float, chunk: int = MMD_CHUNK) -> float:
    """The unbiased MMD^2 of `regularisers.mmd.mmd_penalty` (same kernel, same formula), for large sets.

    The training penalty builds three full n x n kernel matrices in float32; here they are summed
    block by block in float64, so memory stays at chunk^2 and the small difference of large sums
    keeps its digits.
    """
    from wae.regularisers.mmd import MMD_SCALES

    q = np.asarray(z_encoded, np.float64)
    p = np.asarray(z_prior, np.float64)
    n, m, latent_dim = len(q), len(p), q.shape[1]
    diagonal = float(len(MMD_SCALES))  # k(x, x) summed over scales, excluded from the unbiased sums
    within_q = (_kernel_sum(q, q, latent_dim, prior_std, chunk) - n * diagonal) / (n * (n - 1.0))
    within_p = (_kernel_sum(p, p, latent_dim, prior_std, chunk) - m * diagonal) / (m * (m - 1.0))
    across = 2.0 * _kernel_sum(q, p, latent_dim, prior_std, chunk) / (n * m)
    return float(within_q + within_p - across)


def latent_moments(codes: np.ndarray) -> dict[str, float]:
    """Per-dimension mean and std of the codes: a prior-matched latent has means ~0, stds ~prior_std."""
    codes = np.asarray(codes, np.float64)
    mean, std = codes.mean(axis=0), codes.std(axis=0, ddof=1)
    moments = {
        "latent_mean_abs_max": float(np.max(np.abs(mean))),
        "latent_std_min": float(np.min(std)),
        "latent_std_max": float(np.max(std)),
    }
    for i in range(min(len(mean), PER_DIM_LIMIT)):
        moments[f"latent_mean_{i}"] = float(mean[i])
        moments[f"latent_std_{i}"] = float(std[i])
    return moments


def probe_accuracy(
    train_codes: np.ndarray,
    train_labels: np.ndarray,
    test_codes: np.ndarray,
    test_labels: np.ndarray,
    seed: int = 0,
) -> float:
    """Test accuracy of a standardised logistic regression from codes to digit labels.

    High means the encoder keeps the digit identity linearly readable in the latent space.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    probe.fit(np.asarray(train_codes, np.float64), np.asarray(train_labels))
    return float(probe.score(np.asarray(test_codes, np.float64), np.asarray(test_labels)))


# --- Everything at once -----------------------------------------------------------------------


@dataclass
class Evaluation:
    metrics: dict[str, float]
    test_codes: np.ndarray  # encoded test digits, for the latent plots


def sample_scores(
    sample_feats: np.ndarray,
    sample_proba: np.ndarray,
    test_feats: np.ndarray,
    real_feats: np.ndarray,
    real_radii: dict[int, np.ndarray] | None = None,
) -> dict[str, float]:
    """The scores of one sampler's digits in the judge's feature space: FCD against all test digits,
    precision, recall, density and coverage against `real_feats` (as many test digits as samples;
    `real_radii`: `wae.precision_recall.real_radii(real_feats)`, shared by several samplers)."""
    from wae.precision_recall import manifold_metrics

    scores = {
        "sample_fcd": feature_frechet_distance(sample_feats, test_feats),
        "sample_confidence": mean_confidence(sample_proba),
        "sample_class_entropy": class_entropy(sample_proba),
    }
    scores.update(
        {f"sample_{k}": v for k, v in manifold_metrics(real_feats, sample_feats, real_radii).items()}
    )
    return scores


def evaluate_wae(
    encoder: keras.Model,
    decoder: keras.Model,
    classifier: keras.Model,
    splits: MnistSplits,
    samples: Mapping[str, np.ndarray],
    prior_std: float,
    config: EvaluateConfig,
) -> Evaluation:
    """All scores of metrics.json for a trained WAE, its samples and the prepared data.

    `samples` maps each sampler's name (wae.samplers) to its digits; their scores are named with
    `wae.samplers.metric_prefix` (the prior's unprefixed). Uses the first `config.n_samples`
    samples of each, the first `config.probe_train_size` training digits for the probe, and up to
    `config.mmd_samples` test codes against as many prior codes drawn with `config.seed`.
    """
    from wae.classifier import features_and_proba
    from wae.config import ConfigError
    from wae.models import decode, encode
    from wae.precision_recall import real_radii
    from wae.samplers import metric_prefix, prior_samples, samples_stem

    for name, digits in samples.items():
        if len(digits) < config.n_samples:
            raise ConfigError(
                f"params: evaluate.n_samples = {config.n_samples} is more than the {len(digits)} samples in "
                f"samples/{samples_stem(name)}.npy; lower it or raise sample.n_samples"
            )
    x_test, y_test = splits.x_test, splits.y_test
    test_codes = encode(encoder, x_test)
    reconstructions = decode(decoder, test_codes)
    metrics = reconstruction_errors(x_test, reconstructions)

    test_feats, _ = features_and_proba(classifier, x_test)
    recon_feats, recon_proba = features_and_proba(classifier, reconstructions)
    metrics["recon_fcd"] = feature_frechet_distance(recon_feats, test_feats)
    metrics["recon_accuracy"] = float(np.mean(recon_proba.argmax(axis=1) == y_test))
    # Precision and recall compare equal numbers of real and generated digits (their k-NN balls
    # shrink as a set grows): the first n_samples test digits, their radii shared by all samplers.
    real_feats = test_feats[: config.n_samples]
    radii = real_radii(real_feats)
    for name, digits in samples.items():
        sample_feats, sample_proba = features_and_proba(classifier, digits[: config.n_samples])
        scores = sample_scores(sample_feats, sample_proba, test_feats, real_feats, radii)
        metrics.update({f"{metric_prefix(name)}{key}": value for key, value in scores.items()})

    n_mmd = min(config.mmd_samples, len(test_codes))
    prior = prior_samples(n_mmd, test_codes.shape[1], prior_std, config.seed)
    metrics["latent_mmd"] = mmd(test_codes[:n_mmd], prior, prior_std)
    metrics.update(latent_moments(test_codes))

    n_probe = min(config.probe_train_size, len(splits.x_train))
    train_codes = encode(encoder, splits.x_train[:n_probe])
    metrics["probe_accuracy"] = probe_accuracy(train_codes, splits.y_train[:n_probe], test_codes, y_test)
    return Evaluation(metrics, test_codes)
