"""The README's tracking-server commands, run verbatim against real services on 127.0.0.1.

A real `mlflow server` (SQLite store, local artifact folder) receives a whole `dvc repro`; the run is read
back through the REST client, and the registered decoder is served by `mlflow models serve` and asked to
decode latent codes. Only the ports differ from the README.
"""

from __future__ import annotations

import json
import math
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml
from project import make_project, project_env, sh
from servers import (
    HOST,
    Service,
    command_starting,
    free_port,
    readme_commands,
    start_mlflow_server,
    start_service,
)

pytestmark = pytest.mark.slow

COMMANDS = readme_commands("Compare runs")
LATENT_DIM = 12  # params.yaml train.latent_dim, the length of the README's example code


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, data_home_session: Path):
    """The README's `mlflow server`, started in a folder of its own, on a free port."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    command = command_starting(COMMANDS, "mlflow server").replace("--port 5000", f"--port {port}")
    assert f"--host {HOST}" in command and str(port) in command
    service = start_mlflow_server(command, folder, project_env(data_home_session), port)
    yield service
    service.stop()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, data_home_session: Path, server: Service):
    """A tiny project whose environment has the README's `export MLFLOW_TRACKING_URI=...` applied."""
    root = tmp_path_factory.mktemp("server-project") / "project"
    root.mkdir()
    export = command_starting(COMMANDS, "export MLFLOW_TRACKING_URI=")
    uri = export.split("=", 1)[1].replace(":5000", f":{server.url.rsplit(':', 1)[1]}")
    assert uri == server.url
    env = project_env(data_home_session, MLFLOW_TRACKING_URI=uri)
    make_project(root, env)
    return root, env


def test_a_pipeline_run_logs_to_the_tracking_server_and_reads_back_through_rest(project, server, tmp_path):
    root, env = project
    sh(command_starting(COMMANDS, "dvc repro"), root, env)

    client = mlflow.MlflowClient(server.url)
    experiment = client.get_experiment_by_name("wae-mnist")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    params = yaml.safe_load((root / "params.yaml").read_text())
    assert float(run.data.params["train.lambda"]) == params["train"]["lambda"]
    curve = client.get_metric_history(run.info.run_id, "train_recon")
    assert [m.step for m in curve] == list(range(1, int(run.data.params["train.epochs"]) + 1))
    for score in ("sample_fcd", "recon_fcd", "test_recon_mse", "latent_mmd"):
        assert math.isfinite(run.data.metrics[score]), score
    assert run.data.tags["git.commit"] and run.data.tags["data.digest"]

    picture = Path(client.download_artifacts(run.info.run_id, "sample/samples.png", str(tmp_path)))
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any(a.path.startswith("evaluate/") for a in client.list_artifacts(run.info.run_id, "evaluate"))
    version = client.get_model_version_by_alias("wae-decoder", "current")
    assert version.run_id == run.info.run_id

    ref = json.loads((root / "models/wae/mlflow_run.json").read_text())
    assert ref["run_id"] == run.info.run_id and ref["tracking_uri"] == server.url
    assert not (root / "mlflow.db").exists() and not (root / "mlartifacts").exists(), "nothing logged locally"
    server_folder = server.log.parent
    assert any((server_folder / "mlartifacts").rglob("samples.png")), "artifacts land in the server's folder"


def test_the_registered_decoder_is_served_and_turns_codes_into_images(project, server, tmp_path):
    root, env = project
    port = free_port()
    serve = command_starting(COMMANDS, "mlflow models serve").replace("-p 5001", f"-p {port}")
    assert f"--host {HOST}" in serve and "models:/wae-decoder@current" in serve
    model_server = start_service(serve, root, env, f"http://{HOST}:{port}", "/ping", tmp_path / "serve.log")
    try:
        curl = command_starting(COMMANDS, "curl").replace(":5001/", f":{port}/")
        one = np.asarray(json.loads(sh(curl, root, env).stdout)["predictions"])
        assert one.shape == (1, 28, 28, 1)

        codes = np.random.default_rng(0).normal(size=(5, LATENT_DIM)).round(4).tolist()
        request = urllib.request.Request(
            f"{model_server.url}/invocations",
            data=json.dumps({"inputs": codes}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            images = np.asarray(json.loads(response.read())["predictions"])
    finally:
        model_server.stop()

    assert images.shape == (5, 28, 28, 1)
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert images.std(axis=0).mean() > 1e-3, "different codes decode to different digits"
    assert one.min() >= 0.0 and one.max() <= 1.0
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{model_server.url}/ping", timeout=5)
