"""DVC stage `evaluate`: score the trained WAE, its samples and its latent space.

Reads `evaluate` from params.yaml, models/wae/, models/classifier.keras, samples/samples.npy,
data/prepared/mnist.npz and reports/train/history.csv; writes reports/metrics.json (a flat dict
of floats, see wae.metrics for what each answers) and reports/evaluate/*.png. The numbers, the
pictures and metrics.json are logged to the training run in MLflow (folder "evaluate").
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import tensorflow as tf
from common import REPO, params, project_root, run

from wae import plots, tracking
from wae.atomic import save_figure, write_json
from wae.classifier import load_classifier
from wae.data import load_prepared
from wae.errors import WAEError
from wae.metrics import evaluate_wae
from wae.models import load_trained

DATA = REPO / "data/prepared/mnist.npz"
MODELS = REPO / "models/wae"
CLASSIFIER = REPO / "models/classifier.keras"
SAMPLES = REPO / "samples/samples.npy"
HISTORY = REPO / "reports/train/history.csv"
METRICS = REPO / "reports/metrics.json"
REPORTS = REPO / "reports/evaluate"


def main() -> None:
    p = params()
    config = p.evaluate
    tf.config.experimental.enable_op_determinism()  # same inputs, same metrics.json, bit for bit
    wae = load_trained(MODELS)
    judge = load_classifier(CLASSIFIER)
    splits = load_prepared(DATA)
    ref = tracking.read_run_ref(MODELS / "mlflow_run.json")  # fail before any work if train left none
    if not SAMPLES.is_file():
        raise WAEError(f"{SAMPLES} does not exist; run the sample stage first (`dvc repro sample`)")
    samples = np.load(SAMPLES, allow_pickle=False)
    history = pd.read_csv(HISTORY) if HISTORY.is_file() else None

    result = evaluate_wae(wae.encoder, wae.decoder, judge, splits, samples, wae.prior_std, config)
    write_json(METRICS, result.metrics)
    figures = plots.evaluate_figures(result.test_codes, splits.y_test, wae.prior_std, history)
    for name, figure in figures.items():
        save_figure(REPORTS / name, figure, dpi=100)

    with tracking.resumed_run(project_root(), ref):
        # MLflow params are immutable: settings of an evaluate-only rerun are recorded as tags.
        tracking.set_tags({f"evaluate.{k}": str(v) for k, v in dataclasses.asdict(config).items()})
        tracking.log_metrics(result.metrics)
        # The params the run's scores now stand for: a study finds its members by it (wae.studies).
        tracking.set_tags({"scores.params_digest": p.scores_digest()})
        tracking.log_artifact(METRICS, "evaluate")
        for name in figures:
            tracking.log_artifact(REPORTS / name, "evaluate")
    m = result.metrics
    print(
        f"evaluate: sample FCD {m['sample_fcd']:.2f}, recon FCD {m['recon_fcd']:.2f}, "
        f"recon MSE {m['test_recon_mse']:.4f}, latent MMD {m['latent_mmd']:.2e}, "
        f"probe accuracy {m['probe_accuracy']:.3f} -> {METRICS}"
    )


if __name__ == "__main__":
    run(main)
