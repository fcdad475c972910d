"""Write Python's bytecode cache (.pyc) for the modules the pipeline imports; run by scripts/setup-venv.

pip compiles a package's bytecode when it installs it; uv does not, and leaves it to the first import,
which writes it unless PYTHONDONTWRITEBYTECODE is set. Many Docker images and CI machines set it, and
then every process recompiles TensorFlow, Keras, MLflow and DVC from source: about 5,000 modules, 5-10 s
of CPU for each stage, each `dvc` command and each test that starts one. Compiling all 15,000 modules of
the environment takes 40-60 s on two cores; importing what the pipeline, DVC and the tests use takes a
third of that, and the cache it writes is read whatever PYTHONDONTWRITEBYTECODE says.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import warnings

# What the stages, DVC's commands, `mlflow ui`/`mlflow server` and the tests import. A name ending in
# ".*" is imported with every submodule (ours, and DVC's commands: each `dvc ...` loads its own).
MODULES = (
    "wae.*",
    "dvc.cli",
    "dvc.commands.*",
    "dvc.repo",
    "dvc.repo.experiments.queue.celery",
    "dvc.repo.experiments.executor.local",
    "dvc.repo.reproduce",
    "mlflow.keras",
    "mlflow.pyfunc",
    "mlflow.models.signature",
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store",
    "mlflow.server",
    "mlflow.cli",
    "sklearn.mixture",
    "sklearn.linear_model",
    "sklearn.neighbors",
    "matplotlib.pyplot",
    "pytest",
    "selenium.webdriver",
)


def load(name: str) -> list[str]:
    """Import `name`; the names of its submodules when it is a package named with ".*"."""
    try:
        module = importlib.import_module(name.removesuffix(".*"))
    except Exception:  # a module that cannot load here is only not compiled
        return []
    if not name.endswith(".*"):
        return []
    return [info.name for info in pkgutil.walk_packages(module.__path__, f"{module.__name__}.")]


def main() -> None:
    sys.dont_write_bytecode = False
    warnings.simplefilter("ignore")
    for name in MODULES:
        for submodule in load(name):
            load(submodule)


if __name__ == "__main__":
    main()
