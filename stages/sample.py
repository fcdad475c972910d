"""DVC stage `sample`: decode prior codes into digits, and picture what the latent space holds.

Reads `sample` from params.yaml, models/wae/ and data/prepared/mnist.npz; writes
samples/samples.npy (float32 N x 28 x 28 x 1 in [0, 1], scored by `evaluate`) and
reports/sample/{samples,reconstructions,interpolations,traversal}.png, which are also logged
to the training run in MLflow (folder "sample").
"""

from __future__ import annotations

import dataclasses

from common import REPO, params, project_root, run

from wae import plots, sampling, tracking
from wae.atomic import save_figure
from wae.data import load_prepared
from wae.models import load_trained

DATA = REPO / "data/prepared/mnist.npz"
MODELS = REPO / "models/wae"
SAMPLES = REPO / "samples/samples.npy"
REPORTS = REPO / "reports/sample"


def main() -> None:
    config = params().sample
    wae = load_trained(MODELS)
    splits = load_prepared(DATA)
    ref = tracking.read_run_ref(MODELS / "mlflow_run.json")  # fail before any work if train left none

    samples = sampling.generate(wae.decoder, config.n_samples, wae.latent_dim, wae.prior_std, config.seed)
    sampling.save_samples(SAMPLES, samples)
    views = sampling.latent_views(
        wae.encoder, wae.decoder, wae.latent_dim, wae.prior_std, splits.x_test, splits.y_test, config
    )
    figures = {
        "samples.png": plots.samples_figure(samples, config.grid_size),
        **plots.latent_view_figures(**vars(views), latent_dim=wae.latent_dim, prior_std=wae.prior_std),
    }
    for name, figure in figures.items():
        save_figure(REPORTS / name, figure, dpi=100)

    with tracking.resumed_run(project_root(), ref):
        # MLflow params are immutable: settings of a sample-only rerun are recorded as tags.
        tracking.set_tags({f"sample.{k}": str(v) for k, v in dataclasses.asdict(config).items()})
        for name in figures:
            tracking.log_artifact(REPORTS / name, "sample")
    print(
        f"sample: {len(samples)} digits from N(0, {wae.prior_std:g}² I) -> {SAMPLES}; pictures in {REPORTS}"
    )


if __name__ == "__main__":
    run(main)
