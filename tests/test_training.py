"""The training loop: both WAE penalties learn, the step compiles once, a seed fixes the weights, a
stopped run resumes to the same weights, and the encoder pre-training of the paper's code."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import tensorflow as tf

from wae import training
from wae.checkpoints import Checkpointer
from wae.config import TrainConfig
from wae.data import load_mnist
from wae.errors import TrainingInterrupted
from wae.stopping import StopAfterSteps
from wae.training import WAETrainer, moment_matching_loss, seed_everything


@pytest.fixture(scope="module")
def digits(mnist_dir) -> np.ndarray:
    """2,200 training digits as uint8 N x 28 x 28 x 1, as the prepare stage stores them."""
    return load_mnist(mnist_dir).x_train[:2200, :, :, None]


def tiny(**overrides) -> TrainConfig:
    return replace(TrainConfig(), **{"epochs": 3, "batch_size": 100, "steps_per_execution": 4, **overrides})


def train(config: TrainConfig, digits: np.ndarray, **fit_kwargs) -> WAETrainer:
    seed_everything(config.seed)
    trainer = WAETrainer(config, digits[:2000], digits[2000:])
    trainer.fit(progress=False, **fit_kwargs)
    return trainer


@pytest.mark.parametrize("penalty", ["mmd", "gan"])
def test_each_penalty_learns_to_reconstruct(digits, penalty):
    history = []
    trainer = train(tiny(penalty=penalty), digits, on_epoch_end=history.append)
    assert [row["epoch"] for row in history] == [1, 2, 3]
    for row in history:
        assert all(np.isfinite(v) for v in row.values()), row
    recon = [row["train_recon"] for row in history]
    assert recon[0] > recon[1] > recon[2], recon
    assert history[-1]["val_recon"] < history[0]["val_recon"]
    assert ("train_disc" in history[0]) == (penalty == "gan")
    assert list(trainer.networks()) == [
        "encoder",
        "decoder",
        *(["discriminator"] if penalty == "gan" else []),
    ]


def test_the_post_architecture_trains_with_its_linear_decoder_reproducibly(digits):
    config = tiny(architecture="post", latent_dim=1, prior_std=2.0, penalty="gan", lambda_=0.001)
    config = replace(config, recon_cost="mse", recon_weight=1.0, epochs=2)
    history = []
    first = train(config, digits, on_epoch_end=history.append).models.encoder
    assert history[1]["train_recon"] < history[0]["train_recon"]
    # Its batch norm trains with the fused kernel: still the same weights (moving statistics too).
    again = train(config, digits).models.encoder
    assert all(np.array_equal(a, b) for a, b in zip(first.get_weights(), again.get_weights(), strict=True))


def test_the_step_is_traced_once_per_run(digits):
    # 20 steps per epoch in calls of 3: calls of 3 and a last one of 2, over three epochs.
    trainer = train(tiny(steps_per_execution=3), digits)
    assert trainer.trace_count == 1


def test_one_seed_gives_identical_weights_and_another_seed_does_not(digits):
    first = train(tiny(epochs=1), digits).models.decoder.get_weights()
    again = train(tiny(epochs=1), digits).models.decoder.get_weights()
    other = train(tiny(epochs=1, seed=1), digits).models.decoder.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


@pytest.mark.parametrize("penalty", ["gan", "swd", "kl"])  # an adversary; random directions; noisy codes
def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(digits, tmp_path, penalty):
    config = tiny(penalty=penalty, epochs=2)
    straight = train(config, digits).networks()

    # Stop after 27 of the 40 steps (mid-epoch, mid-call) as a signal would: it saves a checkpoint.
    seed_everything(config.seed)
    interrupted = WAETrainer(config, digits[:2000], digits[2000:])
    with pytest.raises(TrainingInterrupted, match="epoch 2, step 7/20: stopped and saved a checkpoint"):
        interrupted.fit(tmp_path, "fp", progress=False, stop=StopAfterSteps(27))
    seed_everything(config.seed + 1)  # the resumed run must not depend on the process's seed
    resumed = WAETrainer(config, digits[:2000], digits[2000:])
    result = resumed.fit(tmp_path, "fp", progress=False)
    assert result.resumed_from_epoch == pytest.approx(1 + 7 / 20)
    assert [row["epoch"] for row in result.history] == [1, 2]
    for name, net in straight.items():
        want, got = net.get_weights(), resumed.networks()[name].get_weights()
        assert all(np.array_equal(a, b) for a, b in zip(want, got, strict=True)), name


def test_a_checkpoint_of_other_params_or_data_is_never_resumed(digits, tmp_path):
    config = tiny(epochs=1)
    train(config, digits, checkpoint_dir=tmp_path, fingerprint="params-A")
    seed_everything(0)
    trainer = WAETrainer(config, digits[:2000], digits[2000:])
    assert Checkpointer(trainer, tmp_path, "params-B").restore() is None
    assert Checkpointer(trainer, tmp_path, "params-A").restore().epoch == 1


def test_the_pre_training_loss_is_the_squared_gap_of_means_and_covariances():
    """tolstikhin/wae `pretrain_loss`: mean squared gap of the means plus that of the covariances."""
    rng = np.random.default_rng(0)
    codes, prior = rng.normal(0.3, 0.5, size=(400, 3)), rng.normal(size=(400, 3))
    by_hand = np.mean((codes.mean(0) - prior.mean(0)) ** 2) + np.mean(
        (np.cov(codes.T) - np.cov(prior.T)) ** 2
    )
    loss = moment_matching_loss(tf.constant(codes, tf.float32), tf.constant(prior, tf.float32))
    assert float(loss) == pytest.approx(by_hand, rel=1e-5)


def test_encoder_pre_training_moves_the_encoder_of_a_fresh_run_only(digits, tmp_path, capsys, monkeypatch):
    config = tiny(epochs=1, pretrain_steps=3, latent_dim=8)  # at 8 the fresh codes are far from the target
    seed_everything(config.seed)
    trainer = WAETrainer(config, digits[:2000], digits[2000:])
    encoder, decoder = trainer.models.encoder.get_weights(), trainer.models.decoder.get_weights()
    assert len(trainer.pretrain_encoder()) == 3
    assert not any(
        np.array_equal(a, b) for a, b in zip(encoder, trainer.models.encoder.get_weights(), strict=True)
    )
    assert all(
        np.array_equal(a, b) for a, b in zip(decoder, trainer.models.decoder.get_weights(), strict=True)
    )
    monkeypatch.setattr(training, "PRETRAIN_TARGET", 10.0)  # reached at once: it stops after one step
    assert len(trainer.pretrain_encoder()) == 1

    # fit pre-trains a fresh run before its first epoch; a resumed run is not pre-trained again.
    capsys.readouterr()
    with pytest.raises(TrainingInterrupted):
        trainer.fit(tmp_path, "fp", progress=False, stop=StopAfterSteps(5))
    assert "pre-trained the encoder" in capsys.readouterr().out
    WAETrainer(config, digits[:2000], digits[2000:]).fit(tmp_path, "fp", progress=False)
    assert "pre-trained" not in capsys.readouterr().out
