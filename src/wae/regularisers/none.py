"""`none`: a plain auto-encoder, the baseline that shows what the latent penalty buys. No penalty:
`train.lambda` is ignored (config validation warns when it is not 0)."""

from __future__ import annotations

import tensorflow as tf

from wae.models import Codes
from wae.regularisers.base import Regulariser


class NoRegulariser(Regulariser):
    def losses(self, codes: Codes, z_prior: tf.Tensor, seed: tf.Tensor, training: bool):
        return tf.zeros([]), ()
