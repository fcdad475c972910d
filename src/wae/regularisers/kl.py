"""`kl`: the VAE baseline (Kingma and Welling 2014; with lambda as beta, Higgins et al. 2017).

The encoder is Gaussian: it gives a mean and a log-variance per code dimension, and training codes are
reparametrised draws from it (`wae.models.reparametrise`, noise keyed by (seed, step)). The penalty is
the closed-form KL divergence to the prior N(0, prior_std^2 I), summed over dimensions and averaged
over the batch. The decoder, the reconstruction cost and lambda are those of the other regularisers,
so the comparison is like for like. Evaluation and sampling use the mean code: the saved encoder
outputs it.
"""

from __future__ import annotations

import math

import tensorflow as tf

from wae.models import Codes
from wae.regularisers.base import Regulariser


def gaussian_kl(mean: tf.Tensor, log_variance: tf.Tensor, prior_std: float) -> tf.Tensor:
    """KL(N(mean, diag(exp(log_variance))) || N(0, prior_std^2 I)), batch mean of the per-code sum."""
    prior_variance = prior_std**2
    log_ratio = log_variance - math.log(prior_variance)  # log of the variances' ratio, exactly
    per_dim = tf.exp(log_ratio) + tf.square(mean) / prior_variance - 1.0 - log_ratio
    return tf.reduce_mean(0.5 * tf.reduce_sum(per_dim, axis=1))


class KL(Regulariser):
    stochastic_encoder = True

    def losses(self, codes: Codes, z_prior: tf.Tensor, seed: tf.Tensor, training: bool):
        return gaussian_kl(codes.mean, codes.log_variance, self.config.prior_std), ()
