"""DVC stage `sample`: decode codes from each latent sampler into digits, and picture the latent space.

Reads `sample` from params.yaml, the trained model (--models) and the prepared split. For each
sampler of `sample.samplers` (wae.samplers) it fits the sampler to the encoded training digits, saves
it to --samplers/<name>.npz, and writes --samples/<stem>.npy (float32 N x 28 x 28 x 1 in [0, 1],
scored by `evaluate`) and the grid --reports/<stem>.png; the prior's stem is `samples` (the post's
picture), the others' `<name>_samples`. Also reconstructions.png, interpolations.png and
traversal.png in --reports. Pictures and fitted samplers are logged to the training run in MLflow
(folders "sample" and "samplers").
"""

from __future__ import annotations

import dataclasses

from common import params, paths, project_root, run

from wae import plots, samplers, sampling, tracking
from wae.atomic import save_figure
from wae.data import load_prepared
from wae.models import decode, encode, load_trained


def main() -> None:
    files = paths(
        __doc__,
        prepared="the prepared split",
        models="folder of the trained networks",
        samplers="folder of the fitted samplers",
        samples="folder of the samples (one .npy per sampler)",
        reports="folder of the pictures",
    )
    config = params().sample
    wae = load_trained(files.models)
    splits = load_prepared(files.prepared)
    ref = tracking.read_run_ref(files.models / "mlflow_run.json")  # fail before any work if train left none

    needs_codes = any(samplers.SAMPLERS[name].uses_codes for name in config.samplers)
    train_codes = encode(wae.encoder, splits.x_train) if needs_codes else None
    figures, fitted = {}, {}
    for name in config.samplers:
        sampler = samplers.fit(name, train_codes, wae.latent_dim, wae.prior_std, config)
        fitted[name] = files.samplers / f"{name}.npz"
        samplers.save(fitted[name], sampler)
        samples = decode(wae.decoder, sampler.sample(config.n_samples, config.seed))
        stem = samplers.samples_stem(name)
        sampling.save_samples(files.samples / f"{stem}.npy", samples)
        title = "Samples from the generator"
        if name != samplers.PRIOR:
            title += f"\n({sampler.description})"
        figures[f"{stem}.png"] = plots.samples_figure(samples, config.grid_size, title)
        print(f"sample: {len(samples)} digits from {sampler.description} -> {files.samples / stem}.npy")

    views = sampling.latent_views(
        wae.encoder, wae.decoder, wae.latent_dim, wae.prior_std, splits.x_test, splits.y_test, config
    )
    figures.update(
        plots.latent_view_figures(**vars(views), latent_dim=wae.latent_dim, prior_std=wae.prior_std)
    )
    for name, figure in figures.items():
        save_figure(files.reports / name, figure, dpi=100)

    with tracking.resumed_run(project_root(), ref):
        # MLflow params are immutable: settings of a sample-only rerun are recorded as tags.
        tracking.set_tags({f"sample.{k}": str(v) for k, v in dataclasses.asdict(config).items()})
        for name in figures:
            tracking.log_artifact(files.reports / name, "sample")
        for path in fitted.values():
            tracking.log_artifact(path, "samplers")
    print(f"sample: pictures in {files.reports}, fitted samplers in {files.samplers}")


if __name__ == "__main__":
    run(main)
