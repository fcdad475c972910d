"""The WAE training loop: one compiled step that plays the game, and a flat epoch loop around it.

Reading order: `WAETrainer._game` is one step of the game on one replica's share of the batch:
encode, decode, reconstruction cost, regulariser (`wae.regularisers`), then each player's gradients;
`_replica_step` applies them, the adversary's (when the regulariser has one) and then the
auto-encoder's, each with its own optimiser; `_train_steps` runs `steps_per_execution` steps in one
compiled call; `fit` is the epoch loop, with progress, checkpoints, stop requests (`wae.stopping`)
and divergence as small helpers.

Design choices that make the loop fast and exactly reproducible:
- the training digits stay in memory as uint8 and are scaled on the fly;
- batches are gathered from a per-epoch permutation drawn from (seed, epoch), and every random draw
  of a step (prior samples, the encoder's noise, the regulariser's own) is a stateless draw keyed by
  (seed, stream, global step): no random state to save, so a run resumed from a checkpoint (even
  mid-epoch) ends with the same weights as an uninterrupted one;
- losses are summed on the device and read once per epoch.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from wae.checkpoints import Checkpointer, HistoryRow, Position
from wae.config import TrainConfig
from wae.devices import agree_on_overflow, dtype_policy, make_strategy, resolve_precision
from wae.errors import TrainingDiverged, TrainingInterrupted, WAEError
from wae.layers import portable
from wae.models import WAEModels, build_models
from wae.regularisers import regulariser_class
from wae.stopping import Stop, StopSignals, StopTogether

# Streams of stateless random draws (< 16): each is keyed by (seed * 16 + stream, step or batch index).
PRIOR, EVAL_PRIOR, ENCODER_NOISE, REGULARISER, EVAL_REGULARISER = 1, 2, 3, 4, 5
PRETRAIN_PRIOR, PRETRAIN_NOISE, PRETRAIN_BATCHES = 6, 7, 8
# The paper's code pre-trains its encoder on 1000 digits a step until the loss is below 0.1.
PRETRAIN_BATCH, PRETRAIN_TARGET = 1000, 0.1


def seed_everything(seed: int) -> None:
    """Same seed, same weights: seeded Python/NumPy/TF and deterministic TF kernels."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def learning_rate(config: TrainConfig, base: float, steps_per_epoch: int) -> float | object:
    """The learning rate as a Keras schedule over optimiser steps (restored with the optimiser)."""
    if config.lr_schedule == "piecewise" and config.lr_milestones:
        boundaries = [m * steps_per_epoch for m in config.lr_milestones]
        values = [base] + [base * f for f in config.lr_factors]
        return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    if config.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(base, decay_steps=config.epochs * steps_per_epoch)
    return base


def moment_matching_loss(codes: tf.Tensor, z_prior: tf.Tensor) -> tf.Tensor:
    """The paper's code's encoder pre-training loss (`pretrain_loss`): mean squared differences of the
    codes' and the prior draws' means and covariance matrices."""
    n = tf.cast(tf.shape(codes)[0], tf.float32)
    mean_q = tf.reduce_mean(codes, axis=0, keepdims=True)
    mean_p = tf.reduce_mean(z_prior, axis=0, keepdims=True)
    cov_q = tf.matmul(codes - mean_q, codes - mean_q, transpose_a=True) / (n - 1.0)
    cov_p = tf.matmul(z_prior - mean_p, z_prior - mean_p, transpose_a=True) / (n - 1.0)
    return tf.reduce_mean(tf.square(mean_p - mean_q)) + tf.reduce_mean(tf.square(cov_p - cov_q))


@dataclass
class Player:
    """One side of the game: the variables it moves and the optimiser that moves them."""

    name: str
    variables: list[tf.Variable]
    optimizer: keras.optimizers.Optimizer

    @property
    def loss_scaling(self) -> bool:  # under mixed_float16 (bfloat16 has float32's range)
        return isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer)

    def scale(self, loss: tf.Tensor) -> tf.Tensor:
        """The loss to differentiate: scaled up under float16 loss scaling."""
        return self.optimizer.scale_loss(loss) if self.loss_scaling else loss

    def update(self, grads: list[tf.Tensor]) -> None:
        if self.loss_scaling:
            grads = agree_on_overflow(grads)
        self.optimizer.apply_gradients(zip(grads, self.variables, strict=True))


