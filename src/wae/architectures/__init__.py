"""Network architectures, by name: one module each, registered below.

An architecture module defines `ARCHITECTURE`, an `Architecture` of four builders (see `small.py`):
the encoder's body (images to features), the layer that maps features to a code (used once for a
deterministic encoder, twice, for the mean and the log-variance, for a stochastic one), the decoder,
and the latent adversary that adversarial regularisers train. What is specific to a published setup
(initialisers, batch-norm settings, noise on the encoder's inputs) lives in its module, not in the
trainer.

This file imports no TensorFlow, so that validating `train.architecture` stays light.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import keras

# name -> what it is (params.yaml's comment and error messages say the same)
ARCHITECTURES: dict[str, str] = {
    "small": "this project's default, sized for a laptop CPU",
    "post": "the networks of the reference blog post",
    "paper": "Tolstikhin et al.'s MNIST networks (tolstikhin/wae config_mnist), GPU-sized",
}


@dataclass(frozen=True)
class Architecture:
    # (batch_norm layer class) -> the encoder's layers after its input, up to the features
    encoder_body: Callable[[type], list[Any]]
    # (latent_dim, name) -> the layer from features to a code, float32 even under mixed precision
    code_layer: Callable[[int, str], Any]
    # (latent_dim, batch_norm layer class) -> codes to images in [0, 1] (float32)
    decoder: Callable[[int, type], keras.Model]
    # (latent_dim) -> codes to one logit (float32)
    adversary: Callable[[int], keras.Model]
    # std of the noise added to the encoder's inputs in training (the paper's "add_noise" encoder)
    input_noise_std: float = 0.0


def architecture(name: str) -> Architecture:
    """The registered architecture of that name (imports Keras)."""
    if name not in ARCHITECTURES:
        raise KeyError(f"unknown architecture {name!r}; choose one of: {', '.join(ARCHITECTURES)}")
    return importlib.import_module(f"wae.architectures.{name}").ARCHITECTURE
