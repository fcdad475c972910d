"""Scaling out, checked on this CPU: strategies, mixed precision, XLA, and a team's shared
DVC remote, MLflow server, multi-worker training and sweep.

`docs/scaling.md` is the user's page; these tests run its commands where one host can: two
logical CPUs stand in for two GPUs, clones of one project for machines, two processes on
127.0.0.1 for two workers, a local folder for the team's DVC remote, and a local
`mlflow server` (SQLite and a folder in place of PostgreSQL and S3) for the team's server.

TensorFlow fixes its devices when it starts, and mixed precision is a process-wide Keras
setting, so every TensorFlow scenario runs in a fresh Python process: this file, run as a
script (`python tests/test_distribute.py SCENARIO MNIST_DIR OUT.json`), trains and writes what it
measured to JSON, and the tests judge it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml
from project import make_project, project_env, sh, stage_command, write_params
from servers import HOST, free_port, start_mlflow_server

HERE = Path(__file__).resolve()
LOSSES = ("train_recon", "train_penalty", "train_disc", "val_recon", "val_penalty")

# Measured on 2 cores (docs/scaling.md, "How exact is it"): mirrored GAN losses differ from one
# device by < 2e-6 relative (float summation order only); the bounds leave a margin.
GAN_RTOL = 1e-3
# MMD runs per replica on its half of the batch (documented): the same unbiased estimator, on fewer
# pairs, with no cross-replica pairs, so its gradient differs a little and training drifts slowly.
MMD_RECON_RTOL = 2e-2  # measured 3.3e-3 over 12 steps
MMD_PENALTY_ATOL = 0.05  # measured 0.016 (the penalty itself is 0.17 to 1.7 here)
# bfloat16 keeps 8 bits of mantissa: mirrored and one device round differently. Measured: 1.4e-3
# where the CPU computes bfloat16 natively (AMX); 1.4e-2 on the GAN's validation penalty where it is
# emulated (AVX2 only, AMD EPYC), 12 steps in. A replica that skipped the gradient average would
# take steps of twice the size: tens of percent off.
BF16_RTOL = 3e-2
# Two worker processes through the whole `train` stage: 60 GAN steps, over which the adversarial
# game amplifies round-off (another all-reduce order) to 1.4e-3 relative on the penalty (measured).
PIPELINE_RTOL = 1e-2


# ====================================================================== scenarios (subprocess side)
def _split_cpu(n: int = 2) -> None:
    """Show TensorFlow n logical CPUs, as if the host had n accelerators (before TF starts)."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)


def _digits(mnist_dir: str, n: int):
    from wae.data import load_mnist

    return load_mnist(mnist_dir).x_train[:n, :, :, None]


def _train(config, x, **fit_args):
    """A seeded trainer and the history of its fit (seeded: same config, same initial weights)."""
    from wae.training import WAETrainer, seed_everything

    seed_everything(config.seed)
    trainer = WAETrainer(config, x, x[:200])
    result = trainer.fit(progress=False, **fit_args)
    return trainer, [{k: row[k] for k in LOSSES if k in row} for row in result.history]


def _fit_steps(trainer, steps: int) -> None:
    """Train for a few steps only (stopped as a signal would stop it)."""
    from wae.errors import TrainingInterrupted
    from wae.stopping import StopAfterSteps

    with contextlib.suppress(TrainingInterrupted):
        trainer.fit(progress=False, stop=StopAfterSteps(steps))


def _weights(trainer) -> list:
    """Every network's weights: the auto-encoder's, then the discriminator's (if any)."""
    return [v.numpy() for net in trainer.networks().values() for v in net.weights]


def _optimizer_state(trainer) -> list:
    return [v.numpy() for player in trainer.players for v in player.optimizer.variables]


def _max_diff(a: list, b: list) -> float:
    import numpy as np

    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True))


