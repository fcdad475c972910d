"""The fused batch-norm layer trains as Keras's own does, and saved models hold only stock layers."""

from __future__ import annotations

import json
import zipfile
from dataclasses import replace

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

from wae.atomic import save_keras
from wae.config import TrainConfig
from wae.layers import FusedBatchNormalization
from wae.models import build_models, portable_models

POST = replace(TrainConfig(), architecture="post", latent_dim=1, penalty="gan")


def one_training_call(layer_class: type, precision: str, x, weights, probe):
    """Outputs, gradients (input, gamma, beta), moving statistics after one training call, inference."""
    layer = layer_class(momentum=0.9, dtype=precision)
    layer.build(x.shape)
    layer.set_weights(weights)
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.cast(layer(x, training=True), tf.float32)
        loss = tf.reduce_sum(y * probe)
    grads = tape.gradient(loss, [x, layer.gamma.value, layer.beta.value])
    moving = [layer.moving_mean.numpy(), layer.moving_variance.numpy()]
    inference = tf.cast(layer(x, training=False), tf.float32).numpy()
    return y.numpy(), [g.numpy() for g in grads], moving, inference


@pytest.mark.parametrize("precision, tol", [("float32", 2e-5), ("mixed_bfloat16", 3e-2)])
def test_fused_batch_norm_computes_what_keras_batch_norm_computes(precision, tol):
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(16, 9, 9, 8)) * 3 + 1).astype(np.float32)
    probe = rng.normal(size=x.shape).astype(np.float32)
    weights = [
        rng.uniform(0.5, 2, 8).astype(np.float32),  # gamma
        rng.normal(size=8).astype(np.float32),  # beta
        rng.normal(size=8).astype(np.float32),  # moving mean
        rng.uniform(0.5, 2, 8).astype(np.float32),  # moving variance
    ]
    want = one_training_call(layers.BatchNormalization, precision, x, weights, probe)
    got = one_training_call(FusedBatchNormalization, precision, x, weights, probe)
    np.testing.assert_allclose(got[0], want[0], rtol=tol, atol=tol)  # normalised outputs
    for g, w in zip(got[1], want[1], strict=True):  # gradients of input, gamma, beta
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol * np.abs(w).max())
    for g, w in zip(got[2], want[2], strict=True):  # moving mean and variance, biased as Keras's
        np.testing.assert_allclose(g, w, rtol=1e-5 if precision == "float32" else tol)
    np.testing.assert_allclose(got[3], want[3], rtol=tol, atol=tol)  # inference: the stock path


@pytest.mark.parametrize("architecture, n_batch_norms", [("post", (3, 0)), ("paper", (4, 2))])
def test_saved_networks_hold_stock_layers_and_predict_as_the_trained_ones(
    architecture, n_batch_norms, tmp_path
):
    keras.utils.set_random_seed(0)
    nets = build_models(replace(POST, architecture=architecture))
    x = np.random.default_rng(1).random((8, 28, 28, 1)).astype(np.float32)
    z = nets.encoder(x, training=True)  # moves the batch-norm statistics away from their initial values
    nets.decoder(z, training=True)
    saved = portable_models(nets)

    for net, inputs, expected in zip(("encoder", "decoder"), (x, z.numpy()), n_batch_norms, strict=True):
        trained = getattr(nets, net)
        fused = sum(isinstance(layer, FusedBatchNormalization) for layer in trained.layers)
        assert fused == expected, net
        save_keras(tmp_path / f"{net}.keras", saved[net])
        with zipfile.ZipFile(tmp_path / f"{net}.keras") as archive:
            config = json.loads(archive.read("config.json"))
        classes = [layer["class_name"] for layer in config["config"]["layers"]]
        assert classes.count("BatchNormalization") == expected and "FusedBatchNormalization" not in classes
        assert all(layer["module"].startswith("keras") for layer in config["config"]["layers"])

        loaded = keras.models.load_model(tmp_path / f"{net}.keras", safe_mode=True, compile=False)
        np.testing.assert_allclose(
            loaded.predict(inputs, verbose=0), trained.predict(inputs, verbose=0), rtol=1e-5, atol=1e-6
        )
