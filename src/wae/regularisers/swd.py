"""`swd`: the sliced-Wasserstein auto-encoder (Kolouri et al., "Sliced-Wasserstein Autoencoder: an
embarrassingly simple generative model", ICLR 2019).

The codes and the prior draws are projected on `train.swd_projections` random unit directions; in one
dimension the squared 2-Wasserstein distance between two samples of equal size is the mean squared
difference of their sorted values, and the penalty averages it over the directions. The directions are
stateless draws keyed by (seed, step), like the prior draws: the same on every replica, nothing to
checkpoint, so a resumed run ends with the same weights.
"""

from __future__ import annotations

import tensorflow as tf

from wae.models import Codes
from wae.regularisers.base import Regulariser


def random_directions(n: int, latent_dim: int, seed: tf.Tensor) -> tf.Tensor:
    """n directions drawn uniformly on the unit sphere (n x latent_dim)."""
    gaussian = tf.random.stateless_normal([n, latent_dim], seed=seed)
    return gaussian / tf.norm(gaussian, axis=1, keepdims=True)


def sliced_wasserstein(z_encoded: tf.Tensor, z_prior: tf.Tensor, directions: tf.Tensor) -> tf.Tensor:
    """Mean over directions of W2^2 between the projected samples (both n x d_z, directions L x d_z)."""
    encoded = tf.sort(tf.matmul(tf.cast(z_encoded, tf.float32), directions, transpose_b=True), axis=0)
    prior = tf.sort(tf.matmul(tf.cast(z_prior, tf.float32), directions, transpose_b=True), axis=0)
    return tf.reduce_mean(tf.square(encoded - prior))


class SlicedWasserstein(Regulariser):
    def losses(self, codes: Codes, z_prior: tf.Tensor, seed: tf.Tensor, training: bool):
        directions = random_directions(self.config.swd_projections, self.config.latent_dim, seed)
        return sliced_wasserstein(codes.z, z_prior, directions), ()
