"""What the generator makes of the latent space: samples, reconstructions, interpolations, traversals.

A WAE is a generative model because its decoder maps prior codes N(0, prior_std^2 I) to
digits; these functions compute the arrays that `sample` saves and `wae.plots` draws (this
module draws nothing). They accept any Keras encoder/decoder pair with the `wae.models`
conventions (images in [0, 1], N x 28 x 28 x 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from wae.atomic import atomic_path
from wae.config import SampleConfig
from wae.models import decode, encode
from wae.samplers import prior_samples

if TYPE_CHECKING:
    import keras

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


def traversal_codes(latent_dim: int, prior_std: float, steps: int) -> np.ndarray:
    """Codes (rows, steps, latent_dim) spanning +-3 prior_std.

    1-D: one strip; 2-D: the decoded manifold on a steps x steps grid (rows run from +3 to
    -3 prior_std in z_1 so the picture reads like a plot); more dims: one row per dimension
    (the first TRAVERSAL_MAX_ROWS), that one varying, the others 0.
    """
    values = np.linspace(-TRAVERSAL_RANGE, TRAVERSAL_RANGE, steps, dtype=np.float32) * prior_std
    if latent_dim == 1:
        return values[None, :, None]
    if latent_dim == 2:
        z0, z1 = np.meshgrid(values, values[::-1])
        return np.stack([z0, z1], axis=-1)
    rows = min(latent_dim, TRAVERSAL_MAX_ROWS)
    codes = np.zeros((rows, steps, latent_dim), np.float32)
    for d in range(rows):
        codes[d, :, d] = values
    return codes


def traversal(decoder: keras.Model, latent_dim: int, prior_std: float, steps: int) -> np.ndarray:
    """The decoded `traversal_codes`: images (rows, steps, 28, 28, 1)."""
    codes = traversal_codes(latent_dim, prior_std, steps)
    images = decode(decoder, codes.reshape(-1, latent_dim))
    return images.reshape(*codes.shape[:2], *images.shape[1:])


@dataclass
class LatentViews:
    """What `sample` pictures besides the samples, as arrays (`wae.plots.latent_view_figures` draws them)."""

    originals: np.ndarray  # test digits (n, 28, 28, 1), uint8
    reconstructions: np.ndarray  # their reconstructions, float32 in [0, 1]
    interpolations: np.ndarray  # (n_pairs, steps, 28, 28, 1)
    interpolation_labels: list[str]  # "3 → 8" per row
    traversal: np.ndarray  # (rows, steps, 28, 28, 1), see `traversal_codes`
    traversal_span: float = TRAVERSAL_RANGE  # the traversal's columns run from -span to +span prior stds


def latent_views(
    encoder: keras.Model,
    decoder: keras.Model,
    latent_dim: int,
    prior_std: float,
    x_test: np.ndarray,
    y_test: np.ndarray,
    config: SampleConfig,
) -> LatentViews:
    """Reconstructions, interpolations and the traversal of `sample`, from the test digits."""
    originals = x_test[: config.n_reconstructions]
    pairs = interpolation_pairs(y_test, config.n_interpolations)
    starts, ends = (np.array(index) for index in zip(*pairs, strict=True))
    return LatentViews(
        originals=originals,
        reconstructions=reconstruct(encoder, decoder, originals),
        interpolations=interpolate(
            encoder, decoder, x_test[starts], x_test[ends], config.interpolation_steps
        ),
        interpolation_labels=[f"{y_test[a]} → {y_test[b]}" for a, b in pairs],
        traversal=traversal(decoder, latent_dim, prior_std, config.traversal_steps),
    )
