"""The WAE training loop: one compiled step, two optimisers, checkpoints, resume and divergence.

Reading order: `WAETrainer._replica_step` is the game (`_replica_gradients` encodes, decodes and
penalises; then the discriminator is updated with its optimiser and the auto-encoder with theirs);
`_train_steps` runs several of those per compiled call with no host round-trip; `fit` is the
epoch loop around them.

Design choices that make the loop fast and exactly reproducible:
- the training digits stay in memory as uint8 and are scaled on the fly;
- batches are gathered from a per-epoch permutation drawn from (seed, epoch), and prior samples
  are stateless random draws keyed by (seed, global step): no random state to save, so a run
  resumed from a checkpoint (even mid-epoch) ends with the same weights as an uninterrupted one;
- losses are summed on the device and read once per epoch;
- the GAN discriminator sees prior and encoded codes in one pass.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from wae.atomic import atomic_path
from wae.config import TrainConfig
from wae.errors import TrainingDiverged, TrainingInterrupted, WAEError
from wae.models import WAEModels, build_models
from wae.penalties import gan_losses, mmd_penalty

HistoryRow = dict[str, float]


def seed_everything(seed: int) -> None:
    """Same seed, same weights: seeded Python/NumPy/TF and deterministic TF kernels."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def native_bf16_cpu() -> bool:
    """Whether this CPU computes bfloat16 in hardware (Intel AMX or AVX512-BF16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_precision(name: str) -> str:
    """`auto`: bfloat16 compute where the CPU has it natively (about 2x faster here, same scores),
    float32 elsewhere (on a GPU, choose mixed_float16 or mixed_bfloat16 explicitly)."""
    if name != "auto":
        return name
    if tf.config.list_physical_devices("GPU"):
        return "float32"
    return "mixed_bfloat16" if native_bf16_cpu() else "float32"


@functools.cache
def make_strategy(name: str) -> tf.distribute.Strategy:
    """The `train.strategy` of that name, made once per process.

    TensorFlow expects one strategy per program: a second MirroredStrategy in the same process
    reuses collective ids with other shapes and aborts ("Shape mismatch in the collective instance").
    """
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()  # the default: one device, no distribution


def learning_rate(config: TrainConfig, base: float, steps_per_epoch: int) -> float | object:
    """The learning rate as a Keras schedule over optimiser steps (restored with the optimiser)."""
    if config.lr_schedule == "piecewise" and config.lr_milestones:
        boundaries = [m * steps_per_epoch for m in config.lr_milestones]
        values = [base] + [base * f for f in config.lr_factors]
        return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    if config.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(base, decay_steps=config.epochs * steps_per_epoch)
    return base


@dataclass
class TrainResult:
    models: WAEModels
    history: list[HistoryRow] = field(default_factory=list)
    resumed_from_epoch: float | None = None


class _StopFlag:
    """SIGINT/SIGTERM during training ask the loop to stop at the next compiled call."""

    def __init__(self) -> None:
        self.signal: int | None = None

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        previous = {}
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: no handlers, Ctrl-C behaves as usual
            previous = {}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _handle(self, signum: int, _frame: object) -> None:
        self.signal = signum


class WAETrainer:
    """Trains a WAE on uint8 images held in memory. One instance per run."""

    def __init__(
        self,
        config: TrainConfig,
        x_train: np.ndarray,
        x_val: np.ndarray | None = None,
        fused_batch_norm: bool = True,  # False: Keras's own batch-norm layer (benchmarks compare)
    ) -> None:
        if x_train.dtype != np.uint8:
            raise WAEError("training images must be uint8 (0..255), as the prepare stage writes them")
        self.config = config
        self.strategy = make_strategy(config.strategy)
        replicas = self.strategy.num_replicas_in_sync
        if config.batch_size % replicas:
            raise WAEError(
                f"train.batch_size = {config.batch_size} must be divisible by the {replicas} replicas "
                f"of strategy {config.strategy!r}"
            )
        if len(x_train) < config.batch_size:
            raise WAEError(
                f"train.batch_size = {config.batch_size} exceeds the {len(x_train)} training digits"
            )
        self.steps_per_epoch = len(x_train) // config.batch_size
        self.x_val = x_val
        self.trace_count = 0
        self.precision = resolve_precision(config.precision)
        with self.strategy.scope():
            with _dtype_policy(None if self.precision == "float32" else self.precision):
                self.models = build_models(config, fused_batch_norm)
            self.ae_optimizer = self._optimizer(config.lr)
            self.ae_variables = (
                self.models.encoder.trainable_variables + self.models.decoder.trainable_variables
            )
            self.ae_optimizer.build(self.ae_variables)
            if self.models.discriminator is not None:
                self.disc_optimizer = self._optimizer(config.disc_lr)
                self.disc_optimizer.build(self.models.discriminator.trainable_variables)
            self.images = tf.constant(x_train)
            self.epoch_order = tf.Variable(
                tf.zeros([self.steps_per_epoch * config.batch_size], tf.int32), trainable=False
            )
            # Loss sums (recon, penalty, discriminator) since the epoch began, and the first bad step.
            self.loss_sums = tf.Variable(tf.zeros([3], tf.float64), trainable=False)
            self.bad_step = tf.Variable(tf.constant(-1, tf.int64), trainable=False)
            self.bad_losses = tf.Variable(tf.zeros([3], tf.float32), trainable=False)
        # XLA compiles the per-replica forward and backward pass; the updates stay outside it, as
        # they sum gradients across replicas (a sync point, which a nested XLA function cannot hold).
        grads = self._replica_gradients
        self._compiled_gradients = tf.function(grads, jit_compile=True) if config.xla else grads
        self._train_steps_fn = tf.function(self._train_steps)
        self._eval_fn = tf.function(self._eval_batch)

    # ------------------------------------------------------------------ the game
    def _optimizer(self, lr: float) -> keras.optimizers.Optimizer:
        optimizer = keras.optimizers.Adam(
            learning_rate(self.config, lr, self.steps_per_epoch), beta_1=self.config.adam_beta1
        )
        if self.precision == "mixed_float16":  # bfloat16 has float32's range: no loss scaling
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        return optimizer

    def _reconstruction_cost(self, x: tf.Tensor, x_hat: tf.Tensor) -> tf.Tensor:
        squared = tf.square(x - tf.cast(x_hat, tf.float32))
        if self.config.recon_cost == "mse":
            per_image = tf.reduce_mean(squared, axis=[1, 2, 3])
        else:
            per_image = tf.reduce_sum(squared, axis=[1, 2, 3])
        return self.config.recon_weight * tf.reduce_mean(per_image)

    def _prior(self, n: int | tf.Tensor, index: tf.Tensor, stream: int) -> tf.Tensor:
        """Prior draws keyed by (seed, stream, index): stateless, so nothing to checkpoint."""
        seed = tf.stack([tf.constant(self.config.seed * 16 + stream, tf.int64), tf.cast(index, tf.int64)])
        return self.config.prior_std * tf.random.stateless_normal([n, self.config.latent_dim], seed=seed)

    def _replica_step(self, images: tf.Tensor, z_prior: tf.Tensor) -> tf.Tensor:
        """One update of both players on this replica's share of the batch; returns its 3 losses."""
        losses, ae_grads, disc_grads = self._compiled_gradients(images, z_prior)
        if self.precision == "mixed_float16":
            ae_grads, disc_grads = _agree_on_overflow(ae_grads), _agree_on_overflow(disc_grads)
        if self.models.discriminator is not None:
            disc_variables = self.models.discriminator.trainable_variables
            self.disc_optimizer.apply_gradients(zip(disc_grads, disc_variables, strict=True))
        self.ae_optimizer.apply_gradients(zip(ae_grads, self.ae_variables, strict=True))
        return losses

    def _replica_gradients(
        self, images: tf.Tensor, z_prior: tf.Tensor
    ) -> tuple[tf.Tensor, list[tf.Tensor], list[tf.Tensor]]:
        """Both players' losses on this replica's share, and their (loss-scaled) gradients."""
        config, models = self.config, self.models
        n_replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        x = tf.cast(images, tf.float32) / 255.0
        with tf.GradientTape(persistent=True) as tape:
            z = tf.cast(models.encoder(x, training=True), tf.float32)
            x_hat = models.decoder(z, training=True)
            recon = self._reconstruction_cost(x, x_hat)
            if models.discriminator is None:
                penalty = mmd_penalty(z, z_prior, config.prior_std)
                disc_loss = tf.zeros([])
            else:
                # One discriminator pass over prior and encoded codes together.
                logits = models.discriminator(tf.concat([z_prior, z], axis=0), training=True)
                prior_logits, encoded_logits = tf.split(logits, 2, axis=0)
                disc_loss, penalty = gan_losses(prior_logits, encoded_logits)
                disc_loss = config.lambda_ * disc_loss
            ae_loss = recon + config.lambda_ * penalty
            # Each replica holds 1/n of the global batch: scaled so the summed gradients are global means.
            ae_scaled = self._scale(self.ae_optimizer, ae_loss / n_replicas)
            disc_scaled = (
                self._scale(self.disc_optimizer, disc_loss / n_replicas) if models.discriminator else None
            )
        ae_grads = tape.gradient(ae_scaled, self.ae_variables)
        disc_grads = []
        if models.discriminator is not None:
            disc_grads = tape.gradient(disc_scaled, models.discriminator.trainable_variables)
        del tape
        return tf.stack([recon, penalty, disc_loss]), ae_grads, disc_grads

    @staticmethod
    def _scale(optimizer: keras.optimizers.Optimizer, loss: tf.Tensor) -> tf.Tensor:
        if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            return optimizer.scale_loss(loss)
        return loss

    def _train_steps(self, first_step: tf.Tensor, offset: tf.Tensor, n_steps: tf.Tensor) -> None:
        """Run up to n_steps steps in one compiled call; sums stay on the device.

        Traced once per run: every argument is a tensor of fixed shape and dtype.
        """
        self.trace_count += 1  # Python side effect: runs only while tracing
        batch = self.config.batch_size
        i = tf.constant(0, tf.int64)
        while i < n_steps and self.bad_step < 0:
            start = tf.cast(offset + i, tf.int32) * batch
            images = tf.gather(self.images, self.epoch_order[start : start + batch])
            step = first_step + i
            z_prior = self._prior(batch, step, stream=1)
            per_replica = self.strategy.run(self._distributed_step, args=(images, z_prior))
            losses = self.strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica, axis=None)
            if tf.reduce_all(tf.math.is_finite(losses)):
                self.loss_sums.assign_add(tf.cast(losses, tf.float64))
            else:
                self.bad_step.assign(step)
                self.bad_losses.assign(losses)
            i += 1

    def _distributed_step(self, images: tf.Tensor, z_prior: tf.Tensor) -> tf.Tensor:
        replica = tf.distribute.get_replica_context()
        n = replica.num_replicas_in_sync
        if n > 1:  # each replica takes its slice of the global batch and of the prior draws
            share = self.config.batch_size // n
            first = replica.replica_id_in_sync_group * share
            images, z_prior = images[first : first + share], z_prior[first : first + share]
        return self._replica_step(images, z_prior)

    def _eval_batch(self, images: tf.Tensor, batch_index: tf.Tensor) -> tf.Tensor:
        x = tf.cast(images, tf.float32) / 255.0
        z = tf.cast(self.models.encoder(x, training=False), tf.float32)
        recon = self._reconstruction_cost(x, self.models.decoder(z, training=False))
        z_prior = self._prior(tf.shape(x)[0], batch_index, stream=2)
        if self.models.discriminator is None:
            penalty = mmd_penalty(z, z_prior, self.config.prior_std)
        else:
            _, penalty = gan_losses(z_prior[:0], self.models.discriminator(z, training=False))
        return tf.stack([recon, penalty])

    def validate(self) -> HistoryRow:
        """Reconstruction cost and penalty on the validation digits (fixed prior draws)."""
        if self.x_val is None or len(self.x_val) < 2:
            return {}
        batch = min(max(self.config.batch_size, 2), len(self.x_val))
        totals = np.zeros(2)
        n_batches = len(self.x_val) // batch
        for b in range(n_batches):
            chunk = self.x_val[b * batch : (b + 1) * batch]
            totals += self._eval_fn(tf.constant(chunk), tf.constant(b, tf.int64)).numpy()
        recon, penalty = totals / n_batches
        return {"val_recon": float(recon), "val_penalty": float(penalty)}

    # ------------------------------------------------------------------ epochs
    def epoch_permutation(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.config.seed, epoch])
        order = rng.permutation(len(self.images))
        return order[: self.steps_per_epoch * self.config.batch_size].astype(np.int32)

    def fit(
        self,
        checkpoint_dir: str | Path | None = None,
        fingerprint: str = "",
        on_epoch_end: Callable[[HistoryRow], None] | None = None,
        progress: bool = True,
        steps_limit: int | None = None,
    ) -> TrainResult:
        """Train for config.epochs, resuming from `checkpoint_dir` when it holds this run's state.

        `fingerprint` identifies params and data: a checkpoint with another one is never resumed.
        """
        config = self.config
        checkpoints = Checkpointer(self, checkpoint_dir, fingerprint) if checkpoint_dir else None
        state = checkpoints.restore() if checkpoints else None
        history: list[HistoryRow] = state["history"] if state else []
        epoch, offset = (state["epoch"], state["offset"]) if state else (0, 0)
        resumed_from = epoch + offset / self.steps_per_epoch if state else None
        result = TrainResult(self.models, history, resumed_from_epoch=resumed_from)
        if state:
            print(
                f"resuming from the checkpoint in {checkpoints.folder}: epoch {epoch + 1}, step {offset}",
                flush=True,
            )
        for row in history if on_epoch_end else ():
            on_epoch_end(row)
        stop = _StopFlag()
        chunk = config.steps_per_execution
        with stop.installed():
            while epoch < config.epochs:
                self.epoch_order.assign(self.epoch_permutation(epoch))
                if offset == 0:
                    self.loss_sums.assign(tf.zeros([3], tf.float64))
                started, seconds_so_far = time.perf_counter(), state.get("seconds", 0.0) if state else 0.0
                bar = _progress(progress, self.steps_per_epoch, offset, f"epoch {epoch + 1}/{config.epochs}")
                while offset < self.steps_per_epoch:
                    n = min(chunk, self.steps_per_epoch - offset)
                    if steps_limit is not None:
                        n = min(n, steps_limit)
                    first_step = epoch * self.steps_per_epoch + offset
                    self._train_steps_fn(
                        tf.constant(first_step, tf.int64),
                        tf.constant(offset, tf.int64),
                        tf.constant(n, tf.int64),
                    )
                    offset += n
                    if bar is not None:
                        bar.update(n)
                    if steps_limit is not None:
                        steps_limit -= n
                        if steps_limit <= 0:
                            return result
                    if stop.signal is not None:
                        if bar is not None:
                            bar.close()
                        seconds = seconds_so_far + time.perf_counter() - started
                        if checkpoints:
                            checkpoints.save(epoch, offset, history, seconds)
                        name = signal.Signals(stop.signal).name
                        where = f" and saved a checkpoint in {checkpoints.folder}" if checkpoints else ""
                        raise TrainingInterrupted(
                            f"{name} at epoch {epoch + 1}, step {offset}/{self.steps_per_epoch}: "
                            f"stopped{where}; rerun the same command to resume"
                        )
                if bar is not None:
                    bar.close()
                seconds = seconds_so_far + time.perf_counter() - started
                self._check_finite(epoch)
                sums = self.loss_sums.numpy() / self.steps_per_epoch
                row: HistoryRow = {
                    "epoch": epoch + 1,
                    "train_recon": float(sums[0]),
                    "train_penalty": float(sums[1]),
                    **({"train_disc": float(sums[2])} if self.models.discriminator is not None else {}),
                    **self.validate(),
                    "images_per_sec": self.steps_per_epoch * config.batch_size / max(seconds, 1e-9),
                    "lr": float(_current_lr(self.ae_optimizer)),
                    "seconds": seconds,
                }
                history.append(row)
                epoch, offset, state = epoch + 1, 0, None
                if checkpoints:
                    checkpoints.save(epoch, 0, history, 0.0)
                if on_epoch_end:
                    on_epoch_end(row)
        return result

    def _check_finite(self, epoch: int) -> None:
        bad = int(self.bad_step.numpy())
        if bad < 0:
            return
        recon, penalty, disc = (float(v) for v in self.bad_losses.numpy())
        in_epoch = bad - epoch * self.steps_per_epoch + 1
        raise TrainingDiverged(
            f"training diverged at epoch {epoch + 1}, step {in_epoch}/{self.steps_per_epoch} "
            f"(global step {bad + 1}): reconstruction {recon}, penalty {penalty}, discriminator {disc}; "
            "try a lower train.lr / train.disc_lr or train.lambda"
        )


