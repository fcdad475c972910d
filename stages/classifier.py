"""DVC stage `classifier`: train the judge that `evaluate` scores generated digits with.

Reads `classifier` from params.yaml and the prepared split; writes the model (--model) and its test
accuracy (--metrics; the features are only trusted above 98.5%).
Depends on the data and its own params only, so retraining the WAE never retrains the judge.
"""

from __future__ import annotations

import sys
import time

import tensorflow as tf
from common import params, paths, run

from wae.atomic import save_keras, write_json
from wae.classifier import train_classifier
from wae.data import load_prepared

MIN_ACCURACY = 0.985


def main() -> None:
    files = paths(
        __doc__, prepared="the prepared split", model="the classifier (.keras)", metrics="its scores"
    )
    config = params().classifier
    splits = load_prepared(files.prepared)
    tf.config.experimental.enable_op_determinism()  # with the seed: identical weights on every run
    started = time.perf_counter()
    result = train_classifier(
        config, splits.x_train, splits.y_train, splits.x_test, splits.y_test, splits.x_val, splits.y_val
    )
    seconds = time.perf_counter() - started
    save_keras(files.model, result.model)
    metrics = {"test_accuracy": result.test_accuracy, "test_loss": result.test_loss}
    if result.val_accuracy is not None:
        metrics["val_accuracy"] = result.val_accuracy
    write_json(files.metrics, metrics)
    print(
        f"classifier: test accuracy {result.test_accuracy:.4f} after {config.epochs} epochs "
        f"({seconds:.0f} s) -> {files.model}"
    )
    if result.test_accuracy < MIN_ACCURACY:
        print(
            f"warning: test accuracy below {MIN_ACCURACY:.1%}: the FCD features are weak; "
            "raise classifier.epochs in params.yaml",
            file=sys.stderr,
        )


if __name__ == "__main__":
    run(main)
