"""`mmd`: WAE-MMD, the paper's maximum mean discrepancy with a multi-scale inverse-multiquadratic
kernel, unbiased (diagonal terms excluded). Needs no extra network."""

from __future__ import annotations

import tensorflow as tf

from wae.models import Codes
from wae.regularisers.base import Regulariser

# The paper's scales s of the base bandwidth C = 2 * d_z * sigma^2.
MMD_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def _squared_distances(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    a2 = tf.reduce_sum(tf.square(a), axis=1, keepdims=True)
    b2 = tf.reduce_sum(tf.square(b), axis=1, keepdims=True)
    return tf.maximum(a2 + tf.transpose(b2) - 2.0 * tf.matmul(a, b, transpose_b=True), 0.0)


def imq_kernel_sum(d2: tf.Tensor, latent_dim: int, prior_std: float) -> tf.Tensor:
    """Sum over scales of k(x, y) = C / (C + ||x - y||^2), elementwise on squared distances."""
    base = 2.0 * latent_dim * prior_std**2
    return tf.add_n([(base * s) / (base * s + d2) for s in MMD_SCALES])


def mmd_penalty(z_encoded: tf.Tensor, z_prior: tf.Tensor, prior_std: float) -> tf.Tensor:
    """Unbiased MMD^2 estimate between encoded codes and prior samples (both n x d_z)."""
    z_encoded = tf.cast(z_encoded, tf.float32)
    z_prior = tf.cast(z_prior, tf.float32)
    n = tf.cast(tf.shape(z_encoded)[0], tf.float32)
    m = tf.cast(tf.shape(z_prior)[0], tf.float32)
    latent_dim = z_encoded.shape[-1]
    k_qq = imq_kernel_sum(_squared_distances(z_encoded, z_encoded), latent_dim, prior_std)
    k_pp = imq_kernel_sum(_squared_distances(z_prior, z_prior), latent_dim, prior_std)
    k_qp = imq_kernel_sum(_squared_distances(z_encoded, z_prior), latent_dim, prior_std)
    # k(x, x) = number of scales on the diagonal: excluded for the unbiased estimate.
    diagonal = float(len(MMD_SCALES))
    within_q = (tf.reduce_sum(k_qq) - n * diagonal) / (n * (n - 1.0))
    within_p = (tf.reduce_sum(k_pp) - m * diagonal) / (m * (m - 1.0))
    across = 2.0 * tf.reduce_sum(k_qp) / (n * m)
    return within_q + within_p - across


class MMD(Regulariser):
    def losses(self, codes: Codes, z_prior: tf.Tensor, seed: tf.Tensor, training: bool):
        return mmd_penalty(codes.z, z_prior, self.config.prior_std), ()