@dataclass
class TrainResult:
    models: WAEModels
    history: list[HistoryRow] = field(default_factory=list)
    resumed_from_epoch: float | None = None


class WAETrainer:
    """Trains a WAE, with the regulariser that `train.penalty` names, on uint8 images held in memory.
    One instance per run.

    `build_models` makes the auto-encoder (benchmarks pass one with Keras's own batch norm).
    """

    def __init__(
        self,
        config: TrainConfig,
        x_train: np.ndarray,
        x_val: np.ndarray | None = None,
        build_models: Callable[..., WAEModels] = build_models,
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
        self.precision = resolve_precision(config.precision)
        regulariser = regulariser_class(config.penalty)
        with self.strategy.scope():
            with dtype_policy(None if self.precision == "float32" else self.precision):
                self.models = build_models(config, stochastic_encoder=regulariser.stochastic_encoder)
                self.regulariser = regulariser(config, self.models)
            # The adversaries play first, then the auto-encoder (the order of `_game`'s objectives).
            lr, disc_lr = (
                learning_rate(config, base, self.steps_per_epoch) for base in (config.lr, config.disc_lr)
            )
            self.players = [
                self._player(name, net.trainable_variables, disc_lr)
                for name, net in self.regulariser.adversaries.items()
            ] + [self._player("autoencoder", self.models.trainable_variables, lr)]
            self.loss_names = ("recon", "penalty", *self.regulariser.adversary_losses)
            self.images = tf.constant(x_train)
            self.epoch_order = tf.Variable(
                tf.zeros([self.steps_per_epoch * config.batch_size], tf.int32), trainable=False
            )
            # Loss sums since the epoch began (one per loss name), and the first bad step.
            n_losses = len(self.loss_names)
            self.loss_sums = tf.Variable(tf.zeros([n_losses], tf.float64), trainable=False)
            self.bad_step = tf.Variable(tf.constant(-1, tf.int64), trainable=False)
            self.bad_losses = tf.Variable(tf.zeros([n_losses], tf.float32), trainable=False)
        # XLA compiles the per-replica forward and backward pass; the updates stay outside it, as
        # they sum gradients across replicas (a sync point, which a nested XLA function cannot hold).
        self._compiled_game = tf.function(self._game, jit_compile=True) if config.xla else self._game
        self._train_steps_fn = tf.function(self._train_steps)
        self._eval_fn = tf.function(self._eval_batch)

    def _player(self, name: str, variables: list[tf.Variable], lr: float | object) -> Player:
        config = self.config
        optimizer = keras.optimizers.Adam(lr, beta_1=config.adam_beta1, epsilon=config.adam_epsilon)
        if self.precision == "mixed_float16":  # bfloat16 has float32's range: no loss scaling
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(variables)
        return Player(name, variables, optimizer)

    @property
    def trace_count(self) -> int:
        """How many times the training step was traced (once per run when all is well)."""
        return self._train_steps_fn.experimental_get_tracing_count()

    def networks(self) -> dict[str, keras.Model]:
        """Every trained network by name: the auto-encoder's, then the regulariser's."""
        return {
            "encoder": self.models.trained_encoder,
            "decoder": self.models.decoder,
            **self.regulariser.adversaries,
        }

    def saved_networks(self) -> dict[str, keras.Model]:
        """What the train stage saves: the encoder (a stochastic one's mean), the decoder and any
        adversary, with stock Keras layers only (they load without this package)."""
        nets = {
            "encoder": self.models.encoder,
            "decoder": self.models.decoder,
            **self.regulariser.adversaries,
        }
        return {name: portable(net) for name, net in nets.items()}

    # ------------------------------------------------------------------ the game
    def _key(self, stream: int, index: tf.Tensor) -> tf.Tensor:
        """The seed of a stateless draw: (seed, stream) and a step or batch index."""
        return tf.stack([tf.constant(self.config.seed * 16 + stream, tf.int64), tf.cast(index, tf.int64)])

    def _prior(self, n: int | tf.Tensor, stream: int, index: tf.Tensor) -> tf.Tensor:
        shape = [n, self.config.latent_dim]
        return self.config.prior_std * tf.random.stateless_normal(shape, seed=self._key(stream, index))

    def _reconstruction_cost(self, x: tf.Tensor, x_hat: tf.Tensor) -> tf.Tensor:
        squared = tf.square(x - tf.cast(x_hat, tf.float32))
        if self.config.recon_cost == "mse":
            per_image = tf.reduce_mean(squared, axis=[1, 2, 3])
        else:
            per_image = tf.reduce_sum(squared, axis=[1, 2, 3])
        return self.config.recon_weight * tf.reduce_mean(per_image)

    def _game(
        self, images: tf.Tensor, draws: dict[str, tf.Tensor], seed: tf.Tensor
    ) -> tuple[tf.Tensor, list[list[tf.Tensor]]]:
        """One step of the game on this replica's share of the batch: its losses, and each player's
        (loss-scaled) gradients."""
        lambda_ = self.config.lambda_
        n_replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        x = tf.cast(images, tf.float32) / 255.0
        with tf.GradientTape(persistent=True) as tape:
            codes = self.models.encode(x, training=True, noise=draws)
            x_hat = self.models.decoder(codes.z, training=True)
            recon = self._reconstruction_cost(x, x_hat)
            penalty, adversary_losses = self.regulariser.losses(codes, draws["prior"], seed, training=True)
            adversary_losses = [lambda_ * loss for loss in adversary_losses]
            objectives = [*adversary_losses, recon + lambda_ * penalty]  # one per player, in order
            # Each replica holds 1/n of the global batch: scaled so the summed gradients are global means.
            scaled = [p.scale(loss / n_replicas) for p, loss in zip(self.players, objectives, strict=True)]
        grads = [tape.gradient(loss, p.variables) for p, loss in zip(self.players, scaled, strict=True)]
        del tape
        return tf.stack([recon, penalty, *adversary_losses]), grads

    def _replica_step(self, images: tf.Tensor, draws: dict[str, tf.Tensor], seed: tf.Tensor) -> tf.Tensor:
        """One update of every player on this replica's share of the batch; returns its losses."""
        images, draws = self._replica_share((images, draws))
        losses, grads = self._compiled_game(images, draws, seed)
        for player, player_grads in zip(self.players, grads, strict=True):
            player.update(player_grads)
        return losses

    def _replica_share(self, batch: object) -> object:
        """This replica's slice of global-batch tensors (images and their per-sample draws)."""
        replica = tf.distribute.get_replica_context()
        n = replica.num_replicas_in_sync
        if n == 1:
            return batch
        share = tf.shape(tf.nest.flatten(batch)[0])[0] // n
        first = replica.replica_id_in_sync_group * share
        return tf.nest.map_structure(lambda t: t[first : first + share], batch)

    def _train_steps(self, first_step: tf.Tensor, offset: tf.Tensor, n_steps: tf.Tensor) -> None:
        """Run up to n_steps steps in one compiled call; sums stay on the device.

        Traced once per run: every argument is a tensor of fixed shape and dtype.
        """
        batch = self.config.batch_size
        i = tf.constant(0, tf.int64)
        while i < n_steps and self.bad_step < 0:
            start = tf.cast(offset + i, tf.int32) * batch
            images = tf.gather(self.images, self.epoch_order[start : start + batch])
            step = first_step + i
            # Every draw of the step, for the global batch: replicas take their slices.
            draws = {"prior": self._prior(batch, PRIOR, step)}
            draws.update(self.models.noise(batch, self._key(ENCODER_NOISE, step)))
            seed = self._key(REGULARISER, step)
            per_replica = self.strategy.run(self._replica_step, args=(images, draws, seed))
            losses = self.strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica, axis=None)
            if tf.reduce_all(tf.math.is_finite(losses)):
                self.loss_sums.assign_add(tf.cast(losses, tf.float64))
            else:
                self.bad_step.assign(step)
                self.bad_losses.assign(losses)
            i += 1

    def _eval_batch(self, images: tf.Tensor, batch_index: tf.Tensor) -> tf.Tensor:
        x = tf.cast(images, tf.float32) / 255.0
        codes = self.models.encode(x, training=False, noise={})
        recon = self._reconstruction_cost(x, self.models.decoder(codes.z, training=False))
        z_prior = self._prior(tf.shape(x)[0], EVAL_PRIOR, batch_index)
        seed = self._key(EVAL_REGULARISER, batch_index)
        penalty, _ = self.regulariser.losses(codes, z_prior, seed, training=False)
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

    # ------------------------------------------------------------------ encoder pre-training
    def pretrain_encoder(self) -> list[float]:
        """Pre-train the encoder as the paper's code does (`e_pretrain`): up to `train.pretrain_steps`
        Adam steps on the moment-matching loss, on 1000 digits a step, until the loss is below 0.1.
        Returns the losses; does nothing when `train.pretrain_steps` is 0."""
        config, replicas = self.config, self.strategy.num_replicas_in_sync
        size = min(PRETRAIN_BATCH, len(self.images)) // replicas * replicas
        losses: list[float] = []
        if not config.pretrain_steps:
            return losses
        with self.strategy.scope():
            encoder = self.models.trained_encoder
            # Its own Adam at train.lr, unscheduled (the reference's `pretrain_opt`), discarded after.
            self._pretrainer = self._player("pretraining", encoder.trainable_variables, config.lr)
        step_fn = tf.function(self._pretrain_step)
        for step in range(config.pretrain_steps):
            rng = np.random.default_rng([config.seed, PRETRAIN_BATCHES, step])
            indices = rng.choice(len(self.images), size, replace=False).astype(np.int32)
            losses.append(float(step_fn(tf.constant(indices), tf.constant(step, tf.int64))))
            if not math.isfinite(losses[-1]):
                raise TrainingDiverged(f"encoder pre-training diverged at step {step + 1}: loss {losses[-1]}")
            if losses[-1] < PRETRAIN_TARGET:
                break
        print(f"pre-trained the encoder: {len(losses)} steps, loss {losses[-1]:.4f}", flush=True)
        return losses

    def _pretrain_step(self, indices: tf.Tensor, step: tf.Tensor) -> tf.Tensor:
        images = tf.gather(self.images, indices)
        size = indices.shape[0]
        draws = {"prior": self._prior(size, PRETRAIN_PRIOR, step)}
        draws.update(self.models.noise(size, self._key(PRETRAIN_NOISE, step)))
        per_replica = self.strategy.run(self._pretrain_replica, args=(images, draws))
        return self.strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica, axis=None)

    def _pretrain_replica(self, images: tf.Tensor, draws: dict[str, tf.Tensor]) -> tf.Tensor:
        images, draws = self._replica_share((images, draws))
        n_replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        with tf.GradientTape() as tape:
            codes = self.models.encode(tf.cast(images, tf.float32) / 255.0, training=True, noise=draws)
            loss = moment_matching_loss(codes.z, draws["prior"])
            scaled = self._pretrainer.scale(loss / n_replicas)
        grads = tape.gradient(scaled, self._pretrainer.variables)
        self._pretrainer.update(grads)
        return loss

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
        stop: Stop | None = None,
    ) -> TrainResult:
        """Train for config.epochs, resuming from `checkpoint_dir` when it holds this run's state.

        `fingerprint` identifies params and data: a checkpoint with another one is never resumed.
        `stop` decides when to stop early (default: on SIGINT or SIGTERM); a stopped run saves a
        checkpoint and raises `TrainingInterrupted`.
        """
        checkpoints = Checkpointer(self, checkpoint_dir, fingerprint) if checkpoint_dir else None
        at, resumed_from = self._start(checkpoints)
        report = on_epoch_end or (lambda row: None)
        for row in at.history:
            report(row)
        stop = stop or StopSignals()
        if self.config.strategy == "multi_worker":
            stop = StopTogether(stop, self.strategy)
        with stop.watching():
            while at.epoch < self.config.epochs:
                self._train_epoch(at, stop, checkpoints, progress)
                self._check_finite(at.epoch)
                row = self._epoch_row(at)
                at.history.append(row)
                at.epoch, at.offset, at.seconds = at.epoch + 1, 0, 0.0
                if checkpoints:
                    checkpoints.save(at)
                report(row)
        return TrainResult(self.models, at.history, resumed_from)

    def _start(self, checkpoints: Checkpointer | None) -> tuple[Position, float | None]:
        """Where to start: the checkpoint's position, or a fresh run (after any encoder pre-training)."""
        at = checkpoints.restore() if checkpoints else None
        if at is None:
            self.pretrain_encoder()
            return Position(), None
        print(
            f"resuming from the checkpoint in {checkpoints.folder}: epoch {at.epoch + 1}, step {at.offset}",
            flush=True,
        )
        return at, at.epoch + at.offset / self.steps_per_epoch

    def _train_epoch(
        self, at: Position, stop: Stop, checkpoints: Checkpointer | None, progress: bool
    ) -> None:
        """The rest of epoch `at.epoch`, in compiled calls of `steps_per_execution` steps."""
        self.epoch_order.assign(self.epoch_permutation(at.epoch))
        if at.offset == 0:
            self.loss_sums.assign(tf.zeros_like(self.loss_sums))
        started = time.perf_counter()
        with _progress(
            progress, self.steps_per_epoch, at.offset, f"epoch {at.epoch + 1}/{self.config.epochs}"
        ) as bar:
            while at.offset < self.steps_per_epoch:
                n = stop.allow(min(self.config.steps_per_execution, self.steps_per_epoch - at.offset))
                first_step = at.epoch * self.steps_per_epoch + at.offset
                self._train_steps_fn(
                    tf.constant(first_step, tf.int64),
                    tf.constant(at.offset, tf.int64),
                    tf.constant(n, tf.int64),
                )
                at.offset += n
                bar.update(n)
                if reason := stop.reason():
                    at.seconds += time.perf_counter() - started
                    self._interrupt(at, reason, checkpoints)
        at.seconds += time.perf_counter() - started

    def _interrupt(self, at: Position, reason: str, checkpoints: Checkpointer | None) -> None:
        """Save where training stands and stop: rerunning the same command resumes from there."""
        where = ""
        if checkpoints:
            checkpoints.save(at)
            where = f" and saved a checkpoint in {checkpoints.folder}"
        raise TrainingInterrupted(
            f"{reason} at epoch {at.epoch + 1}, step {at.offset}/{self.steps_per_epoch}: "
            f"stopped{where}; rerun the same command to resume"
        )

    def _epoch_row(self, at: Position) -> HistoryRow:
        sums = self.loss_sums.numpy() / self.steps_per_epoch
        return {
            "epoch": at.epoch + 1,
            **{f"train_{name}": float(value) for name, value in zip(self.loss_names, sums, strict=True)},
            **self.validate(),
            "images_per_sec": self.steps_per_epoch * self.config.batch_size / max(at.seconds, 1e-9),
            "lr": _current_lr(self.players[-1].optimizer),
            "seconds": at.seconds,
        }

    def _check_finite(self, epoch: int) -> None:
        bad = int(self.bad_step.numpy())
        if bad < 0:
            return
        names = {"recon": "reconstruction"}
        losses = ", ".join(
            f"{names.get(name, name)} {float(value)}"
            for name, value in zip(self.loss_names, self.bad_losses.numpy(), strict=True)
        )
        in_epoch = bad - epoch * self.steps_per_epoch + 1
        raise TrainingDiverged(
            f"training diverged at epoch {epoch + 1}, step {in_epoch}/{self.steps_per_epoch} "
            f"(global step {bad + 1}): {losses}; try a lower train.lr / train.disc_lr or train.lambda"
        )


def _current_lr(optimizer: keras.optimizers.Optimizer) -> float:
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    lr = inner.learning_rate
    return float(lr.numpy() if hasattr(lr, "numpy") else lr)


class _NoProgress:
    def update(self, n: int) -> None:
        pass


@contextlib.contextmanager
def _progress(enabled: bool, total: int, initial: int, desc: str) -> Iterator[object]:
    """A progress bar on an interactive terminal; nothing in CI, logs or pipes."""
    if not enabled or os.environ.get("CI") or not sys.stderr.isatty():
        yield _NoProgress()
        return
    from tqdm import tqdm

    with tqdm(total=total, initial=initial, desc=desc, unit="step", leave=False) as bar:
        yield bar
