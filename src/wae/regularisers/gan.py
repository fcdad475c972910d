"""`gan`: WAE-GAN, an adversary in latent space (the reference post's and the paper's).

The discriminator learns prior -> 1, encoded -> 0 with its own optimiser; the encoder is penalised
by the non-saturating generator loss. The post ends its discriminator with a sigmoid and takes logs
with a 1e-6 fudge; here the sigmoid is folded into a from-logits cross-entropy, which is exact and
never takes log(0). Both players update in the same compiled step, from one discriminator pass over
the prior draws and the codes together.
"""

from __future__ import annotations

import tensorflow as tf

from wae.config import TrainConfig
from wae.models import Codes, WAEModels, build_adversary
from wae.regularisers.base import Regulariser


def gan_losses(prior_logits: tf.Tensor, encoded_logits: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(discriminator loss, encoder penalty), before multiplying by lambda."""
    bce = tf.nn.sigmoid_cross_entropy_with_logits
    prior_logits = tf.cast(prior_logits, tf.float32)
    encoded_logits = tf.cast(encoded_logits, tf.float32)
    disc_loss = tf.reduce_mean(bce(tf.ones_like(prior_logits), prior_logits)) + tf.reduce_mean(
        bce(tf.zeros_like(encoded_logits), encoded_logits)
    )
    encoder_penalty = tf.reduce_mean(bce(tf.ones_like(encoded_logits), encoded_logits))
    return disc_loss, encoder_penalty


class GAN(Regulariser):
    adversary_losses = ("disc",)

    def __init__(self, config: TrainConfig, models: WAEModels) -> None:
        super().__init__(config, models)
        self.discriminator = build_adversary(config)
        self.adversaries = {"discriminator": self.discriminator}

    def losses(self, codes: Codes, z_prior: tf.Tensor, seed: tf.Tensor, training: bool):
        logits = self.discriminator(tf.concat([z_prior, codes.z], axis=0), training=training)
        prior_logits, encoded_logits = tf.split(logits, 2, axis=0)
        disc_loss, penalty = gan_losses(prior_logits, encoded_logits)
        return penalty, (disc_loss,)
