"""Set-up as a new user meets it: which Python `make` picks, what it says when there is none, and an
environment that does not recompile its libraries in every process."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from project import REPO

FIND_PYTHON = REPO / "scripts" / "find-python"


def interpreter(version: str) -> Path | None:
    """A working CPython `version` on this machine (on PATH, or installed by pyenv), or None."""
    candidates = [shutil.which(f"python{version}")]
    if pyenv := shutil.which("pyenv"):
        root = subprocess.run([pyenv, "root"], capture_output=True, text=True).stdout.strip()
        candidates += sorted(Path(root).glob(f"versions/{version}*/bin/python{version}"))
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys; print(sys.executable)"], capture_output=True, text=True
        )
        if probe.returncode == 0:
            return Path(probe.stdout.strip())
    return None


def find_python(tmp_path: Path, on_path: dict[str, Path], *args: str) -> subprocess.CompletedProcess[str]:
    """scripts/find-python with a PATH holding only `on_path` (name -> interpreter) and `cat`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, target in {**on_path, "cat": Path(shutil.which("cat"))}.items():
        (bin_dir / name).symlink_to(target)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path)}
    return subprocess.run(["/bin/sh", FIND_PYTHON, *args], env=env, capture_output=True, text=True)


def test_make_picks_the_newest_supported_python_it_finds(tmp_path):
    older, newer = interpreter("3.11"), interpreter("3.12")
    if older is None or newer is None:
        pytest.skip("needs Python 3.11 and 3.12 on this machine")
    result = find_python(tmp_path, {"python3.11": older, "python3.12": newer, "python2": older})
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).resolve() == newer.resolve()


def test_with_no_supported_python_make_says_what_to_install_and_fails(tmp_path):
    result = find_python(tmp_path, {})
    assert result.returncode != 0
    assert "no Python 3.11, 3.12 or 3.13 found" in result.stderr
    assert "sudo apt install python3.12" in result.stderr and "brew install python@3.12" in result.stderr
    assert result.stdout == ""


def test_a_named_python_that_is_not_supported_is_named_in_the_error(tmp_path):
    old = interpreter("3.10") or interpreter("3.9")
    if old is None:
        pytest.skip("needs an unsupported Python (3.9 or 3.10) on this machine")
    result = find_python(tmp_path, {"python3.10": old}, "python3.10")
    assert result.returncode != 0
    assert "PYTHON=python3.10 is not a working Python 3.11, 3.12 or 3.13 here" in result.stderr


def test_make_lets_python_write_its_bytecode_even_where_the_environment_forbids_it(tmp_path):
    """Without a bytecode cache every stage and `dvc` command compiles TensorFlow, MLflow and DVC from
    source again (5-13 s of CPU each): `make`'s commands write it as Python does by default."""
    probe = tmp_path / "probe.mk"
    probe.write_text('probe:\n\t@python3 -c "import sys; print(sys.flags.dont_write_bytecode)"\n')
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run(
        ["make", "-s", "-f", "Makefile", "-f", str(probe), "probe"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"
