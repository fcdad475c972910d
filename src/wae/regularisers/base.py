"""The interface every latent regulariser implements (see `mmd.py` for the simplest)."""

from __future__ import annotations

from typing import ClassVar

import keras
import tensorflow as tf

from wae.config import TrainConfig
from wae.models import Codes, WAEModels


class Regulariser:
    """A penalty on the encoded batch, weighted by `train.lambda` in the auto-encoder's loss.

    A subclass says what it needs and computes its losses:
    - `stochastic_encoder`: the encoder gives a mean and a log-variance, and training codes are
      reparametrised draws (`Codes.log_variance` is then set);
    - `adversaries`: networks of its own, each trained by its own optimiser (`train.disc_lr`) on the
      loss of the same index in `losses`' second value, named by `adversary_losses` (history columns
      `train_<name>`). The trainer builds the optimisers, checkpoints the networks and saves them.

    It is built in the strategy's scope and the run's dtype policy, after the auto-encoder.
    """

    stochastic_encoder: ClassVar[bool] = False
    adversary_losses: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: TrainConfig, models: WAEModels) -> None:
        self.config = config
        self.adversaries: dict[str, keras.Model] = {}

    def losses(
        self, codes: Codes, z_prior: tf.Tensor, seed: tf.Tensor, training: bool
    ) -> tuple[tf.Tensor, tuple[tf.Tensor, ...]]:
        """(penalty, adversaries' losses), before lambda, as float32 scalars.

        `codes` and `z_prior` are this replica's share of the batch (N x latent_dim each); `seed` keys
        any draws of the regulariser's own (stateless: the same on every replica, new every step).
        """
        raise NotImplementedError
