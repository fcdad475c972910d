"""The latent regularisers (`wae.regularisers`): their estimators against NumPy, what each one does to
the codes in training, and `mmd` and `gan` training the weights they trained before the plug-ins.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import tensorflow as tf
from project import shipped_with

from wae import metrics
from wae.config import ConfigError, ConfigWarning, TrainConfig, params_from_dict
from wae.data import load_mnist
from wae.models import build_models, encode
from wae.regularisers import REGULARISERS
from wae.regularisers.kl import gaussian_kl
from wae.regularisers.swd import random_directions, sliced_wasserstein
from wae.training import WAETrainer, seed_everything

# --- Sliced Wasserstein -----------------------------------------------------------------------


def swd(a: np.ndarray, b: np.ndarray, n_directions: int, seed: int = 0) -> tuple[float, np.ndarray]:
    """The penalty on two samples, and the unit directions it drew."""
    directions = random_directions(n_directions, a.shape[1], tf.constant([seed, 0], tf.int64))
    value = sliced_wasserstein(tf.constant(a, tf.float32), tf.constant(b, tf.float32), directions)
    return float(value), directions.numpy()


def test_swd_in_one_dimension_is_the_exact_squared_2_wasserstein_distance():
    """In 1-D the optimal coupling pairs sorted values: W2^2 = mean (x_(i) - y_(i))^2, whatever the
    (unit, so +1 or -1) directions."""
    rng = np.random.default_rng(0)
    x, y = rng.gamma(2.0, size=(700, 1)), rng.normal(1.0, 3.0, size=(700, 1))
    value, directions = swd(x, y, n_directions=5)
    assert np.allclose(np.abs(directions), 1.0)
    assert value == pytest.approx(np.mean((np.sort(x[:, 0]) - np.sort(y[:, 0])) ** 2), rel=1e-5)


def test_swd_of_two_samples_of_one_distribution_is_near_zero():
    # Two samples of 2,000 standard normals are W2^2 = 0.0033 apart on average per direction
    # (measured with NumPy over 200 pairs: std 0.0017, max 0.011).
    rng = np.random.default_rng(1)
    value, _ = swd(rng.normal(size=(2000, 8)), rng.normal(size=(2000, 8)), n_directions=100)
    assert 0 <= value < 0.01


def test_swd_of_a_shifted_isotropic_gaussian_is_its_squared_shift_over_the_dimension():
    """N(mu, I) against N(0, I): on a direction t the projections differ by a shift t.mu, so
    W2^2 = (t.mu)^2, whose mean over uniform unit directions is |mu|^2 / d."""
    rng = np.random.default_rng(2)
    mu, n, n_directions = np.array([1.0, -1.0, 0.5, 0.0]), 10_000, 1000
    x, y = rng.normal(size=(n, 4)) + mu, rng.normal(size=(n, 4))
    value, directions = swd(x, y, n_directions)
    # The penalty is the mean over its directions of the sorted-projection W2^2 ...
    per_direction = [np.mean((np.sort(x @ t) - np.sort(y @ t)) ** 2) for t in directions]
    assert value == pytest.approx(np.mean(per_direction), rel=1e-4)
    # ... which estimates |mu|^2 / d within its Monte-Carlo error: the directions' spread, the two
    # samples' mean difference (2 mu.(x_mean - y_mean) / d on average over directions) and the
    # finite-sample bias (~0.3 / n for unit Gaussians, see above).
    spread = np.std(per_direction) / math.sqrt(n_directions)
    sample_means = 2 * math.sqrt(mu @ mu) * math.sqrt(2 / n) / 4
    assert abs(value - mu @ mu / 4) < 4 * math.hypot(spread, sample_means) + 1 / n


def test_swd_directions_are_unit_vectors_fixed_by_their_seed():
    a = random_directions(64, 8, tf.constant([3, 7], tf.int64)).numpy()
    again = random_directions(64, 8, tf.constant([3, 7], tf.int64)).numpy()
    other = random_directions(64, 8, tf.constant([3, 8], tf.int64)).numpy()
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-6)
    assert np.array_equal(a, again) and not np.allclose(a, other)


# --- KL divergence and the Gaussian encoder ---------------------------------------------------


def test_kl_matches_the_closed_form_and_a_monte_carlo_estimate():
    rng = np.random.default_rng(3)
    mean = rng.normal(size=(5, 3)).astype(np.float32)
    log_variance = rng.normal(scale=0.7, size=(5, 3)).astype(np.float32)
    prior_std = 1.5
    value = float(gaussian_kl(tf.constant(mean), tf.constant(log_variance), prior_std))

    std = np.exp(0.5 * log_variance.astype(np.float64))
    closed_form = np.log(prior_std / std) + (std**2 + mean**2) / (2 * prior_std**2) - 0.5
    assert value == pytest.approx(closed_form.sum(axis=1).mean(), rel=1e-5)

    # E_q[log q(z) - log p(z)] by sampling, for the first code (each dimension independent).
    z = mean[0] + std[0] * rng.normal(size=(200_000, 3))
    log_ratio = scipy.stats.norm.logpdf(z, mean[0], std[0]) - scipy.stats.norm.logpdf(z, 0.0, prior_std)
    log_ratio = log_ratio.sum(axis=1)
    assert closed_form[0].sum() == pytest.approx(
        log_ratio.mean(), abs=4 * log_ratio.std() / math.sqrt(len(z))
    )


def test_kl_is_zero_exactly_at_the_prior():
    prior_std = 2.0
    log_variance = tf.fill([4, 6], 2 * math.log(prior_std))
    assert float(gaussian_kl(tf.zeros([4, 6]), log_variance, prior_std)) == pytest.approx(0.0, abs=1e-6)


def test_reparametrised_training_codes_have_the_mean_and_variance_the_encoder_gives(mnist_dir):
    """The VAE's encoder: one digit encoded n times in training gives n draws of N(mean, exp(log_variance))."""
    keras_seed = 4
    seed_everything(keras_seed)
    models = build_models(TrainConfig(latent_dim=3), stochastic_encoder=True)
    n = 4000
    digit = load_mnist(mnist_dir).x_train[:1, :, :, None].astype(np.float32) / 255.0
    images = tf.constant(np.repeat(digit, n, axis=0))
    codes = models.encode(images, training=True, noise=models.noise(n, tf.constant([5, 0], tf.int64)))
    mean, std = codes.mean.numpy()[0], np.exp(0.5 * codes.log_variance.numpy()[0])
    draws = codes.z.numpy()
    assert np.all(np.abs(draws.mean(axis=0) - mean) < 4 * std / math.sqrt(n))
    assert np.all(np.abs(draws.std(axis=0) / std - 1) < 4 * math.sqrt(1 / (2 * n)))
    # Evaluation (no noise) and the saved encoder give the mean code. Not bit for bit: a batch of 2
    # and one of 4000 may take different float32 kernels (they do on AVX2-only CPUs); a draw would
    # differ by about a standard deviation.
    assert np.allclose(models.encode(images[:2], training=False, noise={}).z.numpy()[0], mean, atol=1e-6)
    assert np.allclose(encode(models.encoder, digit), mean, atol=1e-6)


