"""`paper`: the MNIST networks of Tolstikhin et al. (2018), as the paper's code builds them
(tolstikhin/wae: `config_mnist` in configs.py, models.py, ops.py).

- encoder (`dcgan`, 4 layers of up to 1024 filters): 4x4 convolutions with stride 2 to 128, 256, 512
  and 1024 channels, each followed by batch norm and a ReLU, then a linear layer to the code;
- decoder (`dcgan_mod`, 3 layers): a linear layer to 7 x 7 x 1024 and a ReLU (no batch norm there),
  4x4 transposed convolutions with stride 2 to 512 and 256 channels, each followed by batch norm and
  a ReLU, then a 4x4 transposed convolution with stride 1 to one channel and a sigmoid;
- adversary (WAE-GAN): four linear layers of 512 with ReLUs, then a logit;
- weights drawn from normal(0, 0.0099999) (`init_std`), truncated at two standard deviations for the
  convolutions (`ops.conv2d`) and plain for the transposed convolutions and linear layers
  (`ops.deconv2d`, `ops.linear`); biases start at 0 (`init_bias`);
- batch norm with decay 0.9 and epsilon 1e-5 (`batch_norm_decay`, `batch_norm_eps`);
- the encoder adds truncated-normal noise of std 0.01 to its inputs in training (`e_noise: add_noise`),
  and none at evaluation.

Adam's epsilon (1e-8, TensorFlow 1's) and the encoder pre-training (`e_pretrain`) are training
settings: the `paper` preset sets them (`train.adam_epsilon`, `train.pretrain_steps`).
"""

from __future__ import annotations

import keras
from keras import initializers, layers

from wae.architectures import Architecture
from wae.layers import image_head

INIT_STD = 0.0099999
BATCH_NORM = {"momentum": 0.9, "epsilon": 1e-5}


def _normal() -> initializers.Initializer:
    return initializers.RandomNormal(stddev=INIT_STD)


def _truncated() -> initializers.Initializer:
    return initializers.TruncatedNormal(stddev=INIT_STD)


def encoder_body(batch_norm: type) -> list[layers.Layer]:
    body: list[layers.Layer] = []
    for filters in (128, 256, 512, 1024):
        body += [
            layers.Conv2D(filters, 4, strides=2, padding="same", kernel_initializer=_truncated()),
            batch_norm(**BATCH_NORM),
            layers.ReLU(),
        ]
    return [*body, layers.Flatten()]


def code_layer(latent_dim: int, name: str) -> layers.Layer:
    return layers.Dense(latent_dim, kernel_initializer=_normal(), dtype="float32", name=name)


def decoder(latent_dim: int, batch_norm: type) -> keras.Model:
    def up(filters: int) -> list[layers.Layer]:
        return [
            layers.Conv2DTranspose(filters, 4, strides=2, padding="same", kernel_initializer=_normal()),
            batch_norm(**BATCH_NORM),
            layers.ReLU(),
        ]

    return keras.Sequential(
        [
            keras.Input((latent_dim,)),
            layers.Dense(7 * 7 * 1024, kernel_initializer=_normal()),
            layers.Reshape((7, 7, 1024)),
            layers.ReLU(),
            *up(512),
            *up(256),
            *image_head(
                layers.Conv2DTranspose(1, 4, strides=1, padding="same", kernel_initializer=_normal()),
                "sigmoid",
            ),
        ],
        name="decoder",
    )


def adversary(latent_dim: int) -> keras.Model:
    return keras.Sequential(
        [keras.Input((latent_dim,))]
        + [layers.Dense(512, activation="relu", kernel_initializer=_normal()) for _ in range(4)]
        + [layers.Dense(1, kernel_initializer=_normal(), dtype="float32")],
        name="discriminator",
    )


ARCHITECTURE = Architecture(encoder_body, code_layer, decoder, adversary, input_noise_std=0.01)
