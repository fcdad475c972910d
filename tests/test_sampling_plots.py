"""What `sample` and `evaluate` draw: samples.npy, and every picture, for 1-, 2- and 8-d latents.

The networks are untrained `wae.models` networks: the pictures are noise, but their files,
shapes and layout are what a user of a trained model gets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from wae import plots, sampling
from wae.atomic import save_figure
from wae.config import SampleConfig, TrainConfig
from wae.data import load_mnist
from wae.models import WAEModels, build_models, decode, encode


@pytest.fixture(scope="module")
def test_digits(mnist_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    mnist = load_mnist(mnist_dir)
    return mnist.x_test[:400, :, :, None], mnist.y_test[:400]


def nets(latent_dim: int) -> WAEModels:
    return build_models(TrainConfig(latent_dim=latent_dim))


def test_generated_samples_are_seeded_float32_digits_in_unit_range(tmp_path: Path) -> None:
    decoder = nets(8).decoder
    samples = sampling.generate(decoder, 64, 8, prior_std=2.0, seed=1)
    assert samples.shape == (64, 28, 28, 1) and samples.dtype == np.float32
    assert samples.min() >= 0.0 and samples.max() <= 1.0
    np.testing.assert_array_equal(samples, sampling.generate(decoder, 64, 8, prior_std=2.0, seed=1))
    assert not np.array_equal(samples, sampling.generate(decoder, 64, 8, prior_std=2.0, seed=2))

    path = tmp_path / "samples" / "samples.npy"
    sampling.save_samples(path, samples)
    np.testing.assert_array_equal(np.load(path), samples)
    assert sorted(p.name for p in path.parent.iterdir()) == ["samples.npy"]  # no temporary left behind


@pytest.mark.parametrize("latent_dim", [1, 2, 8])
def test_sample_stage_pictures_are_written_for_any_latent_size(
    latent_dim: int, test_digits: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    x_test, y_test = test_digits
    wae = nets(latent_dim)
    config = SampleConfig(n_samples=30, grid_size=5, n_reconstructions=6, n_interpolations=4)
    samples = sampling.generate(wae.decoder, config.n_samples, latent_dim, 1.0, config.seed)
    views = sampling.latent_views(wae.encoder, wae.decoder, latent_dim, 1.0, x_test, y_test, config)
    assert views.reconstructions.shape == (6, 28, 28, 1) and views.interpolations.shape == (4, 10, 28, 28, 1)
    figures = {
        "samples.png": plots.samples_figure(samples, config.grid_size),
        **plots.latent_view_figures(**vars(views), latent_dim=latent_dim, prior_std=1.0),
    }
    assert set(figures) == {"samples.png", "reconstructions.png", "interpolations.png", "traversal.png"}
    assert figures["samples.png"].get_suptitle() == "Samples from the generator"
    assert len(figures["samples.png"].axes) == 25  # the post's 5 x 5 grid
    for name, figure in figures.items():
        save_figure(tmp_path / name, figure, dpi=50)
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("latent_dim", "shape"), [(1, (1, 7, 1)), (2, (7, 7, 2)), (8, (8, 7, 8)), (40, (16, 7, 40))]
)
def test_traversal_covers_three_prior_stds(latent_dim: int, shape: tuple[int, int, int]) -> None:
    codes = sampling.traversal_codes(latent_dim, prior_std=2.0, steps=7)
    labels, columns = plots.traversal_labels(latent_dim, rows=shape[0], steps=7)
    assert codes.shape == shape and len(labels) == shape[0]
    assert columns == ["-3σ", "-2σ", "-1σ", "0", "+1σ", "+2σ", "+3σ"]
    assert codes.min() == pytest.approx(-6.0) and codes.max() == pytest.approx(6.0)
    if latent_dim == 2:  # the manifold reads like a plot: z_1 grows upwards
        assert (labels[0], labels[len(labels) // 2], labels[-1]) == ("+3σ", "0", "-3σ")
        assert codes[0, 0, 1] > codes[-1, 0, 1] and codes[0, 0, 0] < codes[0, -1, 0]
    if latent_dim > 2:  # one row per dimension: only that dimension moves, the others stay at 0
        moving = np.abs(codes).max(axis=1) > 0
        np.testing.assert_array_equal(moving, np.eye(shape[0], latent_dim, dtype=bool))


def test_traversal_decodes_one_picture_per_code() -> None:
    decoder = nets(2).decoder
    images = sampling.traversal(decoder, 2, 1.0, steps=5)
    assert images.shape == (5, 5, 28, 28, 1)
    codes = sampling.traversal_codes(2, 1.0, 5)
    np.testing.assert_allclose(images[1, 3], decode(decoder, codes[1, 3][None])[0], atol=1e-6)


def test_interpolations_join_digits_of_different_classes_end_to_end(
    test_digits: tuple[np.ndarray, np.ndarray],
) -> None:
    x_test, y_test = test_digits
    pairs = sampling.interpolation_pairs(y_test, 12)
    assert len(set(pairs)) == 12
    assert all(y_test[a] != y_test[b] for a, b in pairs)
    wae = nets(8)
    starts, ends = x_test[[a for a, _ in pairs[:3]]], x_test[[b for _, b in pairs[:3]]]
    path = sampling.interpolate(wae.encoder, wae.decoder, starts, ends, steps=6)
    assert path.shape == (3, 6, 28, 28, 1)
    # the walk starts at the reconstruction of the first digit and ends at that of the second
    np.testing.assert_allclose(path[:, 0], decode(wae.decoder, encode(wae.encoder, starts)), atol=1e-5)
    np.testing.assert_allclose(path[:, -1], decode(wae.decoder, encode(wae.encoder, ends)), atol=1e-5)


HISTORY = pd.DataFrame(
    {
        "epoch": [1, 2, 3],
        "train_recon": [3.0, 2.0, 1.5],
        "train_penalty": [0.1, 0.05, 0.02],
        "val_recon": [2.8, 2.1, 1.7],
        "val_penalty": [0.1, 0.06, 0.03],
        "images_per_sec": [900.0, 950.0, 940.0],
        "lr": [1e-3, 5e-4, 0.0],
        "train_disc": [1.3, 1.2, 1.1],  # gan runs only
    }
)


@pytest.mark.parametrize("latent_dim", [1, 2, 8, 12])
def test_evaluate_pictures_are_written_for_any_latent_size(latent_dim: int, tmp_path: Path) -> None:
    rng = np.random.default_rng(latent_dim)
    labels = rng.integers(0, 10, 1000)
    codes = rng.normal(size=(1000, latent_dim)) + labels[:, None] * 0.3
    figures = plots.evaluate_figures(codes, labels, prior_std=1.0, history=HISTORY)
    assert set(figures) == {
        "latent_boxplot.png",
        "latent_scatter.png",
        "latent_histograms.png",
        "training_curves.png",
    }
    box_panels = [ax for ax in figures["latent_boxplot.png"].axes if ax.get_visible() and ax.axison]
    assert len(box_panels) == min(latent_dim, 8)  # one panel per dim, capped at 8
    for name, figure in figures.items():
        save_figure(tmp_path / name, figure, dpi=50)
        assert (tmp_path / name).stat().st_size > 1000


def test_training_curves_plot_what_the_history_has() -> None:
    mmd_history = HISTORY.drop(columns=["train_disc"])
    titles = [ax.get_title() for ax in plots.training_curves(mmd_history).axes if ax.axison]
    assert titles[:2] == ["Reconstruction cost", "Penalty"] and "Discriminator loss" not in titles
    with pytest.raises(ValueError, match="expected columns"):
        plots.training_curves(pd.DataFrame({"epoch": [1], "something_else": [0.0]}))


def test_pictures_are_byte_identical_across_runs(tmp_path: Path) -> None:
    """DVC and MLflow see unchanged pictures as unchanged (no timestamps, no random jitter)."""
    rng = np.random.default_rng(0)
    codes, labels = rng.normal(size=(500, 1)), rng.integers(0, 10, 500)
    for attempt in ("a", "b"):
        save_figure(tmp_path / f"{attempt}.png", plots.latent_scatter(codes, labels), dpi=50)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
