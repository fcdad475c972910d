"""The judge of `evaluate`: it learns digits, survives a save/load in safe mode, and its features
make the Fréchet classifier distance (FCD) tell real digits from degraded ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from wae import classifier
from wae.atomic import save_keras
from wae.config import ClassifierConfig
from wae.data import MnistSplits, load_mnist, split
from wae.errors import WAEError
from wae.metrics import feature_frechet_distance, gaussian_fit


@pytest.fixture(scope="module")
def splits(mnist_dir: Path) -> MnistSplits:
    return split(load_mnist(mnist_dir), val_size=1000)


@pytest.fixture(scope="module")
def judge(splits: MnistSplits) -> classifier.ClassifierResult:
    """Two epochs on 10,000 digits (~5 s): ~96% accurate, enough for features that separate."""
    return classifier.train_classifier(
        ClassifierConfig(epochs=2, seed=0),
        splits.x_train[:10000],
        splits.y_train[:10000],
        splits.x_test[:2000],
        splits.y_test[:2000],
    )


@pytest.mark.slow
def test_trains_on_a_small_subset_to_over_90_percent(judge, splits: MnistSplits) -> None:
    assert judge.test_accuracy > 0.9
    # the reported accuracy is the model's accuracy on the test digits it was given
    assert classifier.accuracy(judge.model, splits.x_test[:2000], splits.y_test[:2000]) == pytest.approx(
        judge.test_accuracy, abs=1e-6
    )


@pytest.mark.slow
def test_features_and_probabilities_for_uint8_or_unit_float_digits(judge, splits: MnistSplits) -> None:
    digits = splits.x_test[:300]
    feats = classifier.features(judge.model, digits)
    proba = classifier.predict_proba(judge.model, digits)
    assert feats.shape == (300, 128) and feats.dtype == np.float64
    assert proba.shape == (300, 10) and np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    # 0..255 and [0, 1] are the same digits: real and generated images are judged on one scale
    np.testing.assert_allclose(classifier.features(judge.model, digits.astype(np.float32) / 255.0), feats)
    both_feats, both_proba = classifier.features_and_proba(judge.model, digits)
    np.testing.assert_allclose(both_feats, feats, rtol=1e-6)
    np.testing.assert_allclose(both_proba, proba, rtol=1e-6)


@pytest.mark.slow
def test_saved_classifier_loads_in_safe_mode_and_predicts_the_same(
    judge, splits: MnistSplits, tmp_path: Path
) -> None:
    path = tmp_path / "models" / "classifier.keras"
    save_keras(path, judge.model)
    loaded = classifier.load_classifier(path)  # safe_mode=True: stock layers only
    digits = splits.x_test[:100]
    np.testing.assert_allclose(
        classifier.features(loaded, digits), classifier.features(judge.model, digits), rtol=1e-6
    )


def test_missing_classifier_says_which_stage_to_run(tmp_path: Path) -> None:
    with pytest.raises(WAEError, match="dvc repro classifier"):
        classifier.load_classifier(tmp_path / "classifier.keras")


@pytest.mark.slow
def test_fcd_is_near_zero_for_real_digits_and_far_higher_for_blurred_or_noisy_ones(
    judge, splits: MnistSplits
) -> None:
    test_digits, train_digits = splits.x_test[:2000], splits.x_train[-2000:]  # disjoint, same distribution
    reference = classifier.features(judge.model, test_digits)
    unit = test_digits.astype(np.float32) / 255.0
    blurred = gaussian_filter(unit, sigma=(0, 1.0, 1.0, 0))
    noisy = np.clip(unit + np.random.default_rng(0).normal(0.0, 0.4, unit.shape), 0.0, 1.0)

    real = feature_frechet_distance(classifier.features(judge.model, train_digits), reference)
    blur = feature_frechet_distance(classifier.features(judge.model, blurred), reference)
    noise = feature_frechet_distance(classifier.features(judge.model, noisy.astype(np.float32)), reference)

    # Two finite samples of one distribution never score exactly 0: the estimate carries a bias of
    # order (feature dims / samples) times the feature variance. With 128 features and 2,000 digits
    # that is ~1-1.5% of the total feature variance; 3% leaves twice that as head-room.
    total_variance = np.trace(gaussian_fit(reference)[1])
    assert real < 0.03 * total_variance
    assert blur > 10 * real
    assert noise > 10 * real
