"""DVC stage `train`: fit the WAE on the prepared digits, as one MLflow run.

Reads the prepared split (--prepared); writes the model folder (--models: encoder, decoder, the
regulariser's adversary if it has one, model_info.json, mlflow_run.json) and the per-epoch history
(--history, CSV). Checkpoints go to --checkpoints after every epoch and on Ctrl-C/SIGTERM; rerunning
with the same params and data resumes from them.

Under `train.strategy: multi_worker` only the chief (worker 0) does all that; the other workers
train with it in lockstep and exit, writing nothing and logging nothing (`train_as_worker`).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import tempfile
from pathlib import Path

import pandas as pd
from common import REPO, params, paths, project_root, run

from wae import tracking
from wae.atomic import atomic_path, save_keras, write_json, write_text
from wae.config import Params, TrainConfig
from wae.data import MnistSplits, load_prepared
from wae.models import MODEL_INFO, model_info
from wae.training import WAETrainer, seed_everything
from wae.workers import is_chief, task_label


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def checkpoint_fingerprint(p: Params, data_digest: str) -> str:
    """What a checkpoint must match to be resumed: the train params and the data. The strategy and
    XLA are left out, since a checkpoint restores under any of them."""
    settings = {k: v for k, v in p.flat().items() if k.startswith("train.")}
    settings.pop("train.strategy"), settings.pop("train.xla")
    return hashlib.sha256(f"{sorted(settings.items())}-{data_digest}".encode()).hexdigest()[:24]


def run_tags(p: Params, data_digest: str) -> dict[str, str]:
    """Where the run came from: code, params, data, and the DVC experiment when there is one."""
    tags = {**tracking.git_tags(REPO), "params.digest": p.digest(), "data.digest": data_digest}
    exp_name = os.environ.get("DVC_EXP_NAME")
    if exp_name:
        tags["dvc.exp_name"] = exp_name
        tags["dvc.exp_baseline"] = os.environ.get("DVC_EXP_BASELINE_REV", "")
    return tags


def reproduce_command(tags: dict[str, str], run_id: str) -> str:
    """The command that brings back this run's code and params, then reruns the pipeline."""
    if "dvc.exp_name" in tags:
        return f"dvc exp apply {shlex.quote(tags['dvc.exp_name'])} && dvc repro"
    checkout = f"git checkout {tags['git.commit']} && " if "git.commit" in tags else ""
    return (
        f"{checkout}mlflow artifacts download --run-id {run_id} --artifact-path params.yaml --dst-path . "
        "&& dvc repro"
    )


def log_prepared_data(splits: MnistSplits, path: Path, data_digest: str) -> None:
    """The prepared MNIST as the run's input dataset: the digest of its tag, the split sizes as context."""
    sizes = {"train": len(splits.x_train), "val": len(splits.x_val), "test": len(splits.x_test)}
    tracking.log_dataset(
        name="mnist",
        source=str(path),  # a DVC output, relative to the repository: `dvc pull prepare` restores it
        digest=data_digest,
        context=" ".join(f"{split}={n}" for split, n in sizes.items()),
        features=splits.x_train,
        targets=splits.y_train,
        tags={f"{split}_size": str(n) for split, n in sizes.items()},
    )


def train_as_worker(cfg: TrainConfig, splits: MnistSplits, checkpoints: Path, fingerprint: str) -> None:
    """A worker other than the chief: trains in lockstep with the others, keeps nothing.

    It resumes from the checkpoint folder as the chief does (the chief's, on a shared folder), so that all
    workers start from the same step; its own saves go to a temporary copy deleted on exit.
    """
    seed_everything(cfg.seed)
    trainer = WAETrainer(cfg, splits.x_train, splits.x_val)
    with tempfile.TemporaryDirectory(prefix="wae-worker-") as scratch:
        folder = Path(scratch) / "train"
        if checkpoints.is_dir():
            shutil.copytree(checkpoints, folder)
        trainer.fit(folder, fingerprint)
    print(f"{task_label()}: trained with the chief, which keeps the model, the reports and the MLflow run")


def main() -> None:
    files = paths(
        __doc__,
        prepared="the prepared split",
        models="folder of the trained networks",
        history="per-epoch losses (CSV)",
        checkpoints="folder of the resumable checkpoint",
    )
    p = params()
    cfg = p.train
    splits = load_prepared(files.prepared)
    data_digest = file_digest(files.prepared)
    fingerprint = checkpoint_fingerprint(p, data_digest)
    if not is_chief(cfg.strategy):
        train_as_worker(cfg, splits, files.checkpoints, fingerprint)
        return
    root = project_root()

    tags = run_tags(p, data_digest)
    name = tracking.run_name(cfg, os.environ.get("DVC_EXP_NAME"))
    with tracking.training_run(root, p.mlflow.experiment_name, p.flat(), tags, run_name=name) as run_id:
        tracking.set_tags({"reproduce": reproduce_command(tags, run_id)})
        tracking.log_artifact(REPO / "params.yaml")
        log_prepared_data(splits, files.prepared, data_digest)
        seed_everything(cfg.seed)
        trainer = WAETrainer(cfg, splits.x_train, splits.x_val)
        tracking.set_tags({"train.precision_resolved": trainer.precision})
        rows = []

        def on_epoch_end(row: dict) -> None:
            rows.append(row)
            tracking.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=int(row["epoch"]))
            write_text(files.history, pd.DataFrame(rows).to_csv(index=False))
            print(
                f"epoch {row['epoch']}/{cfg.epochs}: recon {row['train_recon']:.4f} "
                f"penalty {row['train_penalty']:.4f} val_recon {row.get('val_recon', float('nan')):.4f} "
                f"({row['images_per_sec']:.0f} img/s)",
                flush=True,
            )

        trainer.fit(files.checkpoints, fingerprint, on_epoch_end=on_epoch_end)
        nets = trainer.saved_networks()  # stock Keras layers: loads without this package

        examples = (splits.x_val if len(splits.x_val) else splits.x_train)[:8].astype("float32") / 255.0
        tracking.log_keras_model(nets["encoder"], "encoder", examples)
        codes = nets["encoder"].predict(examples, verbose=0)
        decoder_uri = tracking.log_keras_model(nets["decoder"], "decoder", codes)
        version = tracking.register_model(decoder_uri, p.mlflow.registered_model_name, p.mlflow.model_alias)
        tracking.log_artifact(files.history, "train")
        tracking.log_dict(model_info(cfg), f"train/{MODEL_INFO}")
        tracking.set_tags({"decoder.registered": f"{p.mlflow.registered_model_name}/{version}"})
        # Written last, in one rename: a failure above leaves no model behind.
        with atomic_path(files.models) as folder:
            folder.mkdir()
            for name, net in nets.items():
                save_keras(folder / f"{name}.keras", net)
            write_json(folder / MODEL_INFO, model_info(cfg))
            tracking.write_run_ref(folder / "mlflow_run.json", run_id, root, p.mlflow.experiment_name)

        print(f"trained {cfg.architecture}/{cfg.penalty}: MLflow run {run_id}, decoder version {version}")
    # Finished: the checkpoint has served its purpose (a forced rerun starts afresh).
    shutil.rmtree(files.checkpoints, ignore_errors=True)


if __name__ == "__main__":
    run(main)
