"""The whole pipeline as a user runs it: `dvc repro`, then what they look at and change.

One tiny project runs `dvc repro` once; the tests then read what a user would read: the MLflow run
(params, curves, pictures, scores of both latent samplers, the registered decoder, the fitted
mixture), `dvc plots show`, and what DVC reruns when only a `sample` param changes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml
from project import make_project, project_env, sh, write_params

from wae import samplers
from wae.models import decode, load_trained

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repro(tmp_path_factory, data_home_session) -> tuple[Path, dict[str, str], mlflow.MlflowClient]:
    env = project_env(data_home_session)
    root = make_project(tmp_path_factory.mktemp("pipeline"), env)
    sh(["dvc", "repro"], root, env)
    return root, env, mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")


def latent_dim(root: Path) -> int:
    """The project's `train.latent_dim`: the length of a code the decoder takes."""
    return yaml.safe_load((root / "params.yaml").read_text())["train"]["latent_dim"]


def the_run(root: Path, client: mlflow.MlflowClient) -> mlflow.entities.Run:
    run_id = json.loads((root / "models/wae/mlflow_run.json").read_text())["run_id"]
    return client.get_run(run_id)


def test_the_run_holds_params_curves_pictures_and_scores_in_range(repro):
    root, _, client = repro
    run = the_run(root, client)
    assert run.info.status == "FINISHED"
    assert run.data.params["train.penalty"] == "mmd" and run.data.params["data.train_subset"] == "3000"
    curve = client.get_metric_history(run.info.run_id, "val_recon")
    assert [m.step for m in curve] == [1, 2] and all(math.isfinite(m.value) for m in curve)

    metrics = json.loads((root / "reports/metrics.json").read_text())
    for key, value in metrics.items():
        assert math.isfinite(value), key
        assert run.data.metrics[key] == pytest.approx(value), key
    assert 0 < metrics["test_recon_mse"] < 0.1
    assert 0 <= metrics["test_recon_bce"] < 1
    assert metrics["sample_fcd"] >= 0 and metrics["recon_fcd"] >= 0
    assert 0.1 <= metrics["sample_confidence"] <= 1
    assert 0 <= metrics["sample_class_entropy"] <= math.log(10) + 1e-9
    assert 0 <= metrics["probe_accuracy"] <= 1 and metrics["latent_mmd"] > -0.1
    for prefix in ("", "gmm."):  # the prior's scores unprefixed, the mixture's under its name
        assert metrics[f"{prefix}sample_fcd"] >= 0
        for key in ("precision", "recall", "coverage"):
            assert 0 <= metrics[f"{prefix}sample_{key}"] <= 1, prefix + key
        assert metrics[f"{prefix}sample_density"] >= 0
    assert metrics["gmm.sample_fcd"] != metrics["sample_fcd"]

    artifacts = {
        a.path
        for folder in ("sample", "evaluate", "samplers")
        for a in client.list_artifacts(run.info.run_id, folder)
    }
    pictures = (
        "samples.png",
        "gmm_samples.png",
        "reconstructions.png",
        "interpolations.png",
        "traversal.png",
    )
    for picture in pictures:
        assert f"sample/{picture}" in artifacts
        assert (root / "reports/sample" / picture).is_file()
    assert {"samplers/prior.npz", "samplers/gmm.npz"} <= artifacts
    for picture in (
        "latent_boxplot.png",
        "latent_scatter.png",
        "latent_histograms.png",
        "training_curves.png",
    ):
        assert f"evaluate/{picture}" in artifacts


def test_the_registered_decoder_loads_through_pyfunc_and_decodes_a_batch(repro):
    root, _, client = repro
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    decoder = mlflow.pyfunc.load_model("models:/wae-decoder@current")
    codes = np.random.default_rng(0).standard_normal((4, latent_dim(root))).astype(np.float32)
    images = np.asarray(decoder.predict(codes))
    assert images.shape == (4, 28, 28, 1)
    assert images.min() >= 0 and images.max() <= 1 and images.std() > 0
    version = client.get_model_version_by_alias("wae-decoder", "current")
    assert version.run_id == the_run(root, client).info.run_id


def test_the_gmm_sampler_reloads_from_its_file_and_from_the_run_and_draws_the_same_digits(repro, tmp_path):
    root, _, client = repro
    run_id = the_run(root, client).info.run_id
    downloaded = client.download_artifacts(run_id, "samplers/gmm.npz", str(tmp_path))
    from_file, from_run = samplers.load(root / "models/samplers/gmm.npz"), samplers.load(downloaded)
    n, seed = 300, 1  # the tiny project's sample.n_samples and sample.seed
    codes = from_run.sample(n, seed)
    np.testing.assert_array_equal(codes, from_file.sample(n, seed))
    wae = load_trained(root / "models/wae")
    gmm_samples = np.load(root / "samples/gmm_samples.npy")
    np.testing.assert_allclose(decode(wae.decoder, codes), gmm_samples, atol=1e-5)
    assert not np.allclose(gmm_samples, np.load(root / "samples/samples.npy"), atol=1e-2)


def test_dvc_plots_show_renders_one_report_with_curves_and_pictures(repro, tmp_path):
    root, env, _ = repro
    sh(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], root, env)
    html = (tmp_path / "plots/index.html").read_text()
    assert "Training curves" in html and "val_recon" in html
    for picture in ("samples.png", "gmm_samples.png", "latent_boxplot.png", "preview.png"):
        assert picture in html, picture


def test_changing_only_a_sample_param_reruns_sample_and_evaluate_not_training(repro):
    root, env, client = repro
    before = client.search_runs([e.experiment_id for e in client.search_experiments()])
    weights = (root / "models/wae/decoder.keras").read_bytes()
    write_params(root, {"sample": {"seed": 7}})
    result = sh(["dvc", "repro"], root, env)
    ran = {line.split("'")[1] for line in result.stdout.splitlines() if line.startswith("Running stage")}
    assert ran == {"sample", "evaluate"}
    assert (root / "models/wae/decoder.keras").read_bytes() == weights
    after = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(after) == len(before), "no new MLflow run: the same model's run is updated"
    assert the_run(root, client).data.tags["sample.seed"] == "7"


def test_a_vae_baseline_is_one_dvc_experiment_away_and_lands_in_mlflow_with_its_scores(repro):
    """README: `dvc exp run -S train.penalty=kl -S train.lambda=0.01` retrains (the data and the judge are
    reused) and records a run whose saved encoder gives the mean code."""
    root, env, client = repro
    result = sh(["dvc", "exp", "run", "-S", "train.penalty=kl", "-S", "train.lambda=0.01"], root, env)
    ran = {line.split("'")[1] for line in result.stdout.splitlines() if line.startswith("Running stage")}
    assert ran == {"train", "sample", "evaluate"}
    run = the_run(root, client)
    assert run.info.status == "FINISHED" and run.data.params["train.penalty"] == "kl"
    assert float(run.data.params["train.lambda"]) == 0.01
    assert run.data.tags["dvc.exp_name"]
    for score in ("test_recon_mse", "latent_mmd", "sample_fcd", "probe_accuracy"):
        assert math.isfinite(run.data.metrics[score]), score
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_penalty")] == [1, 2]

    import keras

    encoder = keras.models.load_model(root / "models/wae/encoder.keras", safe_mode=True, compile=False)
    assert encoder.output_shape == (None, latent_dim(root))  # the mean code only
    assert "Data and pipelines are up to date." in sh(["dvc", "status"], root, env).stdout
