"""Are the samples sharp, and do they cover every style? Two questions that one FCD mixes up.

Both sets, real and generated, are compared in a feature space (the judge's penultimate layer),
through k-nearest-neighbour balls: each point's ball reaches its k-th nearest neighbour in its
own set, so together the balls estimate where that set's distribution lives (its manifold).

- **precision** (Kynkäänniemi et al., "Improved Precision and Recall Metric for Assessing
  Generative Models", NeurIPS 2019): the share of generated digits inside some real digit's
  ball (k = 3). Low: samples that look like no real digit.
- **recall** (same paper): the share of real digits inside some generated digit's ball (k = 3).
  Low: styles the model never makes.
- **density** (Naeem et al., "Reliable Fidelity and Diversity Metrics for Generative Models",
  ICML 2020): how many real balls contain each generated digit, over k (k = 5), averaged: about 1
  when both sets come from one distribution, above 1 for samples crowded where reals are dense.
  Unlike precision, one outlier real digit with a huge ball cannot inflate it.
- **coverage** (same paper): the share of real digits whose ball (k = 5) holds a generated digit.
  Unlike recall, it uses only real balls, so outlier samples cannot inflate it.

The distances are computed in float32 blocks of rows (`BLOCK` x N at a time), so 10,000 against
10,000 128-D features take seconds and a few tens of MB.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

PR_K = 3  # Kynkäänniemi et al.'s choice
DC_K = 5  # Naeem et al.'s choice
BLOCK = 1000


def _squared_distance_blocks(a: np.ndarray, b: np.ndarray, block: int) -> Iterator[tuple[slice, np.ndarray]]:
    """Rows of the squared Euclidean distance matrix a x b, `block` rows of a at a time (float32)."""
    b_norms = np.einsum("ij,ij->i", b, b)
    for start in range(0, len(a), block):
        rows = slice(start, min(start + block, len(a)))
        chunk = a[rows]
        d2 = np.einsum("ij,ij->i", chunk, chunk)[:, None] + b_norms[None, :] - 2.0 * (chunk @ b.T)
        yield rows, np.maximum(d2, 0.0, out=d2)


def knn_radii(feats: np.ndarray, ks: tuple[int, ...], block: int = BLOCK) -> dict[int, np.ndarray]:
    """Squared distance of each point to its k-th nearest neighbour in the same set (itself excluded)."""
    feats = np.asarray(feats, np.float32)
    radii = {k: np.empty(len(feats), np.float32) for k in ks}
    for rows, d2 in _squared_distance_blocks(feats, feats, block):
        # Index 0 of a sorted row is the point itself (distance 0); the k-th neighbour is at index k.
        nearest = np.partition(d2, max(ks), axis=1)
        for k in ks:
            radii[k][rows] = np.partition(nearest[:, : max(ks) + 1], k, axis=1)[:, k]
    return radii


def real_radii(real: np.ndarray, block: int = BLOCK) -> dict[int, np.ndarray]:
    """The real digits' ball radii (k = PR_K and DC_K), computed once for several sets of samples."""
    return knn_radii(real, (PR_K, DC_K), block)


def manifold_metrics(
    real: np.ndarray,
    fake: np.ndarray,
    radii: dict[int, np.ndarray] | None = None,
    block: int = BLOCK,
) -> dict[str, float]:
    """Precision, recall (k = PR_K), density and coverage (k = DC_K) of `fake` against `real` features.

    Both (N, F) and (M, F); N, M > DC_K. `radii`: `real_radii(real)`, if already computed.
    Returns the four numbers under those names.
    """
    real, fake = np.asarray(real, np.float32), np.asarray(fake, np.float32)
    if min(len(real), len(fake)) <= max(PR_K, DC_K):
        raise ValueError(f"precision and recall need more than {max(PR_K, DC_K)} points in each set")
    real_radii_ = radii if radii is not None else knn_radii(real, (PR_K, DC_K), block)
    fake_radius = knn_radii(fake, (PR_K,), block)[PR_K]

    in_real_ball = np.zeros(len(fake), bool)  # precision: the fake lies in some real ball
    real_balls_holding = np.zeros(len(fake), np.int64)  # density: how many (k = DC_K) real balls
    real_covered = np.zeros(len(real), bool)  # coverage: the real ball (DC_K) holds some fake
    real_in_fake_ball = np.zeros(len(real), bool)  # recall: the real lies in some fake ball
    for rows, d2 in _squared_distance_blocks(fake, real, block):  # rows: fakes, columns: reals
        in_real_ball[rows] = np.any(d2 <= real_radii_[PR_K][None, :], axis=1)
        inside = d2 <= real_radii_[DC_K][None, :]
        real_balls_holding[rows] = inside.sum(axis=1)
        real_covered |= inside.any(axis=0)
        real_in_fake_ball |= np.any(d2 <= fake_radius[rows, None], axis=0)
    return {
        "precision": float(in_real_ball.mean()),
        "recall": float(real_in_fake_ball.mean()),
        "density": float(real_balls_holding.sum() / (DC_K * len(fake))),
        "coverage": float(real_covered.mean()),
    }
