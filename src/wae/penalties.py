"""The two ways a WAE pulls the encoded codes Q_Z towards the prior P_Z.

- `mmd_penalty`: the paper's maximum mean discrepancy with a multi-scale inverse-multiquadratic
  kernel, unbiased (diagonal terms excluded). Needs no extra network.
- `gan_losses`: the reference post's adversary in latent space. The post ends its discriminator
  with a sigmoid and takes logs with a 1e-6 fudge; here the sigmoid is folded into a
  from-logits cross-entropy, which is exact and never takes log(0).
"""

from __future__ import annotations

import tensorflow as tf

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


def gan_losses(prior_logits: tf.Tensor, encoded_logits: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(discriminator loss, encoder penalty), before multiplying by lambda.

    The discriminator learns prior -> 1, encoded -> 0; the encoder is rewarded when its codes
    pass as prior samples (the non-saturating generator loss, as in the post).
    """
    bce = tf.nn.sigmoid_cross_entropy_with_logits
    prior_logits = tf.cast(prior_logits, tf.float32)
    encoded_logits = tf.cast(encoded_logits, tf.float32)
    disc_loss = tf.reduce_mean(bce(tf.ones_like(prior_logits), prior_logits)) + tf.reduce_mean(
        bce(tf.zeros_like(encoded_logits), encoded_logits)
    )
    encoder_penalty = tf.reduce_mean(bce(tf.ones_like(encoded_logits), encoded_logits))
    return disc_loss, encoder_penalty
