"""DVC stage `evaluate`: score the trained WAE, its samples and its latent space.

Reads `evaluate` and `sample.samplers` from params.yaml, the trained model, the classifier, the
samples (one array per sampler, as `sample` wrote them), the prepared split and the training history;
writes --metrics (a flat dict of floats, see wae.metrics for what each answers; each sampler's scores
under its prefix) and the pictures in --reports. The numbers, the pictures and the metrics file are
logged to the training run in MLflow (folder "evaluate"), whose description becomes a summary (each
sampler's scores and sample grid), and the decoder version that `train` registered is tagged with the
scores.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import tensorflow as tf
from common import params, paths, project_root, run

from wae import plots, samplers, tracking
from wae.atomic import save_figure, write_json
from wae.classifier import load_classifier
from wae.data import load_prepared
from wae.errors import WAEError
from wae.metrics import evaluate_wae
from wae.models import load_trained


def main() -> None:
    files = paths(
        __doc__,
        prepared="the prepared split",
        models="folder of the trained networks",
        classifier="the judge (.keras)",
        samples="folder of the samples (one .npy per sampler)",
        history="per-epoch losses (CSV)",
        metrics="the scores (JSON)",
        reports="folder of the pictures",
    )
    p = params()
    config = p.evaluate
    tf.config.experimental.enable_op_determinism()  # same inputs, same metrics.json, bit for bit
    wae = load_trained(files.models)
    judge = load_classifier(files.classifier)
    splits = load_prepared(files.prepared)
    ref = tracking.read_run_ref(files.models / "mlflow_run.json")  # fail before any work if train left none
    arrays = {name: files.samples / f"{samplers.samples_stem(name)}.npy" for name in p.sample.samplers}
    for path in arrays.values():
        if not path.is_file():
            raise WAEError(f"{path} does not exist; run the sample stage first (`dvc repro sample`)")
    samples = {name: np.load(path, allow_pickle=False) for name, path in arrays.items()}
    history = pd.read_csv(files.history) if files.history.is_file() else None

    result = evaluate_wae(wae.encoder, wae.decoder, judge, splits, samples, wae.prior_std, config)
    write_json(files.metrics, result.metrics)
    figures = plots.evaluate_figures(result.test_codes, splits.y_test, wae.prior_std, history)
    for name, figure in figures.items():
        save_figure(files.reports / name, figure, dpi=100)

    with tracking.resumed_run(project_root(), ref):
        # MLflow params are immutable: settings of an evaluate-only rerun are recorded as tags.
        tracking.set_tags({f"evaluate.{k}": str(v) for k, v in dataclasses.asdict(config).items()})
        tracking.log_metrics(result.metrics)
        # The params the run's scores now stand for: a study finds its members by it (wae.studies).
        tracking.set_tags({"scores.params_digest": p.scores_digest()})
        tracking.log_artifact(files.metrics, "evaluate")
        for name in figures:
            tracking.log_artifact(files.reports / name, "evaluate")
        # The grids the sample stage logged into this run, one per sampler.
        grids = {
            f"Samples ({name})": f"sample/{samplers.samples_stem(name)}.png" for name in p.sample.samplers
        }
        tracking.describe_run(result.metrics, grids)
        tracking.tag_registered_versions(ref["run_id"], result.metrics)
    m = result.metrics
    for name in samples:
        prefix = samplers.metric_prefix(name)
        print(
            f"evaluate: {name} samples: FCD {m[prefix + 'sample_fcd']:.2f}, "
            f"precision {m[prefix + 'sample_precision']:.3f}, recall {m[prefix + 'sample_recall']:.3f}, "
            f"density {m[prefix + 'sample_density']:.3f}, coverage {m[prefix + 'sample_coverage']:.3f}"
        )
    print(
        f"evaluate: recon FCD {m['recon_fcd']:.2f}, recon MSE {m['test_recon_mse']:.4f}, "
        f"latent MMD {m['latent_mmd']:.2e}, probe accuracy {m['probe_accuracy']:.3f} -> {files.metrics}"
    )


if __name__ == "__main__":
    run(main)