# --- Validation of train.penalty --------------------------------------------------------------


def test_train_penalty_names_a_registered_regulariser():
    with pytest.raises(
        ConfigError, match=r"train\.penalty = 'vae' is not allowed; expected one of 'mmd', 'gan'"
    ):
        params_from_dict(shipped_with({"train": {"penalty": "vae"}}))
    for name in REGULARISERS:
        params_from_dict(shipped_with({"train": {"penalty": name, "lambda": 0.0}}))


def test_the_plain_auto_encoder_warns_that_it_ignores_lambda():
    with pytest.warns(ConfigWarning, match=r"train.lambda = 3.0 is ignored: train.penalty = 'none'"):
        params_from_dict(shipped_with({"train": {"penalty": "none", "lambda": 3.0}}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        params_from_dict(shipped_with({"train": {"penalty": "none", "lambda": 0.0}}))
        params_from_dict(shipped_with({"train": {"penalty": "kl", "lambda": 3.0}}))


def test_swd_needs_at_least_one_direction():
    with pytest.raises(ConfigError, match=r"train\.swd_projections = 0"):
        params_from_dict(shipped_with({"train": {"penalty": "swd", "swd_projections": 0}}))


# --- Each regulariser in training -------------------------------------------------------------


@pytest.fixture(scope="module")
def subset(mnist_dir) -> tuple[np.ndarray, np.ndarray]:
    """2,000 training digits and 500 held-out ones (uint8 N x 28 x 28 x 1)."""
    x = load_mnist(mnist_dir).x_train[:2500, :, :, None]
    return x[:2000], x[2000:]


def latent_mmd_after_training(penalty: str, subset) -> tuple[list[dict], float]:
    """The history of 4 epochs (160 steps of 50 digits) and the MMD of the held-out digits' codes to
    prior draws, as `evaluate` scores it."""
    x_train, x_val = subset
    # params.yaml's lambda; the adversary's loss needs a lighter one on `small` in so few steps (at 3
    # it pulls the codes to a point before the decoder learns anything); `none` has no penalty.
    lambda_ = {"none": 0.0, "gan": 0.1}.get(penalty, 3.0)
    config = TrainConfig(penalty=penalty, lambda_=lambda_, latent_dim=8, batch_size=50, epochs=4)
    seed_everything(config.seed)
    trainer = WAETrainer(config, x_train, x_val)
    history = trainer.fit(progress=False).history
    codes = encode(trainer.models.encoder, x_val)
    prior = np.random.default_rng(0).normal(size=codes.shape).astype(np.float32)
    return history, metrics.mmd(codes, prior, config.prior_std)


@pytest.fixture(scope="module")
def plain_auto_encoder_mmd(subset) -> float:
    return latent_mmd_after_training("none", subset)[1]


@pytest.mark.slow
@pytest.mark.parametrize("penalty", [name for name in REGULARISERS if name != "none"])
def test_each_regulariser_learns_and_pulls_the_codes_closer_to_the_prior_than_none(
    penalty, subset, plain_auto_encoder_mmd
):
    history, latent_mmd = latent_mmd_after_training(penalty, subset)
    recon = [row["train_recon"] for row in history]
    assert all(math.isfinite(v) for row in history for v in row.values()), history
    assert all(a > b for a, b in itertools.pairwise(recon)), recon
    assert latent_mmd < plain_auto_encoder_mmd, (latent_mmd, plain_auto_encoder_mmd)


# --- The weights of mmd and gan, before and after the plug-ins ----------------------------------
# Recorded from the trainer before the regularisers became plug-ins (commit 18584e1): a seeded, tiny
# float32 run of each setup, hashed over every network's weights. Float32 results are bit-identical
# from run to run on one kind of CPU, but TensorFlow's kernels sum in another order on another
# instruction set, so the check runs on the kind of CPU that recorded them (our CI's) and is skipped
# elsewhere.

# Instruction sets that change which kernels TensorFlow runs (and so float32 round-off).
_ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")
RECORDED_ON = frozenset(_ISA_FLAGS)  # an Intel Xeon with AMX, as our CI machines
RECORDED_DIGESTS = {
    ("small", "mmd"): "6ac14467fcdfca4c61b22acfe300a8778bc570a65328f0bb33ff0a677387aae7",
    ("small", "gan"): "15a6c0569603eb9434b9467ad403d672c452e7eff3729915c8c80699d4280a02",
    ("post", "gan"): "9f3ed004cbfe497a33c16f4eee032429587e822aecdcec24801e935d077617c7",
}


def cpu_instruction_sets() -> frozenset[str]:
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return frozenset()
    return frozenset(f for f in _ISA_FLAGS if f in flags)


def digest_setup(architecture: str, penalty: str) -> TrainConfig:
    """Tiny, seeded and float32 (`auto` would pick bfloat16 on CPUs that have it)."""
    config = TrainConfig(
        architecture=architecture,
        penalty=penalty,
        latent_dim=4,
        lambda_=3.0,  # pinned at the default the digests were recorded with
        batch_size=50,
        epochs=2,
        steps_per_execution=3,
        precision="float32",
        seed=5,
    )
    if architecture == "post":
        config = replace(
            config, latent_dim=1, prior_std=2.0, lambda_=0.001, recon_cost="mse", recon_weight=1.0
        )
    return config


def weights_digest(trainer: WAETrainer) -> str:
    digest = hashlib.sha256()
    for net in trainer.networks().values():  # encoder, decoder, then any adversary: as recorded
        for variable in net.weights:
            digest.update(np.ascontiguousarray(variable.numpy()).tobytes())
    return digest.hexdigest()


@pytest.mark.slow
@pytest.mark.parametrize(("architecture", "penalty"), list(RECORDED_DIGESTS))
def test_mmd_and_gan_train_the_weights_they_trained_before_the_restructure(subset, architecture, penalty):
    if cpu_instruction_sets() != RECORDED_ON:
        pytest.skip("digests recorded on another kind of CPU (float32 kernels round differently)")
    config = digest_setup(architecture, penalty)
    digits = subset[0][:400]
    seed_everything(config.seed)
    trainer = WAETrainer(config, digits[:300], digits[300:])
    trainer.fit(progress=False)
    assert weights_digest(trainer) == RECORDED_DIGESTS[(architecture, penalty)]
