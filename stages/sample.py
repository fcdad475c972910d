"""DVC stage `sample`: decode prior codes into digits, and picture what the latent space holds.

Reads `sample` from params.yaml, the trained model (--models) and the prepared split; writes the
samples (--samples: float32 N x 28 x 28 x 1 in [0, 1], scored by `evaluate`) and, in --reports,
samples.png, reconstructions.png, interpolations.png and traversal.png, which are also logged to
the training run in MLflow (folder "sample").
"""

from __future__ import annotations

import dataclasses

from common import params, paths, project_root, run

from wae import sampling, tracking
from wae.atomic import save_figure
from wae.data import load_prepared
from wae.models import load_trained


def main() -> None:
    files = paths(
        __doc__,
        prepared="the prepared split",
        models="folder of the trained networks",
        samples="the samples (.npy)",
        reports="folder of the pictures",
    )
    config = params().sample
    wae = load_trained(files.models)
    splits = load_prepared(files.prepared)
    ref = tracking.read_run_ref(files.models / "mlflow_run.json")  # fail before any work if train left none

    samples = sampling.generate(wae.decoder, config.n_samples, wae.latent_dim, wae.prior_std, config.seed)
    sampling.save_samples(files.samples, samples)
    figures = sampling.sample_figures(
        wae.encoder, wae.decoder, wae.latent_dim, wae.prior_std, samples, splits.x_test, splits.y_test, config
    )
    for name, figure in figures.items():
        save_figure(files.reports / name, figure, dpi=100)

    with tracking.resumed_run(project_root(), ref):
        # MLflow params are immutable: settings of a sample-only rerun are recorded as tags.
        tracking.set_tags({f"sample.{k}": str(v) for k, v in dataclasses.asdict(config).items()})
        for name in figures:
            tracking.log_artifact(files.reports / name, "sample")
    print(
        f"sample: {len(samples)} digits from N(0, {wae.prior_std:g}² I) -> {files.samples}; pictures in {files.reports}"
    )


if __name__ == "__main__":
    run(main)
