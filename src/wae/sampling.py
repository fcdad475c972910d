"""What the generator makes of the prior: samples, reconstructions, interpolations, traversals.

A WAE is a generative model because its decoder maps prior codes N(0, prior_std^2 I) to
digits; these functions produce the arrays that `sample` saves and plots. They accept any
Keras encoder/decoder pair with the `wae.models` conventions (images in [0, 1], N x 28 x 28 x 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from wae import plots
from wae.atomic import atomic_path
from wae.config import SampleConfig
from wae.models import decode, encode, prior_samples

if TYPE_CHECKING:
    import keras
    from matplotlib.figure import Figure

TRAVERSAL_RANGE = 3.0  # traversals cover +-3 prior_std: 99.7% of the prior mass per dimension
TRAVERSAL_MAX_ROWS = 16  # more dims than this: only the first 16 get a row (the picture stays readable)


def generate(decoder: keras.Model, n: int, latent_dim: int, prior_std: float, seed: int) -> np.ndarray:
    """n digits decoded from seeded prior codes: float32 (n, 28, 28, 1) in [0, 1]."""
    return decode(decoder, prior_samples(n, latent_dim, prior_std, seed))


def save_samples(path: str | Path, samples: np.ndarray) -> None:
    """np.save atomically, so `evaluate` never reads a half-written file."""
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, np.asarray(samples, np.float32))


def reconstruct(encoder: keras.Model, decoder: keras.Model, images: np.ndarray) -> np.ndarray:
    """Decode(encode(images)): float32 in [0, 1]."""
    return decode(decoder, encode(encoder, images))


def interpolation_pairs(labels: np.ndarray, n_pairs: int) -> list[tuple[int, int]]:
    """Indices of (start, end) digits of different classes: row i goes from class i to class i + 5.

    Row i uses the (i // 10)-th digit of both classes, so rows never repeat and the choice is
    deterministic (the test set keeps its published order).
    """
    labels = np.asarray(labels)
    by_class = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
    classes = sorted(by_class)
    if len(classes) < 2:
        raise ValueError("interpolations need digits of at least two classes")
    pairs = []
    for i in range(n_pairs):
        start = classes[i % len(classes)]
        end = classes[(i + max(1, len(classes) // 2)) % len(classes)]
        occurrence = i // len(classes)
        a, b = by_class[start], by_class[end]
        pairs.append((int(a[occurrence % len(a)]), int(b[occurrence % len(b)])))
    return pairs


def interpolate(
    encoder: keras.Model, decoder: keras.Model, starts: np.ndarray, ends: np.ndarray, steps: int
) -> np.ndarray:
    """Decoded straight lines in latent space: (n_pairs, steps, 28, 28, 1), first/last columns at the codes."""
    z_start, z_end = encode(encoder, starts), encode(encoder, ends)
    weights = np.linspace(0.0, 1.0, steps, dtype=np.float32)[None, :, None]
    path = (1.0 - weights) * z_start[:, None, :] + weights * z_end[:, None, :]
    images = decode(decoder, path.reshape(-1, z_start.shape[1]))
    return images.reshape(len(starts), steps, *images.shape[1:])


@dataclass
class Traversal:
    images: np.ndarray  # (rows, cols, 28, 28, 1)
    title: str
    row_labels: list[str]
    col_labels: list[str]


def traversal_codes(latent_dim: int, prior_std: float, steps: int) -> tuple[np.ndarray, list[str], str]:
    """Codes (rows, steps, latent_dim) spanning +-3 prior_std, their row labels and a title.

    1-D: one strip; 2-D: the decoded manifold on a steps x steps grid (rows run from +3 to
    -3 prior_std in z_1 so the picture reads like a plot); more dims: one row per dimension,
    that one varying, the others 0.
    """
    values = np.linspace(-TRAVERSAL_RANGE, TRAVERSAL_RANGE, steps, dtype=np.float32) * prior_std
    if latent_dim == 1:
        return (
            values[None, :, None],
            ["z_0"],
            f"The 1-D latent from -3σ to +3σ (σ = prior std = {prior_std:g})",
        )
    if latent_dim == 2:
        z0, z1 = np.meshgrid(values, values[::-1])
        codes = np.stack([z0, z1], axis=-1)
        labels = plots.sigma_labels(steps, TRAVERSAL_RANGE)[::-1]
        title = (
            f"The decoded 2-D latent: z_0 left to right, z_1 bottom to top (σ = prior std = {prior_std:g})"
        )
        return codes, labels, title
    rows = min(latent_dim, TRAVERSAL_MAX_ROWS)
    codes = np.zeros((rows, steps, latent_dim), np.float32)
    for d in range(rows):
        codes[d, :, d] = values
    shown = "" if rows == latent_dim else f" (first {rows} of {latent_dim})"
    title = f"One latent dimension at a time{shown}, others 0 (σ = prior std = {prior_std:g})"
    return codes, [f"z_{d}" for d in range(rows)], title


def traversal(decoder: keras.Model, latent_dim: int, prior_std: float, steps: int) -> Traversal:
    """Decode the traversal codes of `traversal_codes`."""
    codes, labels, title = traversal_codes(latent_dim, prior_std, steps)
    images = decode(decoder, codes.reshape(-1, latent_dim))
    col_labels = plots.sigma_labels(steps, TRAVERSAL_RANGE)
    return Traversal(images.reshape(*codes.shape[:2], *images.shape[1:]), title, labels, col_labels)


def sample_figures(
    encoder: keras.Model,
    decoder: keras.Model,
    latent_dim: int,
    prior_std: float,
    samples: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    config: SampleConfig,
) -> dict[str, Figure]:
    """The four pictures of `sample`, by file name: samples, reconstructions, interpolations, traversal."""
    originals = x_test[: config.n_reconstructions]
    pairs = interpolation_pairs(y_test, config.n_interpolations)
    starts, ends = (np.array(index) for index in zip(*pairs, strict=True))
    paths = interpolate(encoder, decoder, x_test[starts], x_test[ends], config.interpolation_steps)
    return {
        "samples.png": plots.samples_figure(samples, config.grid_size),
        "reconstructions.png": plots.reconstructions_figure(
            originals, reconstruct(encoder, decoder, originals)
        ),
        "interpolations.png": plots.interpolations_figure(
            paths, [f"{y_test[a]} → {y_test[b]}" for a, b in pairs]
        ),
        "traversal.png": plots.traversal_figure(
            traversal(decoder, latent_dim, prior_std, config.traversal_steps)
        ),
    }