def scenario_strategies(mnist_dir: str, out: Path) -> dict:
    """Each penalty 3 epochs x 4 steps under `none` and `mirrored`; cross-strategy resume; XLA."""
    _split_cpu()
    from wae.checkpoints import Checkpointer
    from wae.config import TrainConfig
    from wae.training import WAETrainer

    x = _digits(mnist_dir, 400)  # batch 100: 4 steps an epoch
    # Pinned, so that a change of defaults does not move the measured tolerances.
    base = TrainConfig(
        batch_size=100,
        epochs=3,
        steps_per_execution=4,
        seed=3,
        lr=1e-3,
        lr_schedule="constant",
        lambda_=10.0,
        latent_dim=8,
        precision="float32",  # `auto` is bfloat16 on CPUs that have it natively: see below
    )
    report: dict = {}
    for penalty in ("gan", "mmd"):
        cfg = dataclasses.replace(base, penalty=penalty)
        single, single_history = _train(dataclasses.replace(cfg, strategy="none"), x)
        mirrored, mirrored_history = _train(dataclasses.replace(cfg, strategy="mirrored"), x)
        report[penalty] = {
            "replicas": [single.strategy.num_replicas_in_sync, mirrored.strategy.num_replicas_in_sync],
            "none": single_history,
            "mirrored": mirrored_history,
            "max_weight_diff": _max_diff(_weights(single), _weights(mirrored)),
        }
    # bfloat16 compute (what `precision: auto` picks on CPUs with native bfloat16): no loss scaling.
    cfg = dataclasses.replace(base, penalty="gan", precision="mixed_bfloat16")
    single, single_history = _train(dataclasses.replace(cfg, strategy="none"), x)
    mirrored, mirrored_history = _train(dataclasses.replace(cfg, strategy="mirrored"), x)
    report["gan_bfloat16"] = {
        "replicas": [single.strategy.num_replicas_in_sync, mirrored.strategy.num_replicas_in_sync],
        "compute_dtype": mirrored.models.encoder.layers[0].compute_dtype,
        "optimizer": type(mirrored.players[-1].optimizer).__name__,
        "none": single_history,
        "mirrored": mirrored_history,
    }
    # A checkpoint written after epoch 1 under one strategy, resumed under the other.
    cfg = dataclasses.replace(base, penalty="gan")
    for writer, reader in (("mirrored", "none"), ("none", "mirrored")):
        folder = out.parent / f"checkpoint-{writer}"
        written, _ = _train(dataclasses.replace(cfg, strategy=writer, epochs=1), x, checkpoint_dir=folder)
        resumed = WAETrainer(dataclasses.replace(cfg, strategy=reader), x, x[:200])
        Checkpointer(resumed, folder, fingerprint="").restore()
        restored_equal = (
            _max_diff(_weights(written), _weights(resumed)) == 0.0
            and _max_diff(_optimizer_state(written), _optimizer_state(resumed)) == 0.0
        )
        result = resumed.fit(checkpoint_dir=folder, progress=False)
        report[f"{writer}->{reader}"] = {
            "replicas": resumed.strategy.num_replicas_in_sync,
            "restored_equal": restored_equal,
            "resumed_from_epoch": result.resumed_from_epoch,
            "history": [{k: row[k] for k in LOSSES if k in row} for row in result.history],
        }
    # XLA, on one device and on two replicas: 2 epochs, to compare with the GAN runs above.
    for name, strategy in (("xla", "none"), ("xla_mirrored", "mirrored")):
        trainer, history = _train(dataclasses.replace(cfg, strategy=strategy, epochs=2, xla=True), x)
        report[name] = {"replicas": trainer.strategy.num_replicas_in_sync, "history": history}
    return report


