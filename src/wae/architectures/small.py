"""`small`: this project's default, sized for a laptop CPU: strided convolutions, no batch norm, a
sigmoid output. Good digits in minutes."""

from __future__ import annotations

import keras
from keras import layers

from wae.architectures import Architecture
from wae.layers import image_head


def encoder_body(batch_norm: type) -> list[layers.Layer]:
    return [
        layers.Conv2D(32, 4, strides=2, padding="same", activation="relu"),
        layers.Conv2D(64, 4, strides=2, padding="same", activation="relu"),
        layers.Flatten(),
        layers.Dense(256, activation="relu"),
    ]


def code_layer(latent_dim: int, name: str) -> layers.Layer:
    return layers.Dense(latent_dim, dtype="float32", name=name)


def decoder(latent_dim: int, batch_norm: type) -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((latent_dim,)),
            layers.Dense(256, activation="relu"),
            layers.Dense(7 * 7 * 64, activation="relu"),
            layers.Reshape((7, 7, 64)),
            layers.Conv2DTranspose(64, 4, strides=2, padding="same", activation="relu"),
            layers.Conv2DTranspose(32, 4, strides=2, padding="same", activation="relu"),
            *image_head(layers.Conv2D(1, 3, padding="same"), "sigmoid"),
        ],
        name="decoder",
    )


def adversary(latent_dim: int) -> keras.Model:
    """The reference post's discriminator: four ReLU layers of 128 (its final sigmoid is in the loss)."""
    return keras.Sequential(
        [keras.Input((latent_dim,))]
        + [layers.Dense(128, activation="relu") for _ in range(4)]
        + [layers.Dense(1, dtype="float32")],  # a logit; float32 even under mixed precision
        name="discriminator",
    )


ARCHITECTURE = Architecture(encoder_body, code_layer, decoder, adversary)
