"""Fixtures shared by the whole suite."""

from __future__ import annotations

from pathlib import Path

import pytest

# Our CI machines have no internet: the canonical MNIST files sit beside the repository
# (../shared/data/mnist) and stand in for the download. Elsewhere the tests use the user's MNIST
# cache ($WAE_DATA_HOME/mnist, default ~/.cache/wae/mnist), downloading into it once if needed.
MNIST_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with slow tests first, each module's tests in their own order: `make test` hands whole
    modules to its processes (pytest-xdist, --dist loadscope), and long ones handed out last would
    leave the other process idle at the end."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)


def _complete(folder: Path) -> bool:
    return all((folder / f"{name}.gz").is_file() for name in _MNIST_FILES)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """A folder holding the four canonical MNIST .gz files (read-only)."""
    if _complete(MNIST_DIR):
        return MNIST_DIR
    from wae.config import DataConfig
    from wae.data import cache_dir, fetch

    folder = cache_dir()
    if not _complete(folder):
        fetch(folder, DataConfig().mirrors)  # a DataError here says where to put the files
    return folder


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


@pytest.fixture
def never_run_project(tmp_path: Path, data_home_session: Path) -> tuple[Path, dict[str, str]]:
    """As `tiny_project`, with an empty DVC cache: nothing of the pipeline has ever run on this machine,
    so DVC can restore no stage from its run cache (which it does before a stage's own checks run)."""
    from project import make_project, project_env

    env = project_env(data_home_session)
    root = make_project(tmp_path / "project", env, shared_cache=False)
    return root, env