def scenario_mixed_precision(mnist_dir: str, out: Path) -> dict:
    """A few float16 steps (slow on CPU) under `none` and `mirrored`, and a one-replica overflow."""
    _split_cpu()
    import keras
    import numpy as np
    import tensorflow as tf

    from wae.config import TrainConfig
    from wae.training import WAETrainer, seed_everything

    x = _digits(mnist_dir, 64)
    cfg = TrainConfig(penalty="gan", batch_size=8, epochs=1, seed=3, precision="mixed_float16")
    report: dict = {}
    for strategy in ("none", "mirrored"):
        seed_everything(cfg.seed)
        trainer = WAETrainer(dataclasses.replace(cfg, strategy=strategy), x)
        policy_after_build = keras.mixed_precision.global_policy().name
        before = _weights(trainer)
        _fit_steps(trainer, 4)
        after = _weights(trainer)
        n_encoder = len(trainer.models.encoder.weights) + len(trainer.models.decoder.weights)
        report[strategy] = {
            "replicas": trainer.strategy.num_replicas_in_sync,
            "global_policy_after_build": policy_after_build,
            "compute_dtype": trainer.models.encoder.layers[0].compute_dtype,
            "variable_dtype": trainer.models.encoder.layers[0].variable_dtype,
            "optimizers": [type(p.optimizer).__name__ for p in trainer.players],
            "loss_scales": [float(p.optimizer.dynamic_scale.numpy()) for p in trainer.players],
            "loss_sums": trainer.loss_sums.numpy().tolist(),
            "weights_finite": all(bool(np.isfinite(w).all()) for w in after),
            "autoencoder_moved": _max_diff(before[:n_encoder], after[:n_encoder]) > 0,
            "discriminator_moved": _max_diff(before[n_encoder:], after[n_encoder:]) > 0,
        }
    # Float16 gradients that overflow on the second replica only: every replica must skip the step.
    seed_everything(cfg.seed)
    trainer = WAETrainer(dataclasses.replace(cfg, strategy="mirrored"), x)
    game = trainer._compiled_game
    autoencoder = trainer.players[-1]

    def overflow_on_second_replica(images, draws, seed):
        losses, grads = game(images, draws, seed)
        second = tf.equal(tf.distribute.get_replica_context().replica_id_in_sync_group, 1)
        grads[-1] = [tf.where(second, g + float("inf"), g) for g in grads[-1]]  # the auto-encoder's
        return losses, grads

    trainer._compiled_game = overflow_on_second_replica
    before = _weights(trainer)
    scale_before = float(autoencoder.optimizer.dynamic_scale.numpy())
    _fit_steps(trainer, 1)
    n_ae = len(trainer.models.encoder.weights) + len(trainer.models.decoder.weights)
    report["one_replica_overflows"] = {
        "autoencoder_unchanged": _max_diff(before[:n_ae], _weights(trainer)[:n_ae]) == 0.0,
        "scale_halved": float(autoencoder.optimizer.dynamic_scale.numpy()) == scale_before / 2,
    }
    return report


SCENARIOS = {
    "strategies": scenario_strategies,
    "mixed_precision": scenario_mixed_precision,
}


