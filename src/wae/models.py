"""The three networks of a WAE, by architecture, and how to load a trained one back.

- `small`: this project's default, sized for a laptop CPU (strided convolutions, no batch norm,
  a sigmoid output), good digits in minutes.
- `post`: exactly the networks of the reference blog post (latent 1 by its settings).
- `paper`: the MNIST setup of Tolstikhin et al. (tolstikhin/wae `config_mnist`), GPU-sized.

Encoders map images in [0, 1] (N x 28 x 28 x 1) to codes; decoders map codes back to images;
the discriminator maps codes to one logit (the post's final sigmoid is folded into the loss).
Under a mixed-precision policy codes, images and logits still come out as float32: the encoder's
and the discriminator's last layers compute in float32, the decoders end in a float32 activation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from keras import layers

from wae.config import TrainConfig
from wae.errors import WAEError
from wae.layers import FusedBatchNormalization, portable

IMAGE_SHAPE = (28, 28, 1)


@dataclass
class WAEModels:
    encoder: keras.Model
    decoder: keras.Model
    discriminator: keras.Model | None  # only for the gan penalty


def _image_head(conv: layers.Layer, activation: str) -> list[layers.Layer]:
    """A decoder's last convolution (to one channel) in the compute dtype, then its activation in
    float32: images come out as float32, and under bfloat16 the one-channel convolution takes a
    native kernel (in float32 on bfloat16 activations it cost a quarter of a `small` step)."""
    return [conv, layers.Activation(activation, dtype="float32")]


def _small(latent_dim: int, batch_norm: type[layers.Layer]) -> tuple[keras.Model, keras.Model]:
    encoder = keras.Sequential(
        [
            keras.Input(IMAGE_SHAPE),
            layers.Conv2D(32, 4, strides=2, padding="same", activation="relu"),
            layers.Conv2D(64, 4, strides=2, padding="same", activation="relu"),
            layers.Flatten(),
            layers.Dense(256, activation="relu"),
            layers.Dense(latent_dim, dtype="float32"),
        ],
        name="encoder",
    )
    decoder = keras.Sequential(
        [
            keras.Input((latent_dim,)),
            layers.Dense(256, activation="relu"),
            layers.Dense(7 * 7 * 64, activation="relu"),
            layers.Reshape((7, 7, 64)),
            layers.Conv2DTranspose(64, 4, strides=2, padding="same", activation="relu"),
            layers.Conv2DTranspose(32, 4, strides=2, padding="same", activation="relu"),
            *_image_head(layers.Conv2D(1, 3, padding="same"), "sigmoid"),
        ],
        name="decoder",
    )
    return encoder, decoder


def _post(latent_dim: int, batch_norm: type[layers.Layer]) -> tuple[keras.Model, keras.Model]:
    encoder = keras.Sequential(
        [
            keras.Input(IMAGE_SHAPE),
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
            layers.Dense(latent_dim, dtype="float32"),
        ],
        name="encoder",
    )
    decoder = keras.Sequential(
        [
            keras.Input((latent_dim,)),
            layers.Dense(7 * 7 * 32, activation="relu"),
            layers.Reshape((7, 7, 32)),
            layers.Conv2DTranspose(64, 3, strides=2, padding="same", activation="relu"),
            layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu"),
            *_image_head(layers.Conv2DTranspose(1, 3, strides=1, padding="same"), "linear"),  # as the post
        ],
        name="decoder",
    )
    return encoder, decoder


def _paper(latent_dim: int, batch_norm: type[layers.Layer]) -> tuple[keras.Model, keras.Model]:
    encoder_layers: list[layers.Layer] = [keras.Input(IMAGE_SHAPE)]
    for filters in (128, 256, 512, 1024):
        encoder_layers += [
            layers.Conv2D(filters, 4, strides=2, padding="same"),
            batch_norm(),
            layers.ReLU(),
        ]
    encoder = keras.Sequential(
        [*encoder_layers, layers.Flatten(), layers.Dense(latent_dim, dtype="float32")], name="encoder"
    )
    decoder = keras.Sequential(
        [
            keras.Input((latent_dim,)),
            layers.Dense(7 * 7 * 1024),
            layers.Reshape((7, 7, 1024)),
            batch_norm(),
            layers.ReLU(),
            layers.Conv2DTranspose(512, 4, strides=2, padding="same"),
            batch_norm(),
            layers.ReLU(),
            layers.Conv2DTranspose(256, 4, strides=2, padding="same"),
            batch_norm(),
            layers.ReLU(),
            *_image_head(layers.Conv2DTranspose(1, 4, strides=1, padding="same"), "sigmoid"),
        ],
        name="decoder",
    )
    return encoder, decoder


def _discriminator(architecture: str, latent_dim: int) -> keras.Model:
    width, depth = (512, 4) if architecture == "paper" else (128, 4)
    return keras.Sequential(
        [keras.Input((latent_dim,))]
        + [layers.Dense(width, activation="relu") for _ in range(depth)]
        + [layers.Dense(1, dtype="float32")],  # a logit; float32 even under mixed precision
        name="discriminator",
    )


_BUILDERS = {"small": _small, "post": _post, "paper": _paper}


def build_models(config: TrainConfig, fused_batch_norm: bool = True) -> WAEModels:
    """Fresh, randomly initialised networks (seed them first for reproducible weights).

    `fused_batch_norm` trains batch norm with TensorFlow's fused kernel (`wae.layers`): the same
    layer and maths as `keras.layers.BatchNormalization`, which `False` gives.
    """
    batch_norm = FusedBatchNormalization if fused_batch_norm else layers.BatchNormalization
    encoder, decoder = _BUILDERS[config.architecture](config.latent_dim, batch_norm)
    discriminator = (
        _discriminator(config.architecture, config.latent_dim) if config.penalty == "gan" else None
    )
    return WAEModels(encoder, decoder, discriminator)


def portable_models(models: WAEModels) -> WAEModels:
    """The trained networks with stock Keras layers only: what is saved and logged."""
    discriminator = models.discriminator
    return WAEModels(
        portable(models.encoder),
        portable(models.decoder),
        None if discriminator is None else portable(discriminator),
    )


def to_float_images(images: np.ndarray) -> np.ndarray:
    """uint8 0..255 -> float32 [0, 1]; float input is passed through as float32."""
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    return images.astype(np.float32, copy=False)


def encode(encoder: keras.Model, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Codes of images (uint8 or float in [0, 1]), shape N x latent_dim."""
    return np.asarray(encoder.predict(to_float_images(images), batch_size=batch_size, verbose=0), np.float32)


