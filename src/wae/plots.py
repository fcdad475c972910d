"""Every picture of the pipeline, as matplotlib Figures (Agg, no pyplot state), drawn from arrays.

`prepare`'s preview, `sample`'s grids and latent views, `evaluate`'s latent plots and training
curves. This module computes nothing of a model: the arrays come from `wae.sampling` and
`wae.metrics`, and nothing in the library imports this module back.

Digits are drawn as in the reference post: cmap 'Greys', no ticks. Grey levels are fixed to
[0, 1] (vmin/vmax), so a faint sample looks faint instead of being stretched to full contrast.
Save with `wae.atomic.save_figure`.
"""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.colors import Colormap
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

PAD = 2  # pixels between digits in a montage, drawn light grey


def _greys() -> Colormap:
    return matplotlib.colormaps["Greys"].with_extremes(bad="#d9d9d9")  # the NaN padding between digits


def montage(images: np.ndarray) -> np.ndarray:
    """(rows, cols, H, W[, 1]) -> one (rows*(H+PAD)-PAD, cols*(W+PAD)-PAD) array, NaN between digits.

    One imshow of a montage is much faster than one Axes per digit for 15 x 15 grids.
    """
    images = np.asarray(images, np.float32)
    if images.ndim == 5:
        images = images[..., 0]
    rows, cols, h, w = images.shape
    canvas = np.full((rows * (h + PAD) - PAD, cols * (w + PAD) - PAD), np.nan, np.float32)
    for r in range(rows):
        for c in range(cols):
            canvas[r * (h + PAD) : r * (h + PAD) + h, c * (w + PAD) : c * (w + PAD) + w] = images[r, c]
    return canvas


def image_grid(
    images: np.ndarray,
    title: str,
    row_labels: list[str] | None = None,
    col_labels: list[str] | None = None,
    cell: float = 0.6,
) -> Figure:
    """A rows x cols grid of digits (rows, cols, 28, 28, 1) in one montage, optionally labelled."""
    rows, cols = images.shape[:2]
    side = images.shape[2]
    figure = Figure(figsize=(max(cols * cell + 1.2, 4.0), rows * cell + 0.9), layout="constrained")
    ax = figure.subplots()
    ax.imshow(montage(images), cmap=_greys(), vmin=0.0, vmax=1.0, interpolation="nearest")
    centres = [i * (side + PAD) + side / 2 - 0.5 for i in range(max(rows, cols))]
    ax.set_yticks(centres[:rows] if row_labels else [], row_labels or [], fontsize=8)
    ax.set_xticks(centres[:cols] if col_labels else [], col_labels or [], fontsize=8)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(title, fontsize=10)
    return figure