# ====================================================================== the tests (pytest side)
def run_scenario(name: str, mnist_dir: Path, folder: Path, timeout: float = 900) -> dict:
    """Run a scenario in its own process. The timeout only catches a hang: the strategies scenario
    took 188 s alone on a 2-core AVX2 CPU (bfloat16 emulated), over 300 s beside other work."""
    out = folder / f"{name}.json"
    result = subprocess.run(
        [sys.executable, str(HERE), name, str(mnist_dir), str(out)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CI": "1"},
    )
    assert result.returncode == 0, (
        f"scenario {name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    )
    return json.loads(out.read_text())


def assert_close(a: list[dict], b: list[dict], rtol: float, keys=LOSSES) -> None:
    assert len(a) == len(b)
    for row_a, row_b in zip(a, b, strict=True):
        for key in keys:
            if key in row_a:
                assert math.isclose(row_a[key], row_b[key], rel_tol=rtol), (key, row_a, row_b)


@pytest.fixture(scope="module")
def strategies(tmp_path_factory: pytest.TempPathFactory, mnist_dir: Path) -> dict:
    """One process with 2 logical CPUs runs every strategy scenario once (TF starts once)."""
    return run_scenario("strategies", mnist_dir, tmp_path_factory.mktemp("strategies"))


@pytest.mark.slow
def test_mirrored_gan_matches_one_device(strategies: dict) -> None:
    """The global batch split over 2 replicas gives the one-device losses, epoch by epoch.

    Each replica divides its losses by the number of replicas, so the summed gradients are the
    global mean: both optimisers take the same steps as on one device, up to float summation order.
    """
    gan = strategies["gan"]
    assert gan["replicas"] == [1, 2]
    assert_close(gan["mirrored"], gan["none"], rtol=GAN_RTOL)
    assert gan["max_weight_diff"] < 1e-2  # Adam amplifies round-off a little, but the weights agree


@pytest.mark.slow
def test_mirrored_mmd_matches_one_device_within_its_estimate(strategies: dict) -> None:
    """MMD is computed per replica on its half of the batch, as docs/scaling.md says.

    That estimate is unbiased like the global one but uses fewer pairs (and no pairs across
    replicas), so its gradient differs slightly: the reconstruction still matches closely, the
    penalty within MMD_PENALTY_ATOL.
    """
    mmd = strategies["mmd"]
    assert mmd["replicas"] == [1, 2]
    assert_close(mmd["mirrored"], mmd["none"], rtol=MMD_RECON_RTOL, keys=("train_recon", "val_recon"))
    for row_m, row_n in zip(mmd["mirrored"], mmd["none"], strict=True):
        for key in ("train_penalty", "val_penalty"):
            assert abs(row_m[key] - row_n[key]) < MMD_PENALTY_ATOL, (key, row_m, row_n)


@pytest.mark.slow
def test_mirrored_bfloat16_matches_one_device(strategies: dict) -> None:
    """`precision: mixed_bfloat16` (the `auto` choice on CPUs with native bfloat16) under `mirrored`:
    bfloat16 compute, float32 range so no loss scaling, and the one-device losses within BF16_RTOL."""
    bf16 = strategies["gan_bfloat16"]
    assert bf16["replicas"] == [1, 2]
    assert (bf16["compute_dtype"], bf16["optimizer"]) == ("bfloat16", "Adam")
    assert_close(bf16["mirrored"], bf16["none"], rtol=BF16_RTOL)


@pytest.mark.slow
@pytest.mark.parametrize("direction", ["mirrored->none", "none->mirrored"])
def test_checkpoint_resumes_under_the_other_strategy(strategies: dict, direction: str) -> None:
    """Weights and optimiser state saved under one strategy load exactly under the other,
    and the resumed run goes on as an uninterrupted one would."""
    resumed = strategies[direction]
    assert resumed["replicas"] == (1 if direction.endswith("none") else 2)
    assert resumed["restored_equal"]
    assert resumed["resumed_from_epoch"] == 1
    assert_close(resumed["history"], strategies["gan"]["none"], rtol=GAN_RTOL)


@pytest.mark.slow
def test_xla_trains_like_plain_tensorflow(strategies: dict) -> None:
    """train.xla compiles each replica's forward and backward pass; on CPU it must still train,
    alone and under `mirrored`, to the plain run's losses (XLA fuses differently: round-off only)."""
    plain = strategies["gan"]["none"][:2]
    assert (strategies["xla"]["replicas"], strategies["xla_mirrored"]["replicas"]) == (1, 2)
    for name in ("xla", "xla_mirrored"):
        history = strategies[name]["history"]
        assert all(math.isfinite(v) for row in history for v in row.values())
        assert history[1]["train_recon"] < history[0]["train_recon"]  # it learns
        assert_close(history, plain, rtol=GAN_RTOL)


@pytest.mark.slow
def test_mixed_precision_trains_on_cpu(tmp_path: Path, mnist_dir: Path) -> None:
    """mixed_float16: float16 compute, float32 weights, loss scaling on both optimisers."""
    report = run_scenario("mixed_precision", mnist_dir, tmp_path)
    for strategy, replicas in (("none", 1), ("mirrored", 2)):
        run = report[strategy]
        assert run["replicas"] == replicas
        assert run["global_policy_after_build"] == "float32"  # the process-wide policy is left alone
        assert (run["compute_dtype"], run["variable_dtype"]) == ("float16", "float32")
        assert run["optimizers"] == ["LossScaleOptimizer", "LossScaleOptimizer"]
        assert all(math.isfinite(v) for v in run["loss_sums"])
        assert run["weights_finite"]
        # Early steps overflow in float16 and are skipped while the scale comes down; by the
        # fourth step both players have been updated.
        assert all(1 <= s <= 2**15 for s in run["loss_scales"])
        assert run["autoencoder_moved"] and run["discriminator_moved"]
    # Not compared across strategies: whether float16 gradients overflow depends on partial sums,
    # so one device may skip a step (and halve its scale) that two replicas take, or the reverse.
    # Keras decides skip-or-apply from the first replica's own gradients; the trainer shares an
    # overflow on any replica, so no inf reaches the weights.
    assert report["one_replica_overflows"] == {"autoencoder_unchanged": True, "scale_halved": True}


# ---------------------------------------------------------------------- a team: remote, server, workers
DOC = HERE.parents[1] / "docs" / "scaling.md"
ORIGIN_URL = "git@git.team.internal:ml/wae.git"
TEAM_SERVER = "http://mlflow.team.internal:5000"
SET_UP = (
    " && cd wae && make setup TF=gpu && source .venv/bin/activate",
    " && cd wae && make setup && source .venv/bin/activate",
)


def doc_blocks(section: str) -> list[list[str]]:
    """The commands of each fenced block of docs/scaling.md section `## {section}`, comments stripped."""
    text = DOC.read_text()
    match = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"docs/scaling.md has no section '## {section}'"
    blocks = re.findall(r"^```bash\n(.*?)^```", match.group(1), flags=re.M | re.S)
    return [[line.split(" #")[0].strip() for line in b.splitlines() if line.strip()] for b in blocks]


def here(command: str, places: dict[str, str]) -> str:
    """A documented command with the team's places (hosts, paths) replaced by this host's."""
    for documented, local in places.items():
        command = command.replace(documented, local)
    return command


def clone_command(command: str, origin: Path, dest: Path) -> list[str]:
    """The documented `git clone URL && cd wae && make setup ...`, as `git clone ORIGIN DEST`
    (the test environment already has the virtualenv on PATH)."""
    for set_up in SET_UP:
        command = command.replace(set_up, "")
    assert shlex.split(command) == ["git", "clone", ORIGIN_URL], command
    return ["git", "clone", "-q", str(origin), str(dest)]


@pytest.fixture(scope="module")
def team_server(tmp_path_factory: pytest.TempPathFactory, data_home_session: Path):
    """The documented `mlflow server`, with SQLite and a folder for PostgreSQL and S3, on 127.0.0.1."""
    folder = tmp_path_factory.mktemp("team-mlflow")
    port = free_port()
    (command,) = [
        c
        for c in doc_blocks("A team's MLflow server: PostgreSQL and S3-compatible artifacts")[1]
        if "mlflow server" in c
    ]
    command = here(
        command,
        {
            "/opt/mlflow/bin/mlflow": "mlflow",
            "postgresql://mlflow:change-me@db.team.internal:5432/mlflow": f"sqlite:///{folder / 'mlflow.db'}",
            "s3://wae-mlflow/artifacts": str(folder / "artifacts"),
            "--host 127.0.0.1 --port 5000": f"--host {HOST} --port {port}",
            "--workers 4": "--workers 1",
            "mlflow.team.internal:5000,mlflow.team.internal": f"{HOST}:{port},{HOST}",
        },
    )
    service = start_mlflow_server(command, folder, project_env(data_home_session), port)
    yield service
    service.stop()


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory, data_home_session: Path):
    """A tiny project (GAN, one device) with a git origin and the documented shared DVC remote,
    trained once and shared as docs/scaling.md says."""
    env = project_env(data_home_session)
    base = tmp_path_factory.mktemp("team")
    # WAE-GAN, with training params pinned so that a change of defaults leaves PIPELINE_RTOL's margin
    # (float32: `auto` would compute in bfloat16 on CPUs that have it).
    train = {"penalty": "gan", "lr": 0.001, "lambda": 10.0, "precision": "float32"}
    laptop = make_project(base / "laptop", env, {"train": train})
    origin, remote = base / "origin.git", base / "dvc-remote"
    sh(["git", "init", "-q", "--bare", "-b", "main", str(origin)], base, env)
    sh(["git", "remote", "add", "origin", str(origin)], laptop, env)
    sh(["git", "push", "-q", "-u", "origin", "main"], laptop, env)
    add_remote, _s3, share, _clone = doc_blocks("A DVC remote for data and models")
    for command in add_remote:
        sh(here(command, {"/mnt/team/wae-dvc": str(remote)}), laptop, env)
    assert share == ["dvc repro", 'git add dvc.lock reports && git commit -m "Train" && dvc push && git push']
    for command in share:
        sh(command, laptop, env)
    return laptop, origin, remote, env


@pytest.mark.slow
def test_dvc_pull_restores_data_and_models_in_a_fresh_clone(team, tmp_path: Path) -> None:
    """docs/scaling.md "A DVC remote": a colleague's clone gets the data and the model, unrun."""
    laptop, origin, remote, env = team
    assert any(p.is_file() for p in remote.rglob("*")), "dvc push wrote nothing to the remote"
    (clone, pull, status) = doc_blocks("A DVC remote for data and models")[3]
    colleague = tmp_path / "colleague"
    sh(clone_command(clone, origin, colleague), tmp_path, env)
    assert not (colleague / "models/wae").exists()
    sh(pull, colleague, env)
    for path in ("data/prepared/mnist.npz", "models/wae/decoder.keras", "reports/metrics.json"):
        assert (colleague / path).read_bytes() == (laptop / path).read_bytes(), path
    assert "Data and pipelines are up to date." in sh(status, colleague, env).stdout


@pytest.mark.slow
def test_two_workers_train_the_pipeline_like_one_device(team, team_server, tmp_path: Path) -> None:
    """docs/scaling.md "Several workers": two clones (two machines) on 127.0.0.1 with TF_CONFIG.

    Each pulls the prepared data from the DVC remote; the chief runs the documented `dvc repro` and the
    other worker the stage's script, with `train.strategy: multi_worker`. Together they train as one
    device would on the same global batch (within PIPELINE_RTOL); the chief alone keeps the model and
    reports and logs the one run on the team's MLflow server; worker 1 exits cleanly, writing nothing.
    """
    laptop, team_origin, _, env = team
    commit, clone_and_pull, chief, other = doc_blocks("Several workers with `TF_CONFIG`")[:4]
    assert other[-1] == " ".join(stage_command("train")), (
        "the documented command is the stage's, as dvc.yaml runs it"
    )
    origin = tmp_path / "origin.git"  # a copy: the commit pushed below stays out of the other tests
    sh(["git", "clone", "-q", "--bare", str(team_origin), str(origin)], tmp_path, env)
    planner = tmp_path / "planner"
    sh(["git", "clone", "-q", str(origin), str(planner)], tmp_path, env)
    write_params(planner, {"train": {"strategy": "multi_worker"}})
    sh(commit[0], planner, env)
    ports = [free_port(), free_port()]
    places = {
        "gpu-box-1:2222": f"127.0.0.1:{ports[0]}",
        "gpu-box-2:2222": f"127.0.0.1:{ports[1]}",
        TEAM_SERVER: team_server.url,
    }
    clones = [tmp_path / "worker0", tmp_path / "worker1"]
    workers = []
    try:
        for clone, script in zip(clones, (chief, other), strict=True):
            sh(clone_command(clone_and_pull[0], origin, clone), tmp_path, env)
            sh(clone_and_pull[1], clone, env)
            workers.append(start(here("\n".join(script), places), clone, env))
        outputs = [process.communicate(timeout=400)[0] for process in workers]
    finally:
        for process in workers:
            process.kill()
    assert [process.returncode for process in workers] == [0, 0], [out[-3000:] for out in outputs]

    import mlflow
    import pandas as pd

    one_device = pd.read_csv(laptop / "reports/train/history.csv").to_dict("records")
    two_workers = pd.read_csv(clones[0] / "reports/train/history.csv").to_dict("records")
    assert_close(
        two_workers, one_device, rtol=PIPELINE_RTOL, keys=("train_recon", "train_penalty", "train_disc")
    )
    assert "worker 1: trained with the chief" in outputs[1]
    for output in ("models", "checkpoints", "mlflow.db", "mlartifacts"):
        assert not (clones[1] / output).exists(), f"worker 1 wrote {output}"
    # The reports in git (the history, the metrics) are as worker 1's clone checked them out.
    assert sh(["git", "status", "--porcelain"], clones[1], env).stdout == "", "worker 1 changed its clone"
    ref = json.loads((clones[0] / "models/wae/mlflow_run.json").read_text())
    client = mlflow.MlflowClient(team_server.url)
    experiment_id = client.get_experiment_by_name("wae-mnist").experiment_id
    (run,) = client.search_runs(experiment_id, "params.`train.strategy` = 'multi_worker'")
    assert run.info.run_id == ref["run_id"] and run.info.status == "FINISHED"
    assert [v.run_id for v in client.search_model_versions(f"run_id = '{run.info.run_id}'")] == [
        ref["run_id"]
    ]


@pytest.mark.slow
def test_two_workers_stop_together_on_a_sigterm_and_resume_into_one_mlflow_run(tiny_project) -> None:
    """multi_worker on a shared folder (two processes in one project): worker 0, the chief, runs the stage
    through DVC; worker 1 runs the script. A SIGTERM to worker 1 (a preempted machine) stops both after
    the same step, the chief with a checkpoint of it; rerun, both resume from it and finish, the chief
    logging the one finished MLflow run and worker 1 writing and logging nothing."""
    root, env = tiny_project
    epochs = 8
    write_params(root, {"train": {"strategy": "multi_worker", "epochs": epochs}})
    sh(["dvc", "repro", "prepare"], root, env)
    cluster = {"worker": [f"{HOST}:{free_port()}", f"{HOST}:{free_port()}"]}
    commands = ["dvc repro --single-item train", " ".join(stage_command("train"))]

    def start_both() -> list[subprocess.Popen[str]]:
        return [
            start(command, root, {**env, "TF_CONFIG": json.dumps({"cluster": cluster, "task": task})})
            for command, task in zip(commands, ({"type": "worker", "index": i} for i in (0, 1)), strict=True)
        ]

    workers = start_both()
    try:
        seen = []
        for line in workers[0].stdout:  # the chief's first epoch line: training is under way
            seen.append(line)
            if line.startswith(f"epoch 1/{epochs}"):
                break
        assert seen and seen[-1].startswith("epoch 1/"), "".join(seen)[-3000:]
        shell = psutil.Process(workers[1].pid)
        for process in [shell, *shell.children(recursive=True)]:
            if "stages/train.py" in " ".join(process.cmdline()):
                process.send_signal(signal.SIGTERM)
        outputs = [
            "".join(seen) + workers[0].communicate(timeout=300)[0],
            workers[1].communicate(timeout=300)[0],
        ]
    finally:
        for process in workers:
            process.kill()
    assert [process.returncode for process in workers] != [0, 0], outputs
    stopped = [
        re.search(r"(SIGTERM|a stop request to another worker) at epoch (\d+), step (\d+)/", out)
        for out in outputs
    ]
    assert all(stopped), [out[-3000:] for out in outputs]
    assert stopped[0][1] == "a stop request to another worker" and stopped[1][1] == "SIGTERM"
    assert stopped[0].groups()[1:] == stopped[1].groups()[1:], "both stopped after the same step"
    state = json.loads((root / "checkpoints/train/state.json").read_text())
    assert (state["epoch"] + 1, state["offset"]) == tuple(map(int, stopped[0].groups()[1:]))

    workers = start_both()
    try:
        outputs = [process.communicate(timeout=600)[0] for process in workers]
    finally:
        for process in workers:
            process.kill()
    assert [process.returncode for process in workers] == [0, 0], [out[-3000:] for out in outputs]
    assert all("resuming from the checkpoint" in out for out in outputs), [out[-3000:] for out in outputs]
    assert "worker 1: trained with the chief" in outputs[1] and "decoder version" not in outputs[1]
    assert "decoder version 1" in outputs[0]

    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("wae-mnist").experiment_id])
    assert sorted(r.info.status for r in runs) == ["FINISHED", "KILLED"], "the stopped run, the finished one"
    (run,) = [r for r in runs if r.info.status == "FINISHED"]
    assert run.data.params["train.strategy"] == "multi_worker"
    assert run.info.run_id == json.loads((root / "models/wae/mlflow_run.json").read_text())["run_id"]
    assert [v.version for v in client.search_model_versions("name = 'wae-decoder'")] in ([1], ["1"])
    assert len(client.get_metric_history(run.info.run_id, "train_recon")) == epochs, "one logger"
    assert not list(root.glob("checkpoints/*")), "the chief removed its checkpoint; worker 1 left none"