def decode(decoder: keras.Model, codes: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Images of codes, float32 N x 28 x 28 x 1 clipped to [0, 1] (the post's decoder is linear)."""
    images = decoder.predict(np.asarray(codes, np.float32), batch_size=batch_size, verbose=0)
    return np.clip(np.asarray(images, np.float32), 0.0, 1.0)


def prior_samples(n: int, latent_dim: int, prior_std: float, seed: int) -> np.ndarray:
    """n codes from the prior N(0, prior_std^2 I), reproducible from the seed."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, latent_dim)) * prior_std).astype(np.float32)


@dataclass
class TrainedWAE:
    encoder: keras.Model
    decoder: keras.Model
    latent_dim: int
    prior_std: float
    info: dict


MODEL_INFO = "model_info.json"


def model_info(config: TrainConfig) -> dict:
    """What downstream stages need to know about a trained model, saved beside it."""
    return {
        "architecture": config.architecture,
        "latent_dim": config.latent_dim,
        "prior_std": config.prior_std,
        "penalty": config.penalty,
        "lambda": config.lambda_,
    }


def load_trained(folder: str | Path) -> TrainedWAE:
    """Load the encoder and decoder that `train` wrote (Keras safe mode: no arbitrary code)."""
    folder = Path(folder)
    try:
        info = json.loads((folder / MODEL_INFO).read_text())
        encoder = keras.models.load_model(folder / "encoder.keras", safe_mode=True, compile=False)
        decoder = keras.models.load_model(folder / "decoder.keras", safe_mode=True, compile=False)
    except (FileNotFoundError, ValueError, OSError) as err:
        raise WAEError(f"no trained model in {folder} ({err}); run the train stage first") from None
    return TrainedWAE(encoder, decoder, int(info["latent_dim"]), float(info["prior_std"]), info)
