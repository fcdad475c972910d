"""The latent regularisers: the same weights as before they became plug-ins.

The digests below were recorded from the trainer before the regularisers became plug-ins
(commit 18584e1): a seeded, tiny float32 run of each setup, hashed over every network's weights.
Float32 results are bit-identical from run to run on one kind of CPU, but TensorFlow's kernels
sum in another order on another instruction set, so the check runs on the kind of CPU that
recorded them (our CI's) and is skipped elsewhere.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from wae.config import TrainConfig
from wae.data import load_mnist
from wae.training import WAETrainer, seed_everything

# Instruction sets that change which kernels TensorFlow runs (and so float32 round-off).
_ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")
RECORDED_ON = frozenset(_ISA_FLAGS)  # an Intel Xeon with AMX, as our CI machines
RECORDED_DIGESTS = {
    ("small", "mmd"): "6ac14467fcdfca4c61b22acfe300a8778bc570a65328f0bb33ff0a677387aae7",
    ("small", "gan"): "15a6c0569603eb9434b9467ad403d672c452e7eff3729915c8c80699d4280a02",
    ("post", "gan"): "9f3ed004cbfe497a33c16f4eee032429587e822aecdcec24801e935d077617c7",
}


def cpu_instruction_sets() -> frozenset[str]:
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return frozenset()
    return frozenset(f for f in _ISA_FLAGS if f in flags)


def digest_setup(architecture: str, penalty: str) -> TrainConfig:
    """Tiny, seeded and float32 (`auto` would pick bfloat16 on CPUs that have it)."""
    config = TrainConfig(
        architecture=architecture,
        penalty=penalty,
        latent_dim=4,
        batch_size=50,
        epochs=2,
        steps_per_execution=3,
        precision="float32",
        seed=5,
    )
    if architecture == "post":
        config = replace(
            config, latent_dim=1, prior_std=2.0, lambda_=0.001, recon_cost="mse", recon_weight=1.0
        )
    return config


def weights_digest(trainer: WAETrainer) -> str:
    models = trainer.models
    digest = hashlib.sha256()
    for net in (models.encoder, models.decoder, models.discriminator):
        for variable in net.weights if net is not None else ():
            digest.update(np.ascontiguousarray(variable.numpy()).tobytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def digits(mnist_dir) -> np.ndarray:
    return load_mnist(mnist_dir).x_train[:400, :, :, None]


@pytest.mark.slow
@pytest.mark.parametrize(("architecture", "penalty"), list(RECORDED_DIGESTS))
def test_mmd_and_gan_train_the_weights_they_trained_before_the_restructure(digits, architecture, penalty):
    if cpu_instruction_sets() != RECORDED_ON:
        pytest.skip("digests recorded on another kind of CPU (float32 kernels round differently)")
    config = digest_setup(architecture, penalty)
    seed_everything(config.seed)
    trainer = WAETrainer(config, digits[:300], digits[300:])
    trainer.fit(progress=False)
    assert weights_digest(trainer) == RECORDED_DIGESTS[(architecture, penalty)]