@pytest.mark.slow
def test_a_sweep_split_over_two_machines_meets_in_mlflow_and_dvc(team, team_server, tmp_path: Path) -> None:
    """docs/scaling.md "A sweep spread over several machines", one experiment per machine.

    Each machine queues its share and runs DVC's queue; runs land on the team's MLflow server,
    experiments reach the git origin with `dvc exp push`, and a third clone pulls them and applies
    one, model included. To save minutes each machine queues one experiment, which runs the
    pipeline up to `train` only.
    """
    _, origin, _, env = team
    setup, _share_1, _share_2, run_queue, pull_show_apply = doc_blocks("A sweep spread over several machines")
    assert setup == [f"export MLFLOW_TRACKING_URI={TEAM_SERVER}", "dvc pull prepare classifier"]
    assert run_queue == ["dvc queue start -j 1", "dvc queue status", "dvc exp push origin", "dvc queue stop"]
    machine_env = {**env, "MLFLOW_TRACKING_URI": team_server.url}
    lambdas = {"machine1": 3.0, "machine2": 30.0}
    machines = []
    try:
        for name, lam in lambdas.items():
            machine = tmp_path / name
            sh(["git", "clone", "-q", str(origin), str(machine)], tmp_path, env)
            machines.append(machine)
            sh(setup[1], machine, machine_env)
            sh(f"dvc exp run --queue -S train.lambda={lam} train", machine, machine_env)
            with open(tmp_path / f"{name}-queue.log", "w") as log:  # the worker keeps its output open
                subprocess.run(
                    run_queue[0], shell=True, cwd=machine, env=machine_env, stdout=log, stderr=log, check=True
                )
        for machine in machines:
            statuses = wait_for_queue(machine, machine_env, run_queue[1], timeout=400)
            assert list(statuses.values()) == ["Success"], sh(
                "dvc queue logs " + next(iter(statuses)), machine, env, check=False
            ).stdout
            sh(run_queue[2], machine, machine_env)
    finally:
        for machine in machines:
            stop_queue_workers(machine, machine_env, run_queue[3])

    import mlflow

    client = mlflow.MlflowClient(team_server.url)
    experiment = client.get_experiment_by_name("wae-mnist")
    swept = {
        r.data.tags["dvc.exp_name"]: r
        for r in client.search_runs(experiment.experiment_id)
        if "dvc.exp_name" in r.data.tags
    }
    assert sorted(float(r.data.params["train.lambda"]) for r in swept.values()) == sorted(lambdas.values())
    assert all(r.info.status == "FINISHED" for r in swept.values())

    lead = tmp_path / "lead"
    sh(["git", "clone", "-q", str(origin), str(lead)], tmp_path, env)
    pull, show, apply = pull_show_apply
    sh(pull, lead, env)
    shown = sh(show, lead, env).stdout
    assert all(name in shown for name in swept), shown
    name = next(iter(swept))
    sh(apply.replace("<name>", name), lead, env)
    ref = json.loads((lead / "models/wae/mlflow_run.json").read_text())
    assert ref["run_id"] == swept[name].info.run_id
    assert float(yaml.safe_load((lead / "params.yaml").read_text())["train"]["lambda"]) == float(
        swept[name].data.params["train.lambda"]
    )


