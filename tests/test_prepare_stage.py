"""`python stages/prepare.py`, run as DVC runs it: from a repository root, in a fresh process.

Every bad input must stop the stage with one clear message and leave no output behind.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from project import stage_command

from wae import data

REPO = Path(__file__).resolve().parents[1]
OUTPUTS = ("data/prepared/mnist.npz", "reports/prepare/preview.png", "reports/prepare/class_counts.json")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of what the stage needs from the repository: its scripts and params.yaml."""
    root = tmp_path / "repo"
    shutil.copytree(REPO / "stages", root / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    return root


@pytest.fixture
def data_home(tmp_path: Path, mnist_dir: Path) -> Path:
    """A WAE_DATA_HOME whose cache already holds MNIST, as after a first download."""
    cache = tmp_path / "data_home" / "mnist"
    cache.mkdir(parents=True)
    for name in data.FILES:
        (cache / f"{name}.gz").symlink_to(mnist_dir / f"{name}.gz")
    return cache.parent


def set_data_params(repo: Path, **values: object) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"].update(values)
    (repo / "params.yaml").write_text(yaml.safe_dump(params))


def run_prepare(repo: Path, data_home: Path, **env_vars: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WAE_DATA_HOME": str(data_home), "CI": "1", **env_vars}
    return subprocess.run(
        [sys.executable, *stage_command("prepare")[1:]],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_failed_cleanly(result: subprocess.CompletedProcess[str], repo: Path) -> None:
    assert result.returncode == 2, result.stderr
    assert "\nerror: " in f"\n{result.stderr}" and "Traceback" not in result.stderr
    assert not (repo / "data").exists() and not (repo / "reports").exists()


def test_prepare_writes_split_preview_and_counts_with_identical_bytes_each_run(
    repo: Path, data_home: Path
) -> None:
    first = run_prepare(repo, data_home)

    assert first.returncode == 0, first.stderr
    assert "55000 train, 5000 validation, 10000 test digits" in first.stdout
    splits = data.load_prepared(repo / "data/prepared/mnist.npz")
    assert splits.x_train.shape == (55000, 28, 28, 1) and splits.x_train.dtype == np.uint8
    assert splits.x_val.shape == (5000, 28, 28, 1) and splits.y_test.shape == (10000,)
    counts = json.loads((repo / "reports/prepare/class_counts.json").read_text())
    assert {split: sum(c.values()) for split, c in counts.items()} == {
        "train": 55000,
        "val": 5000,
        "test": 10000,
    }
    assert (repo / "reports/prepare/preview.png").read_bytes()[:4] == b"\x89PNG"

    outputs = {path: (repo / path).read_bytes() for path in OUTPUTS}
    second = run_prepare(repo, data_home)
    assert second.returncode == 0, second.stderr
    assert {path: (repo / path).read_bytes() for path in OUTPUTS} == outputs


def test_relative_source_is_the_workspace_copy_also_in_a_dvc_temp_experiment(
    repo: Path, mnist_dir: Path, tmp_path: Path
) -> None:
    mnist = data.load_mnist(mnist_dir)
    (repo / "local").mkdir()
    np.savez(
        repo / "local/mnist.npz", **{k: getattr(mnist, k) for k in ("x_train", "y_train", "x_test", "y_test")}
    )
    set_data_params(repo, source="local/mnist.npz", val_size=100, train_subset=200)
    # `dvc exp run --temp` runs in a copy without untracked files, and names the workspace in DVC_ROOT.
    experiment = tmp_path / "exp_copy"
    shutil.copytree(repo, experiment, ignore=shutil.ignore_patterns("local"))

    result = run_prepare(experiment, tmp_path / "no_cache", DVC_ROOT=str(repo))

    assert result.returncode == 0, result.stderr
    assert "200 train, 100 validation, 10000 test digits" in result.stdout
    assert (experiment / "data/prepared/mnist.npz").is_file() and not (repo / "data").exists()


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"val_size": -1}, "data.val_size = -1 is not allowed"),
        ({"val_size": 70000}, "data.val_size = 70000 is not allowed"),
        ({"train_subset": 56000}, "data.train_subset = 56000 is not allowed"),
        ({"val_sise": 100}, "unknown key data.val_sise; did you mean data.val_size?"),
    ],
)
def test_bad_params_stop_the_stage_before_any_output(
    repo: Path, data_home: Path, values: dict[str, object], expected: str
) -> None:
    set_data_params(repo, **values)

    result = run_prepare(repo, data_home)

    assert_failed_cleanly(result, repo)
    assert expected in result.stderr


