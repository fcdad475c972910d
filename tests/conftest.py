"""Fixtures shared by the whole suite."""

from __future__ import annotations

from pathlib import Path

import pytest

# The machines this project is tested on have no internet: the canonical MNIST files sit beside
# the repository and stand in for the download a user's machine would make.
MNIST_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The folder of the four canonical MNIST .gz files (read-only)."""
    if not all((MNIST_DIR / f"{name}.gz").is_file() for name in _MNIST_FILES):
        pytest.fail(f"the tests need the 4 MNIST .gz files in {MNIST_DIR}")
    return MNIST_DIR


_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
