"""Latent regularisers: how the codes Q_Z are pulled towards the prior P_Z, by name.

`train.penalty` names one of `REGULARISERS`; each lives in a module of its own here and subclasses
`base.Regulariser`. Adding one is a module, a line below and its tests.

This file imports no TensorFlow, so that validating `train.penalty` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wae.regularisers.base import Regulariser

# name -> "module:class", and what it is (params.yaml's comment and error messages say the same)
REGULARISERS: dict[str, tuple[str, str]] = {
    "mmd": ("wae.regularisers.mmd:MMD", "WAE-MMD: maximum mean discrepancy, inverse-multiquadratic kernels"),
    "gan": ("wae.regularisers.gan:GAN", "WAE-GAN: a latent discriminator with its own optimiser"),
    "swd": (
        "wae.regularisers.swd:SlicedWasserstein",
        "SWAE: sliced-Wasserstein distance (Kolouri et al. 2019)",
    ),
    "kl": ("wae.regularisers.kl:KL", "VAE: Gaussian encoder, closed-form KL to the prior (lambda = beta)"),
    "none": (
        "wae.regularisers.none:NoRegulariser",
        "a plain auto-encoder: no latent penalty, lambda ignored",
    ),
}

# Penalties that ignore train.lambda (config validation warns when it is set).
IGNORES_LAMBDA = frozenset({"none"})


def regulariser_class(name: str) -> type[Regulariser]:
    """The registered regulariser of that name (imports TensorFlow)."""
    if name not in REGULARISERS:
        raise KeyError(f"unknown regulariser {name!r}; choose one of: {', '.join(REGULARISERS)}")
    module, cls = REGULARISERS[name][0].split(":")
    return getattr(importlib.import_module(module), cls)