# --- Bad copies of MNIST given as data.source: each names the file and what is wrong ----------


def _rewrite(folder: Path, name: str, change: Callable[[bytearray], bytes], gzipped: bool = False) -> Path:
    """Replace `name` in `folder` by its uncompressed content after `change` (re-gzipped if asked)."""
    link = folder / f"{name}.gz"
    raw = change(bytearray(gzip.decompress(link.read_bytes())))
    link.unlink()
    target = folder / (f"{name}.gz" if gzipped else name)
    target.write_bytes(gzip.compress(raw, compresslevel=1) if gzipped else raw)
    return target


def truncated_gzip(folder: Path) -> tuple[Path, str]:
    link = folder / "t10k-labels-idx1-ubyte.gz"
    content = link.read_bytes()
    link.unlink()
    link.write_bytes(content[: len(content) // 2])
    return link, "corrupt or truncated gzip file"


def wrong_magic(folder: Path) -> tuple[Path, str]:
    path = _rewrite(folder, "t10k-images-idx3-ubyte", lambda raw: struct.pack(">I", 2049) + raw[4:])
    return path, "magic number 2049 is not an IDX images file (expected 2051)"


def wrong_shape(folder: Path) -> tuple[Path, str]:
    path = _rewrite(folder, "t10k-images-idx3-ubyte", lambda raw: raw[:8] + struct.pack(">I", 27) + raw[12:])
    return path, "images are 27x28 pixels, expected 28x28"


def truncated_data(folder: Path) -> tuple[Path, str]:
    path = _rewrite(folder, "t10k-images-idx3-ubyte", lambda raw: raw[:-100])
    return path, "truncated: the header promises 10000 images (7840000 bytes), found 7839900"


def fewer_labels(folder: Path) -> tuple[Path, str]:
    path = _rewrite(
        folder, "t10k-labels-idx1-ubyte", lambda raw: raw[:4] + struct.pack(">I", 9999) + raw[8:-1]
    )
    return path, "9999 labels but"


def label_out_of_range(folder: Path) -> tuple[Path, str]:
    path = _rewrite(folder, "t10k-labels-idx1-ubyte", lambda raw: raw[:8] + b"\x0a" + raw[9:])
    return path, "label 10 at index 0 is not a digit 0..9"


def one_pixel_changed(folder: Path) -> tuple[Path, str]:
    def change(raw: bytearray) -> bytes:
        raw[16 + 14 * 28 + 14] ^= 1
        return bytes(raw)

    path = _rewrite(folder, "t10k-images-idx3-ubyte", change, gzipped=True)
    return path, "checksum mismatch"


def missing_file(folder: Path) -> tuple[Path, str]:
    (folder / "train-labels-idx1-ubyte.gz").unlink()
    return folder, "has no train-labels-idx1-ubyte (plain or .gz). Put the 4 MNIST files"


def no_such_source(folder: Path) -> tuple[Path, str]:
    shutil.rmtree(folder)
    return folder, "no such file or folder; point data.source in params.yaml at a folder"


@pytest.mark.parametrize(
    "corrupt",
    [
        truncated_gzip,
        wrong_magic,
        wrong_shape,
        truncated_data,
        fewer_labels,
        label_out_of_range,
        one_pixel_changed,
        missing_file,
        no_such_source,
    ],
)
def test_bad_mnist_copy_is_named_and_nothing_is_written(
    repo: Path, data_home: Path, tmp_path: Path, corrupt: Callable[[Path], tuple[Path, str]]
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(data_home / "mnist", copy, symlinks=True)
    path, expected = corrupt(copy)
    set_data_params(repo, source=str(copy))

    result = run_prepare(repo, data_home)

    assert_failed_cleanly(result, repo)
    assert str(path) in result.stderr
    assert expected in result.stderr


def test_empty_cache_and_no_working_mirror_says_where_to_put_the_files(repo: Path, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/mnist/"
    set_data_params(repo, mirrors=[dead])

    result = run_prepare(repo, tmp_path / "empty_home")

    assert_failed_cleanly(result, repo)
    assert f"{dead}train-images-idx3-ubyte.gz: <urlopen error" in result.stderr
    assert f"in {tmp_path / 'empty_home' / 'mnist'}, or set data.source in params.yaml" in result.stderr
    assert not any((tmp_path / "empty_home" / "mnist").iterdir())
