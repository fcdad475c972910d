"""DVC stage `prepare`: MNIST -> a fixed train/validation/test split, a preview and the class counts.

Reads `data` from params.yaml; writes the prepared split (--prepared) and, in --reports, preview.png
and class_counts.json. dvc.yaml passes the paths, relative to the repository root where DVC runs stages.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from common import params, paths, project_root, run

from wae import data, plots
from wae.atomic import save_figure, write_json


def main() -> None:
    files = paths(__doc__, prepared="the prepared split (.npz)", reports="folder of the preview and counts")
    config = params().data
    if config.source != "auto":
        # A relative data.source means the workspace's, also from a `dvc exp run --temp` copy.
        config = dataclasses.replace(config, source=str(project_root() / Path(config.source).expanduser()))
    splits = data.prepare(config)
    data.save_prepared(files.prepared, splits)
    save_figure(files.reports / "preview.png", plots.preview_figure(splits.x_train, splits.y_train), dpi=100)
    write_json(files.reports / "class_counts.json", data.class_counts(splits))
    print(
        f"prepare: {len(splits.x_train)} train, {len(splits.x_val)} validation, {len(splits.x_test)} test "
        f"digits (seed {config.seed}) -> {files.prepared}"
    )


if __name__ == "__main__":
    run(main)