def _agree_on_overflow(grads: list[tf.Tensor]) -> list[tf.Tensor]:
    """Under loss scaling, make a float16 overflow on any replica an overflow on every replica.

    Keras' LossScaleOptimizer decides to skip a step (and halve the scale) from the first replica's
    own gradients, before they are summed: an overflow on another replica alone would reach the
    weights as inf. Shared, it makes every replica skip the step together.
    """
    context = tf.distribute.get_replica_context()
    if not grads or context.num_replicas_in_sync == 1:
        return grads
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
    overflows = context.all_reduce(tf.distribute.ReduceOp.SUM, 1.0 - tf.cast(finite, tf.float32))
    poison = tf.where(overflows > 0, float("nan"), 0.0)  # adding 0.0 leaves finite gradients exact
    return [g + tf.cast(poison, g.dtype) for g in grads]


@contextlib.contextmanager
def _dtype_policy(name: str | None) -> Iterator[None]:
    """Keras' dtype policy is global: set it only while this run's networks are built."""
    previous = keras.mixed_precision.global_policy()
    if name:
        keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _current_lr(optimizer: keras.optimizers.Optimizer) -> float:
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    lr = inner.learning_rate
    return float(lr.numpy() if hasattr(lr, "numpy") else lr)


def _progress(enabled: bool, total: int, initial: int, desc: str):
    if not enabled or os.environ.get("CI") or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", leave=False)


