"""Precision, recall, density and coverage: checked against a brute-force count and on sets whose
answer is known: real against real, one digit repeated, noise.

The feature space here is the digits' pixels (cheap, and MNIST's pixel neighbourhoods are
meaningful); `evaluate` uses the judge's features, which only sharpen the same picture.
"""

from __future__ import annotations

import numpy as np
import pytest

from wae.data import load_mnist
from wae.precision_recall import DC_K, PR_K, manifold_metrics, real_radii


@pytest.fixture(scope="module")
def pixels(mnist_dir) -> tuple[np.ndarray, np.ndarray]:
    """2000 training and 2000 test digits as flat vectors in [0, 1]."""
    mnist = load_mnist(mnist_dir)
    flat = [x[:2000].reshape(2000, -1).astype(np.float32) / 255.0 for x in (mnist.x_train, mnist.x_test)]
    return flat[0], flat[1]


def brute_force(real: np.ndarray, fake: np.ndarray) -> dict[str, float]:
    """The definitions, spelled out on full distance matrices (small sets only)."""

    def sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return ((a[:, None, :].astype(np.float64) - b[None, :, :]) ** 2).sum(-1)

    real_k = np.sort(sq_dist(real, real), axis=1)  # column 0: the point itself
    fake_k = np.sort(sq_dist(fake, fake), axis=1)
    cross = sq_dist(fake, real)
    return {
        "precision": np.mean((cross <= real_k[None, :, PR_K]).any(axis=1)),
        "recall": np.mean((cross <= fake_k[:, PR_K, None]).any(axis=0)),
        "density": np.sum(cross <= real_k[None, :, DC_K]) / (DC_K * len(fake)),
        "coverage": np.mean((cross <= real_k[None, :, DC_K]).any(axis=0)),
    }


def test_blockwise_scores_equal_the_brute_force_definitions(pixels) -> None:
    train, test = pixels
    rng = np.random.default_rng(0)
    real, fake = train[:300], test[:250] + rng.normal(0, 0.15, test[:250].shape).astype(np.float32)
    expected = brute_force(real, fake)
    got = manifold_metrics(real, fake, block=64)  # several blocks, the last one short
    assert got == pytest.approx(expected, abs=1e-12)
    assert 0.1 < got["precision"] < 0.9 and got["recall"] > 0.5  # a case where every count matters
    assert manifold_metrics(real, fake, real_radii(real)) == got


def test_real_digits_against_other_real_digits_score_near_one(pixels) -> None:
    train, test = pixels
    scores = manifold_metrics(test, train)
    assert scores["precision"] > 0.8 and scores["recall"] > 0.8
    assert scores["coverage"] > 0.8 and 0.8 < scores["density"] < 1.2  # about 1 for one distribution


def test_one_digit_repeated_is_precise_but_recalls_nothing(pixels) -> None:
    train, test = pixels
    scores = manifold_metrics(test, np.repeat(train[:1], 2000, axis=0))
    assert scores["precision"] == 1.0  # a real digit, well inside the real manifold
    assert scores["recall"] < 0.01 and scores["coverage"] < 0.01


def test_noise_is_neither_precise_nor_recalled(pixels) -> None:
    _, test = pixels
    noise = np.random.default_rng(1).uniform(0, 1, test.shape).astype(np.float32)
    scores = manifold_metrics(test, noise)
    assert scores["precision"] < 0.01 and scores["density"] < 0.01
    assert scores["recall"] < 0.01 and scores["coverage"] < 0.01


def test_too_few_points_for_k_neighbours_is_refused() -> None:
    with pytest.raises(ValueError, match="more than 5 points"):
        manifold_metrics(np.zeros((100, 3)), np.zeros((5, 3)))