def samples_figure(samples: np.ndarray, grid_size: int, title: str = "Samples from the generator") -> Figure:
    """The post's final picture: a grid_size x grid_size grid 'Samples from the generator'."""
    figure = Figure(figsize=(8, 8))
    axes = figure.subplots(grid_size, grid_size, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.imshow(samples[i, :, :, 0], cmap="Greys", vmin=0.0, vmax=1.0)
        ax.grid(False)
        ax.set_xticks([])
        ax.set_yticks([])
    figure.suptitle(title)
    return figure


def reconstructions_figure(originals: np.ndarray, reconstructions: np.ndarray) -> Figure:
    """Test digits (top row) above their reconstructions (bottom row)."""
    originals = originals.astype(np.float32) / 255.0 if originals.dtype == np.uint8 else originals
    pair = np.stack([originals, np.asarray(reconstructions, np.float32)])
    return image_grid(pair, "Test digits and their reconstructions", row_labels=["test", "recon"])


def interpolations_figure(images: np.ndarray, row_labels: list[str]) -> Figure:
    """Rows of decoded points on straight latent lines between two encoded test digits."""
    steps = images.shape[1]
    col_labels = ["start"] + [""] * (steps - 2) + ["end"]
    return image_grid(
        images, "Linear interpolation in latent space between test digits", row_labels, col_labels
    )


def sigma_labels(steps: int, span: float = 3.0) -> list[str]:
    """Labels of `steps` points from -span to +span prior stds: whole stds only ("-3σ", "0"), others blank."""
    labels = []
    for value in np.linspace(-span, span, steps):
        whole = round(value)
        labels.append(("0" if whole == 0 else f"{whole:+d}σ") if abs(value - whole) < 1e-6 else "")
    return labels


def traversal_labels(
    latent_dim: int, rows: int, steps: int, span: float = 3.0
) -> tuple[list[str], list[str]]:
    """Row and column labels of a traversal (`wae.sampling.traversal_codes`): columns in prior stds;
    rows name the dimension, or (2-D) z_1's value, which runs from +span at the top to -span."""
    columns = sigma_labels(steps, span)
    if latent_dim == 2:
        return columns[::-1], columns
    return [f"z_{d}" for d in range(rows)], columns


def traversal_figure(images: np.ndarray, latent_dim: int, prior_std: float, span: float = 3.0) -> Figure:
    """The latent traversal (rows, steps, 28, 28, 1) of `wae.sampling.traversal`, labelled in prior stds."""
    rows, steps = images.shape[:2]
    sigma = f"σ = prior std = {prior_std:g}"
    if latent_dim == 1:
        title = f"The 1-D latent from -{span:g}σ to +{span:g}σ ({sigma})"
    elif latent_dim == 2:
        title = f"The decoded 2-D latent: z_0 left to right, z_1 bottom to top ({sigma})"
    else:
        shown = "" if rows == latent_dim else f" (first {rows} of {latent_dim})"
        title = f"One latent dimension at a time{shown}, others 0 ({sigma})"
    row_labels, col_labels = traversal_labels(latent_dim, rows, steps, span)
    return image_grid(images, title, row_labels, col_labels)


def latent_view_figures(
    originals: np.ndarray,
    reconstructions: np.ndarray,
    interpolations: np.ndarray,
    interpolation_labels: list[str],
    traversal: np.ndarray,
    traversal_span: float,
    latent_dim: int,
    prior_std: float,
) -> dict[str, Figure]:
    """The pictures of `sample` besides the sample grids, by file name (`wae.sampling.latent_views`)."""
    return {
        "reconstructions.png": reconstructions_figure(originals, reconstructions),
        "interpolations.png": interpolations_figure(interpolations, interpolation_labels),
        "traversal.png": traversal_figure(traversal, latent_dim, prior_std, traversal_span),
    }


def preview_figure(images: np.ndarray, labels: np.ndarray, rows: int = 4) -> Figure:
    """`prepare`'s rows x rows grid of digits titled by their label, to eyeball that images and labels agree."""
    figure = Figure(figsize=(rows * 1.2, rows * 1.3), layout="constrained")
    axes = figure.subplots(rows, rows, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i < len(images):
            ax.imshow(images[i].squeeze(-1) if images[i].ndim == 3 else images[i], cmap="Greys")
            ax.set_title(str(int(labels[i])), fontsize=9)
        else:
            ax.set_axis_off()
    return figure


# --- Latent space -----------------------------------------------------------------------------


def _panels(n: int, ncols: int, size: tuple[float, float]) -> tuple[Figure, list]:
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    figure = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    axes = list(figure.subplots(nrows, ncols, squeeze=False).flat)
    for ax in axes[n:]:
        ax.set_axis_off()
    return figure, axes[:n]


def latent_boxplot(codes: np.ndarray, labels: np.ndarray, max_dims: int = 8) -> Figure:
    """The post's `sns.catplot(y='embedding_0', x='label', kind='box')`, one panel per latent dim."""
    import seaborn as sns

    dims = min(codes.shape[1], max_dims)
    frame = pd.DataFrame(codes[:, :dims], columns=[f"embedding_{d}" for d in range(dims)])
    frame["label"] = np.asarray(labels).astype(int)
    figure, axes = _panels(dims, 4, (4.0, 3.0))
    for d, ax in enumerate(axes):
        sns.boxplot(data=frame, x="label", y=f"embedding_{d}", ax=ax, fliersize=1, color="#8fb3d9")
    shown = "" if dims == codes.shape[1] else f" (first {dims} of {codes.shape[1]} dims)"
    figure.suptitle(f"Encoded test digits by label{shown}")
    return figure


def latent_scatter(codes: np.ndarray, labels: np.ndarray, seed: int = 0) -> Figure:
    """Test codes coloured by digit: dims 0 and 1 (PCA to 2-D above 2 dims; 1-D: code vs jittered label)."""
    codes = np.asarray(codes, np.float64)
    labels = np.asarray(labels).astype(int)
    if codes.shape[1] == 1:
        jitter = np.random.default_rng(seed).uniform(-0.3, 0.3, len(labels))
        x, y, xlabel, ylabel = labels + jitter, codes[:, 0], "label (jittered)", "embedding_0"
    elif codes.shape[1] == 2:
        x, y, xlabel, ylabel = codes[:, 0], codes[:, 1], "embedding_0", "embedding_1"
    else:
        centred = codes - codes.mean(axis=0)
        _, singular, vt = np.linalg.svd(centred, full_matrices=False)
        # Fix each component's sign (the largest loading positive) so reruns draw the same picture.
        vt *= np.sign(vt[np.arange(len(vt)), np.argmax(np.abs(vt), axis=1)])[:, None]
        projected = centred @ vt[:2].T
        share = singular**2 / np.sum(singular**2)
        x, y = projected[:, 0], projected[:, 1]
        xlabel, ylabel = f"PC 1 ({share[0]:.0%} of variance)", f"PC 2 ({share[1]:.0%})"
    figure = Figure(figsize=(7, 6), layout="constrained")
    ax = figure.subplots()
    cmap = matplotlib.colormaps["tab10"]
    for digit in range(10):
        mask = labels == digit
        ax.scatter(x[mask], y[mask], s=2, alpha=0.5, color=cmap(digit), label=str(digit), rasterized=True)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(title="label", markerscale=5, loc="best", fontsize=8)
    ax.set_title("Encoded test digits")
    return figure


def latent_histograms(codes: np.ndarray, prior_std: float, max_dims: int = 16) -> Figure:
    """Histogram of each code dimension over the prior density N(0, prior_std^2): the curve a WAE aims for."""
    dims = min(codes.shape[1], max_dims)
    figure, axes = _panels(dims, 4, (3.2, 2.4))
    for d, ax in enumerate(axes):
        values = codes[:, d]
        ax.hist(values, bins=60, density=True, color="#8fb3d9", label="encoded test digits")
        low = min(float(values.min()), -4 * prior_std)
        high = max(float(values.max()), 4 * prior_std)
        grid = np.linspace(low, high, 400)
        density = np.exp(-0.5 * (grid / prior_std) ** 2) / (prior_std * math.sqrt(2 * math.pi))
        ax.plot(grid, density, color="#c0392b", lw=1.5, label=f"prior N(0, {prior_std:g}²)")
        ax.set_title(f"embedding_{d}", fontsize=9)
        ax.set_yticks([])
    axes[0].legend(fontsize=7, loc="upper left")
    shown = "" if dims == codes.shape[1] else f" (first {dims} of {codes.shape[1]} dims)"
    figure.suptitle(f"Encoded test digits against the prior{shown}")
    return figure


# --- Training ---------------------------------------------------------------------------------

_CURVES = (
    ("Reconstruction cost", ("train_recon", "val_recon")),
    ("Penalty", ("train_penalty", "val_penalty")),
    ("Discriminator loss", ("train_disc",)),
    ("Learning rate", ("lr",)),
    ("Throughput (images/s)", ("images_per_sec",)),
)


def training_curves(history: pd.DataFrame) -> Figure:
    """One panel per quantity of reports/train/history.csv, train and validation together, by epoch."""
    groups = [(title, [c for c in cols if c in history]) for title, cols in _CURVES]
    groups = [(title, cols) for title, cols in groups if cols]
    if not groups:
        raise ValueError(f"history has none of the expected columns; found {list(history.columns)}")
    figure, axes = _panels(len(groups), 3, (4.0, 3.0))
    epochs = history["epoch"] if "epoch" in history else np.arange(1, len(history) + 1)
    for ax, (title, cols) in zip(axes, groups, strict=True):
        for col in cols:
            ax.plot(epochs, history[col], marker="o", ms=3, label=col)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(cols) > 1:
            ax.legend(fontsize=8)
    figure.suptitle("Training")
    return figure


def evaluate_figures(
    test_codes: np.ndarray, test_labels: np.ndarray, prior_std: float, history: pd.DataFrame | None
) -> dict[str, Figure]:
    """The pictures of `evaluate`, by file name (training curves only when a history is given)."""
    figures = {
        "latent_boxplot.png": latent_boxplot(test_codes, test_labels),
        "latent_scatter.png": latent_scatter(test_codes, test_labels),
        "latent_histograms.png": latent_histograms(test_codes, prior_std),
    }
    if history is not None:
        figures["training_curves.png"] = training_curves(history)
    return figures


# --- Studies (wae.studies, wae.study_report) ----------------------------------------------------


def _study_panels(summary: pd.DataFrame, metrics: list[str]) -> tuple[Figure, list, list[str]]:
    shown = [m for m in metrics if m in set(summary["metric"])]
    if not shown:
        raise ValueError(f"no member has any of the metrics {metrics}")
    figure, axes = _panels(len(shown), 3, (4.2, 3.2))
    return figure, axes, shown


def _sampler_styles(summary: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """Each sampler's colour and legend label ('' is the model's scores, which have no sampler)."""
    samplers = sorted(set(summary["sampler"]), key=lambda s: (s != "", s != "prior", s))
    cmap = matplotlib.colormaps["tab10"]
    return {s: (cmap(i), s or "model") for i, s in enumerate(samplers)}


def study_bars(summary: pd.DataFrame, values: pd.DataFrame, metrics: list[str], title: str) -> Figure:
    """One panel per metric: a bar per setting (and sampler) at the mean over seeds, an error bar
    of ± one std, and each seed's value as a dot. Frames as in wae.study_report."""
    figure, axes, shown = _study_panels(summary, metrics)
    styles = _sampler_styles(summary)
    settings = summary.drop_duplicates("order").sort_values("order")
    positions = {order: i for i, order in enumerate(settings["order"])}
    for ax, metric in zip(axes, shown, strict=True):
        part = summary[summary["metric"] == metric]
        samplers = [s for s in styles if s in set(part["sampler"])]
        width = 0.8 / len(samplers)
        for k, sampler in enumerate(samplers):
            colour, label = styles[sampler]
            rows = part[part["sampler"] == sampler]
            offset = (k - (len(samplers) - 1) / 2) * width
            x = np.array([positions[o] for o in rows["order"]]) + offset
            ax.bar(
                x,
                rows["mean"],
                width * 0.9,
                yerr=rows["std"].fillna(0),
                capsize=3,
                color=colour,
                alpha=0.6,
                label=label if len(samplers) > 1 else None,
            )
            seeds = values[(values["metric"] == metric) & (values["sampler"] == sampler)]
            ax.plot(
                np.array([positions[o] for o in seeds["order"]]) + offset,
                seeds["value"],
                "o",
                color="black",
                ms=2.5,
            )
        ax.set_xticks(range(len(settings)), [str(s) for s in settings["setting"]], fontsize=8)
        ax.set_title(metric, fontsize=10)
        positive = part["mean"][part["mean"] > 0]
        if metric.endswith("fcd") and len(positive) == len(part) and positive.max() > 10 * positive.min():
            ax.set_yscale("log")  # FCDs spanning orders of magnitude: the small ones stay readable
            ax.set_title(f"{metric} (log scale)", fontsize=10)
        if len(samplers) > 1:
            ax.legend(fontsize=7)
    figure.suptitle(title)
    return figure


def study_curves(
    summary: pd.DataFrame, values: pd.DataFrame, metrics: list[str], title: str, x_label: str, log_x: bool
) -> Figure:
    """One panel per metric against the varied value: mean over seeds with ± one std error bars,
    one line per sampler, each seed's value as a dot; the x axis logarithmic when `log_x`."""
    figure, axes, shown = _study_panels(summary, metrics)
    styles = _sampler_styles(summary)
    ticks = sorted({float(s) for s in summary["setting"]})
    for ax, metric in zip(axes, shown, strict=True):
        part = summary[summary["metric"] == metric]
        for sampler in [s for s in styles if s in set(part["sampler"])]:
            colour, label = styles[sampler]
            rows = part[part["sampler"] == sampler].sort_values("setting")
            x = rows["setting"].astype(float)
            ax.errorbar(
                x,
                rows["mean"],
                yerr=rows["std"].fillna(0),
                marker="o",
                ms=4,
                capsize=3,
                color=colour,
                label=label,
            )
            seeds = values[(values["metric"] == metric) & (values["sampler"] == sampler)]
            ax.plot(seeds["setting"].astype(float), seeds["value"], ".", color=colour, alpha=0.4, ms=4)
        if log_x:
            ax.set_xscale("log")
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks], fontsize=8)
        ax.minorticks_off()
        ax.set_xlabel(x_label)
        ax.set_title(metric, fontsize=10)
        if len(set(part["sampler"])) > 1:
            ax.legend(fontsize=7)
    figure.suptitle(title)
    return figure
