"""Atomic outputs: write to a temporary name beside the target, then rename.

A crash (or Ctrl-C) never leaves a half-written file that DVC could cache or a later
stage could read: the target either holds the old content, or the complete new one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping
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
    """Save arrays as a compressed .npz whose bytes depend only on the arrays."""
    import numpy as np

    with atomic_path(target, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)
        _reproducible_zip(tmp)


def save_figure(target: str | Path, figure: Any, **kwargs: Any) -> None:
    """Save a matplotlib figure atomically (metadata stripped so the bytes are reproducible)."""
    target = Path(target)
    metadata = {"Software": None} if target.suffix == ".png" else None
    with atomic_path(target, suffix=target.suffix) as tmp:
        figure.savefig(tmp, metadata=metadata, **kwargs)


def save_keras(target: str | Path, model: Any) -> None:
    """Save a Keras model as a .keras file whose bytes depend only on the model.

    Keras writes the time of saving (metadata.json) and, for layers used twice, a memory address
    (`shared_object_id` in config.json); the zip records the time too. They are replaced by a fixed
    date and ids numbered in order, so that DVC sees a retrained, identical model as unchanged and
    stages downstream of it stay up to date.
    """
    with atomic_path(target, suffix=".keras") as tmp:
        model.save(tmp)
        _reproducible_zip(tmp, {"metadata.json": _without_save_date, "config.json": _numbered_shared_ids})


def _without_save_date(data: bytes) -> bytes:
    metadata = json.loads(data)
    metadata.pop("date_saved", None)
    return json.dumps(metadata).encode()


def _numbered_shared_ids(data: bytes) -> bytes:
    numbers: dict[bytes, bytes] = {}

    def number(match: re.Match[bytes]) -> bytes:
        found = numbers.setdefault(match.group(2), str(len(numbers)).encode())
        return match.group(1) + found

    return re.sub(rb'("shared_object_id":\s*)(\d+)', number, data)


# Zip entries carry a modification time; a fixed one (the zip format's earliest) keeps bytes reproducible.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def _reproducible_zip(path: Path, edits: Mapping[str, Callable[[bytes], bytes]] | None = None) -> None:
    """Rewrite the zip at `path` in place: the same entries in the same order and compression, each
    dated `_ZIP_EPOCH`, and the entries named in `edits` passed through their function."""
    edits = edits or {}
    with zipfile.ZipFile(path) as source:
        entries = [(info, source.read(info)) for info in source.infolist()]
    with zipfile.ZipFile(path, "w") as zipped:
        for info, data in entries:
            fixed = zipfile.ZipInfo(info.filename, date_time=_ZIP_EPOCH)
            fixed.compress_type = info.compress_type
            fixed.external_attr = info.external_attr
            edit = edits.get(info.filename)
            zipped.writestr(fixed, edit(data) if edit else data)