def wait_for_queue(machine: Path, env: dict[str, str], status: str, timeout: float) -> dict[str, str]:
    """Poll `dvc queue status` until no experiment is queued or running; task -> status."""
    deadline = time.monotonic() + timeout
    while True:
        table = sh(status, machine, env).stdout
        statuses = dict(re.findall(r"^(\w+)\s+\S+\s+.*?\s(Queued|Running|Success|Failed)\s*$", table, re.M))
        if statuses and not {"Queued", "Running"} & set(statuses.values()):
            return statuses
        assert time.monotonic() < deadline, f"the queue did not finish in {timeout:.0f} s:\n{table}"
        time.sleep(3)


def stop_queue_workers(machine: Path, env: dict[str, str], stop: str) -> None:
    """`dvc queue stop`, then wait for this clone's queue workers (started by this test) to end."""
    workers = [
        p
        for p in psutil.process_iter(["cmdline", "cwd"])
        if p.info["cwd"] == str(machine) and "queue-worker" in (p.info["cmdline"] or [])
    ]
    sh(stop, machine, env, check=False)
    _, alive = psutil.wait_procs(workers, timeout=60)
    for process in alive:
        process.kill()


def start(script: str, cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """A shell script started in the background, its output collected (stderr into stdout)."""
    return subprocess.Popen(
        script,
        shell=True,
        executable="/bin/bash",
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _same_weights(a: Path, b: Path) -> bool:
    """Two saved models hold equal weights (the .keras zip itself records a timestamp)."""
    import zipfile

    with zipfile.ZipFile(a / "decoder.keras") as za, zipfile.ZipFile(b / "decoder.keras") as zb:
        return za.read("model.weights.h5") == zb.read("model.weights.h5")


if __name__ == "__main__":
    scenario, mnist, out_path = sys.argv[1:4]
    out_file = Path(out_path)
    out_file.write_text(json.dumps(SCENARIOS[scenario](mnist, out_file), indent=2))
