"""DVC stage `prepare`: MNIST -> a fixed train/validation/test split, a preview and the class counts.

Reads `data` from params.yaml; writes data/prepared/mnist.npz, reports/prepare/preview.png and
reports/prepare/class_counts.json (paths relative to the repository root, where DVC runs stages).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from common import params, project_root, run

from wae import data, plots
from wae.atomic import save_figure, write_json

PREPARED = Path("data/prepared/mnist.npz")
PREVIEW = Path("reports/prepare/preview.png")
COUNTS = Path("reports/prepare/class_counts.json")


def main() -> None:
    config = params().data
    if config.source != "auto":
        # A relative data.source means the workspace's, also from a `dvc exp run --temp` copy.
        config = dataclasses.replace(config, source=str(project_root() / Path(config.source).expanduser()))
    splits = data.prepare(config)
    data.save_prepared(PREPARED, splits)
    save_figure(PREVIEW, plots.preview_figure(splits.x_train, splits.y_train), dpi=100)
    write_json(COUNTS, data.class_counts(splits))
    print(
        f"prepare: {len(splits.x_train)} train, {len(splits.x_val)} validation, {len(splits.x_test)} test "
        f"digits (seed {config.seed}) -> {PREPARED}"
    )


if __name__ == "__main__":
    run(main)
