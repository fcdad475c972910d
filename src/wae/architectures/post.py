"""`post`: exactly the networks of the reference blog post (latent 1 by its settings): a convolutional
encoder with Keras's batch-norm settings, a linear decoder output, and the post's discriminator
(which `small` shares)."""

from __future__ import annotations

import keras
from keras import layers

from wae.architectures import Architecture, small
from wae.layers import image_head


def encoder_body(batch_norm: type) -> list[layers.Layer]:
    return [
        layers.Conv2D(64, 2),
        batch_norm(),
        layers.LeakyReLU(),
        layers.Conv2D(32, 3),
        batch_norm(),
        layers.LeakyReLU(),
        layers.Conv2D(32, 3),
        batch_norm(),
        layers.LeakyReLU(),
        layers.Flatten(),
        layers.Dense(32, activation="relu"),
        layers.Dense(16, activation="relu"),
        layers.Dense(8, activation="relu"),
    ]


def decoder(latent_dim: int, batch_norm: type) -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((latent_dim,)),
            layers.Dense(7 * 7 * 32, activation="relu"),
            layers.Reshape((7, 7, 32)),
            layers.Conv2DTranspose(64, 3, strides=2, padding="same", activation="relu"),
            layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu"),
            *image_head(layers.Conv2DTranspose(1, 3, strides=1, padding="same"), "linear"),  # as the post
        ],
        name="decoder",
    )


ARCHITECTURE = Architecture(encoder_body, small.code_layer, decoder, small.adversary)
