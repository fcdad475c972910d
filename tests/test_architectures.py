"""The architectures: `paper` is the paper's code's (tolstikhin/wae config_mnist), and every registered
architecture builds with both kinds of encoder."""

from __future__ import annotations

from dataclasses import replace

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

from wae.architectures import ARCHITECTURES
from wae.config import TrainConfig
from wae.models import build_adversary, build_models
from wae.presets import PRESETS
from wae.training import WAETrainer

PAPER = TrainConfig(**{k.replace("lambda", "lambda_"): v for k, v in PRESETS["paper"].items()})
INIT_STD = 0.0099999  # config_mnist['init_std']


@pytest.fixture(scope="module")
def paper():
    keras.utils.set_random_seed(0)
    return build_models(PAPER), build_adversary(PAPER)


def kernels(model: keras.Model, kind: type) -> list[np.ndarray]:
    return [layer.kernel.numpy() for layer in model.layers if type(layer) is kind]


def test_the_paper_decoder_has_no_batch_norm_after_its_first_linear_layer(paper):
    models, _ = paper
    names = [type(layer).__name__ for layer in models.decoder.layers]
    assert names[:3] == ["Dense", "Reshape", "ReLU"]
    assert names.count("FusedBatchNormalization") == 2  # after the two strided transposed convolutions
    encoder_names = [type(layer).__name__ for layer in models.encoder.layers]
    assert encoder_names.count("FusedBatchNormalization") == 4


def test_the_paper_batch_norm_uses_decay_0_9_and_epsilon_1e_5(paper):
    models, _ = paper
    norms = [
        layer
        for net in (models.encoder, models.decoder)
        for layer in net.layers
        if "Normalization" in type(layer).__name__
    ]
    assert norms and all((bn.momentum, bn.epsilon) == (0.9, 1e-5) for bn in norms)


def test_the_paper_weights_start_from_the_references_normal_truncated_for_convolutions(paper):
    models, adversary = paper
    convs = np.concatenate([k.ravel() for k in kernels(models.encoder, layers.Conv2D)])
    assert np.abs(convs).max() <= 2 * INIT_STD  # truncated at two standard deviations (ops.conv2d)
    assert convs.std() == pytest.approx(INIT_STD * 0.8796, rel=0.01)  # a truncated normal's std
    plain = [
        *kernels(models.decoder, layers.Conv2DTranspose),
        *kernels(models.decoder, layers.Dense),
        *kernels(models.encoder, layers.Dense),
        *kernels(adversary, layers.Dense),
    ]
    plain = np.concatenate([k.ravel() for k in plain])
    assert plain.std() == pytest.approx(INIT_STD, rel=0.01)  # plain normal (ops.deconv2d, ops.linear)
    assert np.abs(plain).max() > 4 * INIT_STD
    biases = [
        w for net in (models.encoder, models.decoder, adversary) for w in net.weights if "bias" in w.path
    ]
    assert biases and all(not np.any(b.numpy()) for b in biases)  # init_bias 0
    assert [layer.units for layer in adversary.layers] == [512, 512, 512, 512, 1]


def test_the_paper_encoder_adds_truncated_noise_of_std_0_01_to_its_training_inputs(paper):
    models, _ = paper
    noise = models.noise(64, tf.constant([0, 0], tf.int64))["images"].numpy()
    assert noise.shape == (64, 28, 28, 1)
    assert np.abs(noise).max() <= 0.02 and noise.std() == pytest.approx(0.01 * 0.8796, rel=0.02)
    assert "images" not in build_models(replace(PAPER, architecture="small")).noise(
        4, tf.constant([0, 0], tf.int64)
    )


def test_the_paper_preset_takes_adam_epsilon_and_encoder_pre_training_from_the_reference(mnist_dir):
    assert (PAPER.adam_epsilon, PAPER.pretrain_steps) == (1e-8, 200)
    assert (PAPER.lambda_, PRESETS["paper-gan"]["lambda"], PRESETS["paper-gan"]["penalty"]) == (
        10.0,
        10.0,
        "gan",
    )
    small = replace(TrainConfig(), adam_epsilon=1e-8, batch_size=10)
    trainer = WAETrainer(small, np.zeros((20, 28, 28, 1), np.uint8))
    assert all(player.optimizer.epsilon == 1e-8 for player in trainer.players)


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
@pytest.mark.parametrize("stochastic", [False, True])
def test_every_architecture_builds_a_deterministic_and_a_gaussian_encoder(architecture, stochastic):
    config = replace(TrainConfig(), architecture=architecture, latent_dim=3)
    models = build_models(config, stochastic_encoder=stochastic)
    images = tf.zeros([2, 28, 28, 1])
    assert models.encoder(images).shape == (2, 3)
    outputs = models.trained_encoder(images)
    assert [tuple(o.shape) for o in outputs] == [(2, 3), (2, 3)] if stochastic else outputs.shape == (2, 3)
    assert models.decoder(tf.zeros([2, 3])).shape == (2, 28, 28, 1)
    assert build_adversary(config)(tf.zeros([2, 3])).shape == (2, 1)