class Checkpointer:
    """Everything needed to resume exactly: weights, optimiser state, position, history.

    A checkpoint is a folder written under a temporary name and renamed, so an interruption
    during a save leaves the previous checkpoint intact.
    """

    def __init__(self, trainer: WAETrainer, root: str | Path, fingerprint: str) -> None:
        self.trainer = trainer
        self.fingerprint = fingerprint
        self.folder = Path(root)

    def _networks(self) -> dict[str, keras.Model]:
        models = self.trainer.models
        nets = {"encoder": models.encoder, "decoder": models.decoder}
        if models.discriminator is not None:
            nets["discriminator"] = models.discriminator
        return nets

    def _optimizers(self) -> dict[str, keras.optimizers.Optimizer]:
        opts = {"ae_optimizer": self.trainer.ae_optimizer}
        if self.trainer.models.discriminator is not None:
            opts["disc_optimizer"] = self.trainer.disc_optimizer
        return opts

    def save(self, epoch: int, offset: int, history: list[HistoryRow], seconds: float) -> None:
        with atomic_path(self.folder) as tmp:
            tmp.mkdir()
            for name, net in self._networks().items():
                np.savez(tmp / f"{name}.npz", *[v.numpy() for v in net.weights])
            for name, opt in self._optimizers().items():
                np.savez(tmp / f"{name}.npz", *[v.numpy() for v in opt.variables])
            state = {
                "fingerprint": self.fingerprint,
                "epoch": epoch,
                "offset": offset,
                "seconds": seconds,
                "loss_sums": self.trainer.loss_sums.numpy().tolist(),
                "history": history,
            }
            (tmp / "state.json").write_text(json.dumps(state, indent=2))

    def restore(self) -> dict | None:
        """Load the checkpoint if it belongs to this fingerprint; return its state, else None."""
        try:
            state = json.loads((self.folder / "state.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        if state.get("fingerprint") != self.fingerprint:
            return None
        for name, net in {**self._networks(), **self._optimizers()}.items():
            variables = net.weights if isinstance(net, keras.Model) else net.variables
            with np.load(self.folder / f"{name}.npz") as saved:
                arrays = [saved[f"arr_{i}"] for i in range(len(saved.files))]
            if len(arrays) != len(variables):
                raise WAEError(f"checkpoint {self.folder} does not match the model ({name}); delete it")
            for variable, value in zip(variables, arrays, strict=True):
                variable.assign(value)
        self.trainer.loss_sums.assign(state["loss_sums"])
        return state
