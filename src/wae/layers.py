"""Layers the architectures share: a batch norm with TensorFlow's fused kernel (for training the `post`
and `paper` networks) and the decoders' image head.

Keras 3's `BatchNormalization` computes batch statistics with `ops.moments` and normalises with
`ops.batch_normalization`, and it upcasts bfloat16 inputs to float32 first: on a CPU that is a
dozen element-wise passes (and their gradients) over every activation, about a third of a `post`
training step. `FusedBatchNormalization` is the same layer (same arguments, weights, maths and
moving-average update) whose training pass is one `FusedBatchNormV3` kernel and its gradient,
in the layer's compute dtype. Inference is the stock layer's.

Saved models never contain it: `portable` swaps it for the stock layer with the same weights
before a model is written, so a saved or logged model loads anywhere Keras runs, without this
package.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers


class FusedBatchNormalization(layers.BatchNormalization):
    """`keras.layers.BatchNormalization` whose training pass runs TensorFlow's fused kernel."""

    def _fusable(self, inputs: tf.Tensor, mask: tf.Tensor | None) -> bool:
        return (
            mask is None
            and not self.renorm
            and not self.synchronized
            and self.scale
            and self.center
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
        )

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable and self._fusable(inputs, mask)):
            return super().call(inputs, training=training, mask=mask)
        x = tf.cast(inputs, self.compute_dtype)
        y, batch_mean, batch_variance = tf.compat.v1.nn.fused_batch_norm(
            x,
            tf.cast(self.gamma, tf.float32),
            tf.cast(self.beta, tf.float32),
            epsilon=self.epsilon,
            data_format="NHWC",
            is_training=True,
        )
        # The kernel returns the unbiased batch variance; the stock layer averages the biased one.
        count = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), tf.float32)
        batch_variance = batch_variance * (count - 1.0) / count
        momentum = self.momentum
        self.moving_mean.assign(self.moving_mean * momentum + batch_mean * (1.0 - momentum))
        self.moving_variance.assign(self.moving_variance * momentum + batch_variance * (1.0 - momentum))
        return y


def image_head(conv: layers.Layer, activation: str) -> list[layers.Layer]:
    """A decoder's last convolution (to one channel) in the compute dtype, then its activation in
    float32: images come out as float32, and under bfloat16 the one-channel convolution takes a
    native kernel (in float32 on bfloat16 activations it cost a quarter of a `small` step)."""
    return [conv, layers.Activation(activation, dtype="float32")]


def _stock_layer(layer: layers.Layer) -> layers.Layer:
    if isinstance(layer, FusedBatchNormalization):
        return layers.BatchNormalization.from_config(layer.get_config())
    return layer.__class__.from_config(layer.get_config())


def portable(model: keras.Model) -> keras.Model:
    """A copy of the model, weights included, with stock Keras layers only (what gets saved).

    Made outside the training's distribution strategy: under `multi_worker`, predicting with the
    trained model itself is a collective op that waits for workers that have already left.
    """
    copy = keras.models.clone_model(model, clone_function=_stock_layer)
    copy.set_weights(model.get_weights())
    return copy
