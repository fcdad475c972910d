"""A WAE's networks: built from an architecture (`wae.architectures`), encoded and decoded, loaded back.

Encoders map images in [0, 1] (N x 28 x 28 x 1) to codes; decoders map codes back to images. An
encoder is deterministic (images to codes), or stochastic when the regulariser asks for one (the
VAE's): it then gives a mean and a log-variance, training codes are draws from that Gaussian, and
the saved encoder gives the mean. Under a mixed-precision policy codes and images still come out as
float32: the code layers compute in float32, the decoders end in a float32 activation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from wae.architectures import architecture
from wae.config import TrainConfig
from wae.errors import WAEError
from wae.layers import FusedBatchNormalization, portable

IMAGE_SHAPE = (28, 28, 1)


@dataclass(frozen=True)
class Codes:
    """One encoded batch, float32 N x latent_dim: the codes the decoder sees and where they come from."""

    z: tf.Tensor  # the codes: a stochastic encoder's draws in training, its mean otherwise
    mean: tf.Tensor  # z itself for a deterministic encoder
    log_variance: tf.Tensor | None = None  # a stochastic encoder's only


def reparametrise(mean: tf.Tensor, log_variance: tf.Tensor, noise: tf.Tensor) -> tf.Tensor:
    """Draws from N(mean, exp(log_variance)) as a differentiable function of standard normal noise."""
    return mean + tf.exp(0.5 * log_variance) * noise


@dataclass
class WAEModels:
    """The auto-encoder: what is trained, saved and sampled."""

    encoder: keras.Model  # images -> codes (a stochastic encoder's mean): saved, scored, sampled with
    decoder: keras.Model  # codes -> images
    trained_encoder: keras.Model  # what training runs: `encoder`, or images -> [mean, log-variance]
    input_noise_std: float = 0.0  # noise on the encoder's training inputs (the architecture's)

    @property
    def stochastic(self) -> bool:
        return self.trained_encoder is not self.encoder

    @property
    def trainable_variables(self) -> list[tf.Variable]:
        return self.trained_encoder.trainable_variables + self.decoder.trainable_variables

    def noise(self, n: int, seed: tf.Tensor) -> dict[str, tf.Tensor]:
        """The random draws `encode` takes in training for n images, from a stateless seed."""
        noise = {}
        if self.input_noise_std:
            shape, fold = [n, *IMAGE_SHAPE], tf.random.experimental.stateless_fold_in(seed, 0)
            noise["images"] = self.input_noise_std * tf.random.stateless_truncated_normal(shape, seed=fold)
        if self.stochastic:
            shape, fold = (
                [n, self.encoder.output_shape[-1]],
                tf.random.experimental.stateless_fold_in(seed, 1),
            )
            noise["codes"] = tf.random.stateless_normal(shape, seed=fold)
        return noise

    def encode(self, images: tf.Tensor, training: bool, noise: dict[str, tf.Tensor]) -> Codes:
        """Codes of images in [0, 1]; with the draws of `noise` in training, without them otherwise."""
        if "images" in noise:
            images = images + noise["images"]
        if not self.stochastic:
            z = tf.cast(self.trained_encoder(images, training=training), tf.float32)
            return Codes(z, mean=z)
        mean, log_variance = (tf.cast(t, tf.float32) for t in self.trained_encoder(images, training=training))
        z = reparametrise(mean, log_variance, noise["codes"]) if "codes" in noise else mean
        return Codes(z, mean, log_variance)


def _encoders(config: TrainConfig, batch_norm: type, stochastic: bool) -> tuple[keras.Model, keras.Model]:
    """(the encoder, what training runs): the same network for a deterministic encoder."""
    arch, latent_dim = architecture(config.architecture), config.latent_dim
    body = arch.encoder_body(batch_norm)
    if not stochastic:
        encoder = keras.Sequential(
            [keras.Input(IMAGE_SHAPE), *body, arch.code_layer(latent_dim, "code")], name="encoder"
        )
        return encoder, encoder
    images = features = keras.Input(IMAGE_SHAPE)
    for layer in body:
        features = layer(features)
    mean = arch.code_layer(latent_dim, "code_mean")(features)
    log_variance = arch.code_layer(latent_dim, "code_log_variance")(features)
    gaussian = keras.Model(images, [mean, log_variance], name="gaussian_encoder")
    return keras.Model(images, mean, name="encoder"), gaussian


def build_models(
    config: TrainConfig,
    stochastic_encoder: bool = False,
    batch_norm: type[layers.Layer] = FusedBatchNormalization,
) -> WAEModels:
    """Fresh, randomly initialised networks (seed them first for reproducible weights).

    Batch norm trains with TensorFlow's fused kernel (`wae.layers`): the same layer and maths as
    `keras.layers.BatchNormalization`, which benchmarks pass to compare.
    """
    encoder, trained_encoder = _encoders(config, batch_norm, stochastic_encoder)
    arch = architecture(config.architecture)
    decoder = arch.decoder(config.latent_dim, batch_norm)
    return WAEModels(encoder, decoder, trained_encoder, arch.input_noise_std)


def build_adversary(config: TrainConfig) -> keras.Model:
    """The architecture's latent adversary (codes to one logit), for adversarial regularisers."""
    return architecture(config.architecture).adversary(config.latent_dim)


def portable_models(models: WAEModels) -> dict[str, keras.Model]:
    """The networks that are saved and logged, with stock Keras layers only."""
    return {"encoder": portable(models.encoder), "decoder": portable(models.decoder)}


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
