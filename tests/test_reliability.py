"""Interrupted, diverging or badly configured runs lose nothing and say why; reruns are bit-identical.

These tests drive the real pipeline (`dvc repro`, the stage scripts) in a throw-away copy of the
project with tiny params, and read the real MLflow store it writes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import zipfile
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest
import yaml
from project import REPO, sh, shipped_with, stage_command, write_params

from wae.atomic import atomic_path, save_keras, save_npz, write_text
from wae.config import ConfigError, load_params, params_from_dict
from wae.errors import WAEError
from wae.models import load_trained

pytestmark = pytest.mark.slow


def runs(root: Path) -> list[mlflow.entities.Run]:
    if not (root / "mlflow.db").exists():
        return []
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def weights(root: Path) -> list[np.ndarray]:
    trained = load_trained(root / "models/wae")
    return trained.encoder.get_weights() + trained.decoder.get_weights()


# ---------------------------------------------------------------------------- params
@pytest.mark.parametrize(
    ("section", "key", "value", "named"),
    [
        ("train", "penalty", "wgan", "train.penalty = 'wgan'"),
        ("train", "architecture", "resnet", "train.architecture = 'resnet'"),
        ("train", "latent_dim", 0, "train.latent_dim = 0"),
        ("train", "lambda", -1.0, "train.lambda = -1.0"),
        ("train", "batch_size", 0, "train.batch_size = 0"),
        ("train", "lr", 0.0, "train.lr = 0.0"),
        ("train", "disc_lr", -1e-3, "train.disc_lr = -0.001"),
        ("train", "epochs", "ten", "train.epochs = 'ten'"),
        ("data", "val_size", 70000, "data.val_size = 70000"),
        ("mlflow", "model_alias", "latest", "mlflow.model_alias = 'latest'"),
    ],
)
def test_a_bad_value_names_the_key_the_value_and_what_is_allowed(section, key, value, named):
    with pytest.raises(ConfigError, match="expected") as err:
        params_from_dict(shipped_with({section: {key: value}}))
    assert named in str(err.value)


def test_a_typo_in_a_key_suggests_the_closest_valid_key():
    with pytest.raises(ConfigError, match=r"unknown key train\.lamda; did you mean train\.lambda\?"):
        params_from_dict(shipped_with({"train": {"lamda": 5}}))
    with pytest.raises(ConfigError, match="unknown key trian; did you mean train"):
        params_from_dict(shipped_with({"trian": {}}))


def test_the_library_defaults_are_the_shipped_params():
    # The dataclass defaults serve code that builds a config by hand: they must not drift from params.yaml.
    from wae.config import Params

    assert load_params(REPO / "params.yaml") == Params()


def test_a_missing_key_is_named_with_the_line_to_add():
    params = shipped_with({})
    shipped = (params["train"]["lambda"], params["sample"]["seed"])
    del params["train"]["lambda"], params["sample"]["seed"]
    with pytest.raises(ConfigError) as err:
        params_from_dict(params)
    message = str(err.value)
    assert "missing train.lambda, sample.seed" in message
    assert (
        f"  train:\n    lambda: {shipped[0]}" in message and f"  sample:\n    seed: {shipped[1]}" in message
    )


def test_sizes_that_cannot_fit_in_memory_are_named_before_any_work():
    with pytest.raises(ConfigError, match=r"sample\.n_samples = 100000000 needs about \d+ GiB"):
        params_from_dict(shipped_with({"sample": {"n_samples": 10**8}}))
    with pytest.raises(ConfigError, match=r"train\.latent_dim = 1000000000 needs about"):
        params_from_dict(shipped_with({"train": {"latent_dim": 10**9}}))
    # The same batch fits a bigger machine: the bound is this machine's memory.
    big = shipped_with({"train": {"batch_size": 20000}})
    with pytest.raises(
        ConfigError, match=r"train\.batch_size = 20000 needs about \d+ GiB .* this machine's 8 GiB"
    ):
        params_from_dict(big, memory_bytes=8 * 2**30)
    assert params_from_dict(big, memory_bytes=2**50).train.batch_size == 20000


def test_params_are_read_with_a_safe_yaml_loader(tmp_path):
    evil = tmp_path / "params.yaml"
    evil.write_text(f"train: !!python/object/apply:os.system ['touch {tmp_path}/pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(evil)
    assert not (tmp_path / "pwned").exists()


def test_the_shipped_params_and_every_preset_are_valid():
    from wae.presets import PRESETS

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    load_params(REPO / "params.yaml")
    for preset in PRESETS.values():
        params_from_dict({**params, "train": {**params["train"], **preset}})


def _drop_train_lambda(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.strip().startswith("lambda:"))


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (
            lambda text: text.replace("lambda:", "lamda:"),
            "unknown key train.lamda; did you mean train.lambda?",
        ),
        (_drop_train_lambda, "missing train.lambda"),
        (lambda text: "", "the file is empty"),
        (lambda text: text.replace("classifier:", "classifier: fast\nold_classifier:"), "classifier must be"),
        (
            lambda text: text.replace("n_samples: 300", "n_samples: 300000000", 1),
            "sample.n_samples = 300000000",
        ),
    ],
    ids=["extra key", "missing key", "empty file", "section not a mapping", "too big for memory"],
)
def test_bad_params_fail_the_pipeline_before_any_work_and_leave_nothing(never_run_project, edit, says):
    root, env = never_run_project
    params = root / "params.yaml"
    params.write_text(edit(params.read_text()))
    result = sh(["dvc", "repro"], root, env, check=False)
    assert result.returncode != 0
    if "empty" in says:  # DVC reads the file first, and names the keys its first stage lacks
        assert re.search(r"Parameters '(data\.\w+(, )?){4}' are missing from 'params.yaml'", result.stderr)
    else:
        assert says in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    # The stage itself, as DVC runs it, says what is wrong and exits 2.
    stage = sh(stage_command("prepare"), root, env, check=False)
    assert stage.returncode == 2 and says in stage.stderr and "Traceback" not in stage.stderr
    assert not (root / "data").exists() and not (root / "models").exists() and not (root / "reports").exists()
    assert runs(root) == []


def test_a_bad_train_param_creates_no_mlflow_run(tiny_project):
    root, env = tiny_project
    sh(["dvc", "repro", "prepare"], root, env)
    write_params(root, {"train": {"learning_rate": 0.1}})
    result = sh(stage_command("train"), root, env, check=False)
    assert result.returncode == 2
    assert "unknown key train.learning_rate" in result.stderr
    assert "Traceback" not in result.stderr
    assert runs(root) == [] and not (root / "models").exists()


# ---------------------------------------------------------------------------- divergence
def test_divergence_stops_with_where_and_why_keeps_the_last_good_checkpoint_and_runs_nothing_after(
    tiny_project,
):
    root, env = tiny_project
    # Epoch 1 trains normally; from epoch 2 the learning rate is multiplied by 1e12.
    write_params(
        root, {"train": {"epochs": 3, "lr_schedule": "piecewise", "lr_milestones": [1], "lr_factors": [1e12]}}
    )
    secret = "s3cr3t-token-value"
    result = sh(["dvc", "repro"], root, {**env, "AWS_SECRET_ACCESS_KEY": secret}, check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert re.search(r"training diverged at epoch 2, step \d+/30", output), output[-3000:]
    assert "reconstruction" in output and "penalty" in output

    (run,) = runs(root)
    assert run.info.status == "FAILED"
    assert "diverged at epoch 2" in run.data.tags["failure_reason"]
    assert secret not in json.dumps({**run.data.params, **run.data.tags})

    state = json.loads((root / "checkpoints/train/state.json").read_text())
    assert state["epoch"] == 1 and len(state["history"]) == 1
    assert not (root / "models/wae").exists()
    assert not (root / "samples").exists() and not (root / "reports/metrics.json").exists()


# ---------------------------------------------------------------------------- interrupt, resume, rerun
def start(args: list[str], root: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """Start a command with its output readable line by line, in its own process group
    (as a terminal's foreground job, so that a Ctrl-C reaches all of it)."""
    return subprocess.Popen(
        args,
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def wait_for_line(process: subprocess.Popen[str], pattern: str, timeout: float) -> list[str]:
    deadline, lines = time.monotonic() + timeout, []
    for line in process.stdout:
        lines.append(line)
        if re.search(pattern, line):
            return lines
        if time.monotonic() > deadline:
            break
    process.kill()
    raise AssertionError(f"never saw {pattern!r}:\n{''.join(lines[-40:])}")


def model_files(root: Path) -> dict[str, bytes]:
    """The judge, the networks and the fitted samplers, by path."""
    found = [*root.glob("models/**/*.keras"), *root.glob("models/samplers/*.npz")]
    assert len(found) >= 4, found
    return {str(path.relative_to(root)): path.read_bytes() for path in found}


def test_ctrl_c_saves_marks_the_run_killed_and_dvc_repro_resumes_to_the_same_result(tiny_project):
    root, env = tiny_project
    write_params(root, {"train": {"epochs": 4, "steps_per_execution": 1}})
    process = start(["dvc", "repro"], root, env)
    wait_for_line(process, r"epoch 1/4", timeout=300)
    sent = time.monotonic()
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: SIGINT to the terminal's whole foreground group
    rest = process.communicate(timeout=60)[0]
    assert time.monotonic() - sent < 20, "training did not stop within seconds"
    assert process.returncode != 0
    assert "rerun the same command to resume" in rest, rest[-3000:]
    (killed,) = runs(root)
    assert killed.info.status == "KILLED"
    assert "SIGINT" in killed.data.tags["failure_reason"]
    assert (root / "checkpoints/train/state.json").exists()
    assert not (root / "models/wae").exists()

    resumed = sh(["dvc", "repro"], root, env)
    assert "resum" in resumed.stdout.lower()
    resumed_weights = weights(root)
    samples = (root / "samples/samples.npy").read_bytes()
    metrics = (root / "reports/metrics.json").read_bytes()
    models = model_files(root)
    assert not (root / "checkpoints/train").exists(), "a finished run's checkpoint is cleared"

    # From scratch, uninterrupted (every stage, the judge included): a forced rerun gives the same bytes.
    sh(["dvc", "repro", "-f"], root, env)
    straight_weights = weights(root)
    assert all(np.array_equal(a, b) for a, b in zip(resumed_weights, straight_weights, strict=True))
    assert (root / "samples/samples.npy").read_bytes() == samples
    assert (root / "reports/metrics.json").read_bytes() == metrics
    assert model_files(root) == models, "the same models are the same files (DVC keeps later stages)"

    statuses = sorted(run.info.status for run in runs(root))
    assert statuses == ["FINISHED", "FINISHED", "KILLED"]


def test_sigterm_to_the_train_stage_saves_a_checkpoint_and_a_rerun_resumes_it(tiny_project):
    root, env = tiny_project
    sh(["dvc", "repro", "prepare"], root, env)
    write_params(root, {"train": {"epochs": 3, "steps_per_execution": 1}})
    process = start(stage_command("train"), root, env)
    wait_for_line(process, r"epoch 1/3", timeout=300)
    process.send_signal(signal.SIGTERM)
    rest = process.communicate(timeout=60)[0]
    assert process.returncode != 0 and "SIGTERM" in rest, rest[-3000:]
    (killed,) = runs(root)
    assert killed.info.status == "KILLED"
    state = json.loads((root / "checkpoints/train/state.json").read_text())
    assert state["epoch"] >= 1

    resumed = sh(stage_command("train"), root, env)
    assert "resuming" in resumed.stdout
    history = (root / "reports/train/history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in history[1:]] == ["1", "2", "3"]
    assert sorted(run.info.status for run in runs(root)) == ["FINISHED", "KILLED"]


def test_changed_params_never_resume_a_stale_checkpoint(tiny_project):
    root, env = tiny_project
    write_params(
        root, {"train": {"epochs": 3, "lr_schedule": "piecewise", "lr_milestones": [1], "lr_factors": [1e12]}}
    )
    sh(["dvc", "repro", "train"], root, env, check=False)  # diverges, leaving an epoch-1 checkpoint
    assert (root / "checkpoints/train/state.json").exists()
    write_params(
        root, {"train": {"epochs": 2, "lr_schedule": "constant", "lr_milestones": [], "lr_factors": []}}
    )
    result = sh(["dvc", "repro", "train"], root, env)
    assert "resum" not in result.stdout.lower()
    history = (root / "reports/train/history.csv").read_text().splitlines()
    assert len(history) == 1 + 2


# ---------------------------------------------------------------------------- atomic outputs, safe loading
def test_a_failed_write_leaves_the_previous_file_and_no_temporary_behind(tmp_path):
    target = tmp_path / "metrics.json"
    write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_a_failed_folder_write_leaves_the_previous_folder(tmp_path):
    target = tmp_path / "models"
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "encoder.keras").write_text("v1")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "encoder.keras").write_text("v2, half")
        raise RuntimeError("crash")
    assert (target / "encoder.keras").read_text() == "v1"
    assert [p.name for p in tmp_path.iterdir()] == ["models"]


def test_a_model_built_and_saved_twice_has_the_same_bytes_and_loads_back(tmp_path):
    """A retrained, identical model is an unchanged file for DVC: no save time, no memory address."""
    from wae.classifier import build_classifier, load_classifier

    saved = []
    for name in ("first.keras", "second.keras"):
        keras.backend.clear_session()  # as in a new process: layer names start again
        keras.utils.set_random_seed(0)
        save_keras(tmp_path / name, build_classifier())  # new Python objects, at new addresses
        saved.append(tmp_path / name)
        time.sleep(1.1)  # a later second on the clock
    assert saved[0].read_bytes() == saved[1].read_bytes()
    assert b"shared_object_id" in zipfile.ZipFile(saved[0]).read("config.json"), "the ids were exercised"
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    built, loaded = build_classifier(), load_classifier(saved[0])
    assert len(loaded.weights) == len(built.weights)
    for ours, theirs in zip(loaded.weights, built.weights, strict=True):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_a_saved_array_file_has_the_same_bytes_whenever_it_is_saved(tmp_path):
    save_npz(tmp_path / "a.npz", means=np.arange(6.0).reshape(2, 3))
    time.sleep(1.1)
    save_npz(tmp_path / "b.npz", means=np.arange(6.0).reshape(2, 3))
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    np.testing.assert_array_equal(np.load(tmp_path / "b.npz")["means"], np.arange(6.0).reshape(2, 3))


def test_models_are_loaded_in_keras_safe_mode(tmp_path):
    folder = tmp_path / "wae"
    folder.mkdir()
    unsafe = keras.Sequential([keras.Input((8,)), keras.layers.Lambda(lambda z: z * 2)])
    unsafe.save(folder / "encoder.keras")
    unsafe.save(folder / "decoder.keras")
    (folder / "model_info.json").write_text(json.dumps({"latent_dim": 8, "prior_std": 1.0}))
    with pytest.raises(WAEError, match="no trained model"):
        load_trained(folder)


def _commands(path: Path) -> list[str]:
    """Lines of a Makefile's recipes, or of a Markdown file's fenced code blocks."""
    lines = path.read_text().splitlines()
    if path.suffix != ".md":
        return [line for line in lines if line.startswith("\t")]
    fenced, inside = [], False
    for line in lines:
        if line.lstrip().startswith("```"):
            inside = not inside
        elif inside:
            fenced.append(line)
    return fenced


def test_every_server_command_in_the_docs_binds_to_loopback():
    texts = [REPO / "README.md", REPO / "Makefile", *sorted((REPO / "docs").glob("*.md"))]
    commands = [
        line.split("#")[0]
        for path in texts
        for line in _commands(path)
        if re.search(r"mlflow (ui|server|models serve)\b", line.split("#")[0])
    ]
    assert commands, "the docs show how to start the MLflow UI"
    for line in commands:
        assert "--host 127.0.0.1" in line, f"a server command that does not bind to loopback: {line}"
