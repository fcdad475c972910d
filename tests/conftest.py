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


@pytest.fixture(scope="session")
def data_home_session(tmp_path_factory: pytest.TempPathFactory, mnist_dir: Path) -> Path:
    """A WAE_DATA_HOME whose cache holds the canonical MNIST files (symlinks)."""
    home = tmp_path_factory.mktemp("wae_data_home")
    (home / "mnist").mkdir()
    for name in _MNIST_FILES:
        (home / "mnist" / f"{name}.gz").symlink_to(mnist_dir / f"{name}.gz")
    return home


@pytest.fixture
def tiny_project(tmp_path: Path, data_home_session: Path) -> tuple[Path, dict[str, str]]:
    """A committed git copy of the project with tiny params, and the environment to run it in."""
    from project import make_project, project_env

    env = project_env(data_home_session)
    root = make_project(tmp_path / "project", env)
    return root, env
