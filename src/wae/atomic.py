"""Atomic outputs: write to a temporary name beside the target, then rename.

A crash (or Ctrl-C) never leaves a half-written file that DVC could cache or a later
stage could read: the target either holds the old content, or the complete new one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to `target`; on success rename it onto `target`.

    Works for files and folders. `suffix` keeps an extension that a writer insists on
    (Keras wants `.keras`, matplotlib infers the format from it).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{suffix}", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()
    try:
        yield tmp
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def write_bytes(target: str | Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text(target: str | Path, text: str) -> None:
    write_bytes(target, text.encode())


def write_json(target: str | Path, obj: Any) -> None:
    write_text(target, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_npz(target: str | Path, **arrays: Any) -> None:
    import numpy as np

    with atomic_path(target, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)


def save_figure(target: str | Path, figure: Any, **kwargs: Any) -> None:
    """Save a matplotlib figure atomically (metadata stripped so the bytes are reproducible)."""
    target = Path(target)
    metadata = {"Software": None} if target.suffix == ".png" else None
    with atomic_path(target, suffix=target.suffix) as tmp:
        figure.savefig(tmp, metadata=metadata, **kwargs)


def save_keras(target: str | Path, model: Any) -> None:
    with atomic_path(target, suffix=".keras") as tmp:
        model.save(tmp)
