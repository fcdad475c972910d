"""DVC stage `sample`: decode codes from each latent sampler into digits, and picture the latent space.

Reads `sample` from params.yaml, models/wae/ and data/prepared/mnist.npz. For each sampler of
`sample.samplers` (wae.samplers) it fits the sampler to the encoded training digits, saves it to
models/samplers/<name>.npz, and writes samples/<stem>.npy (float32 N x 28 x 28 x 1 in [0, 1],
scored by `evaluate`) and the grid reports/sample/<stem>.png; the prior's stem is `samples`
(the post's picture), the others' `<name>_samples`. Also reports/sample/{reconstructions,
interpolations,traversal}.png. Pictures and fitted samplers are logged to the training run in
MLflow (folders "sample" and "samplers").
"""

from __future__ import annotations

import dataclasses

from common import REPO, params, project_root, run

from wae import plots, samplers, sampling, tracking
from wae.atomic import save_figure
from wae.data import load_prepared
from wae.models import decode, encode, load_trained

DATA = REPO / "data/prepared/mnist.npz"
MODELS = REPO / "models/wae"
SAMPLERS = REPO / "models/samplers"
SAMPLES = REPO / "samples"
REPORTS = REPO / "reports/sample"


def main() -> None:
    config = params().sample
    wae = load_trained(MODELS)
    splits = load_prepared(DATA)
    ref = tracking.read_run_ref(MODELS / "mlflow_run.json")  # fail before any work if train left none

    needs_codes = any(samplers.SAMPLERS[name].uses_codes for name in config.samplers)
    train_codes = encode(wae.encoder, splits.x_train) if needs_codes else None
    figures, fitted = {}, {}
    for name in config.samplers:
        sampler = samplers.fit(name, train_codes, wae.latent_dim, wae.prior_std, config)
        fitted[name] = SAMPLERS / f"{name}.npz"
        samplers.save(fitted[name], sampler)
        samples = decode(wae.decoder, sampler.sample(config.n_samples, config.seed))
        stem = samplers.samples_stem(name)
        sampling.save_samples(SAMPLES / f"{stem}.npy", samples)
        title = "Samples from the generator"
        if name != samplers.PRIOR:
            title += f"\n({sampler.description})"
        figures[f"{stem}.png"] = plots.samples_figure(samples, config.grid_size, title)
        print(f"sample: {len(samples)} digits from {sampler.description} -> {SAMPLES / stem}.npy")

    views = sampling.latent_views(
        wae.encoder, wae.decoder, wae.latent_dim, wae.prior_std, splits.x_test, splits.y_test, config
    )
    figures.update(
        plots.latent_view_figures(**vars(views), latent_dim=wae.latent_dim, prior_std=wae.prior_std)
    )
    for name, figure in figures.items():
        save_figure(REPORTS / name, figure, dpi=100)

    with tracking.resumed_run(project_root(), ref):
        # MLflow params are immutable: settings of a sample-only rerun are recorded as tags.
        tracking.set_tags({f"sample.{k}": str(v) for k, v in dataclasses.asdict(config).items()})
        for name in figures:
            tracking.log_artifact(REPORTS / name, "sample")
        for path in fitted.values():
            tracking.log_artifact(path, "samplers")
    print(f"sample: pictures in {REPORTS}, fitted samplers in {SAMPLERS}")


if __name__ == "__main__":
    run(main)
