"""MNIST: find or download the canonical files, check them strictly, split them reproducibly.

Every file is verified against the SHA-256 of its *uncompressed* IDX content, so a copy that was
re-compressed, decompressed, or converted to Keras' `mnist.npz` is accepted, and a file that differs
by one pixel is not. Anything wrong raises a `DataError` that names the file and what to do.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.client
import os
import struct
import sys
import urllib.request
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from wae.atomic import atomic_path, save_npz
from wae.config import DataConfig
from wae.errors import DataError

# SHA-256 of the uncompressed files (their MD5 sums match the canonical ones published with MNIST).
SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
FILES = tuple(SHA256)
N_TRAIN, N_TEST, SIDE = 60000, 10000, 28
DOWNLOAD_TIMEOUT_S = 30.0
_SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Mnist:
    """The canonical digits as published: uint8 images (N, 28, 28) and uint8 labels (N,)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass(frozen=True)
class MnistSplits:
    """The prepared data every later stage reads: uint8 images (N, 28, 28, 1), uint8 labels (N,)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def cache_dir() -> Path:
    """Where `data.source: auto` keeps MNIST: `$WAE_DATA_HOME/mnist`, by default `~/.cache/wae/mnist`."""
    home = os.environ.get("WAE_DATA_HOME") or Path.home() / ".cache" / "wae"
    return Path(home).expanduser() / "mnist"


def _where_to_put(folder: Path) -> str:
    names = ", ".join(FILES)
    return (
        f"Put the 4 MNIST files ({names}; gzipped as `.gz` or not) in {folder}, "
        "or set data.source in params.yaml to a local copy (a folder of those files or a Keras mnist.npz)"
    )


# --- IDX parsing and verification -------------------------------------------------------------


def _idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array: what the canonical file holds, so one checksum serves all forms."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def _parse_idx(raw: bytes, where: str, images: bool) -> np.ndarray:
    """Decode an IDX file, checking its magic number, dimensions and length against its header."""
    magic, ndim, kind = (2051, 3, "images") if images else (2049, 1, "labels")
    if len(raw) < 4 or struct.unpack(">I", raw[:4])[0] != magic:
        found = struct.unpack(">I", raw[:4])[0] if len(raw) >= 4 else "missing"
        raise DataError(f"{where}: magic number {found} is not an IDX {kind} file (expected {magic})")
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise DataError(f"{where}: truncated IDX header ({len(raw)} bytes)")
    dims = struct.unpack(f">{ndim}I", raw[4:header_len])
    if images and dims[1:] != (SIDE, SIDE):
        raise DataError(f"{where}: images are {dims[1]}x{dims[2]} pixels, expected {SIDE}x{SIDE}")
    expected, found = int(np.prod(dims)), len(raw) - header_len
    if found < expected:
        raise DataError(
            f"{where}: truncated: the header promises {dims[0]} {kind} ({expected} bytes), found {found}"
        )
    if found > expected:
        raise DataError(f"{where}: {found - expected} unexpected bytes after the {dims[0]} {kind}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(dims)


def _check_pair(images: np.ndarray, labels: np.ndarray, where_images: str, where_labels: str) -> None:
    if len(images) != len(labels):
        raise DataError(f"{where_labels}: {len(labels)} labels but {where_images} holds {len(images)} images")
    if labels.size and labels.max() > 9:
        bad = int(labels.max())
        raise DataError(f"{where_labels}: label {bad} at index {int(np.argmax(labels))} is not a digit 0..9")


def _check_sha(name: str, raw: bytes, where: str) -> None:
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SHA256[name]:
        raise DataError(
            f"{where}: checksum mismatch: SHA-256 of the uncompressed content is {digest}, "
            f"expected {SHA256[name]} (not the canonical MNIST {name})"
        )


def _gunzip(compressed: bytes, where: str) -> bytes:
    try:
        return gzip.decompress(compressed)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{where}: corrupt or truncated gzip file ({err})") from None


def _read_raw(path: Path) -> bytes:
    """The uncompressed bytes of an IDX file, plain or gzipped."""
    try:
        content = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err})") from None
    return _gunzip(content, str(path)) if path.suffix == ".gz" else content


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_pair(folder: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    names = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
    paths = [_find(folder, name) for name in names]
    missing = [name for name, path in zip(names, paths, strict=True) if path is None]
    if missing:
        raise DataError(
            f"MNIST: {folder} has no {' or '.join(missing)} (plain or .gz). {_where_to_put(folder)}"
        )
    raws = [_read_raw(path) for path in paths]
    images = _parse_idx(raws[0], str(paths[0]), images=True)
    labels = _parse_idx(raws[1], str(paths[1]), images=False)
    _check_pair(images, labels, str(paths[0]), str(paths[1]))
    for name, raw, path in zip(names, raws, paths, strict=True):
        _check_sha(name, raw, str(path))
    return images, labels


def _read_folder(folder: Path) -> Mnist:
    x_train, y_train = _read_pair(folder, "train")
    x_test, y_test = _read_pair(folder, "t10k")
    return Mnist(x_train, y_train, x_test, y_test)


def _npz_array(arrays: dict[str, np.ndarray], key: str, path: Path, shape: tuple[int, ...]) -> np.ndarray:
    if key not in arrays:
        raise DataError(
            f"{path}: no array {key!r} (a Keras mnist.npz holds x_train, y_train, x_test, y_test)"
        )
    array = arrays[key]
    if array.ndim != 1 + len(shape) or array.shape[1:] != shape or not np.issubdtype(array.dtype, np.integer):
        raise DataError(
            f"{path}: {key} is {array.dtype} of shape {array.shape}, expected integers of shape (N, *{shape})"
        )
    if array.size and (array.min() < 0 or array.max() > 255):
        raise DataError(f"{path}: {key} holds values outside 0..255")
    return array.astype(np.uint8)


def _read_npz(path: Path) -> Mnist:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise DataError(f"{path}: not a readable .npz file ({err})") from None
    found = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = _npz_array(arrays, f"x_{split}", path, (SIDE, SIDE))
        labels = _npz_array(arrays, f"y_{split}", path, ())
        _check_pair(images, labels, f"{path}[x_{split}]", f"{path}[y_{split}]")
        _check_sha(f"{prefix}-images-idx3-ubyte", _idx_bytes(images), f"{path}[x_{split}]")
        _check_sha(f"{prefix}-labels-idx1-ubyte", _idx_bytes(labels), f"{path}[y_{split}]")
        found[split] = images, labels
    return Mnist(*found["train"], *found["test"])


def load_mnist(source: str | Path) -> Mnist:
    """Read and verify MNIST from a folder of IDX files (plain or .gz) or a Keras-style mnist.npz."""
    path = Path(source).expanduser()
    if path.is_dir():
        return _read_folder(path)
    if path.is_file():
        return _read_npz(path)
    raise DataError(
        f"data.source = {str(source)!r}: no such file or folder; point data.source in params.yaml at a "
        f"folder holding {', '.join(FILES)} (plain or .gz) or at a Keras mnist.npz, or use `auto`"
    )


# --- Download ---------------------------------------------------------------------------------


def _download(url: str, target: Path, name: str) -> None:
    """Fetch one .gz file to `target`, verified before it appears there (never a bad file in the cache)."""
    quiet = not sys.stderr.isatty() or bool(os.environ.get("CI"))
    with atomic_path(target, suffix=".gz") as tmp:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, tmp.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=target.name, disable=quiet) as bar:
                while chunk := response.read(1 << 16):
                    out.write(chunk)
                    bar.update(len(chunk))
        raw = _gunzip(tmp.read_bytes(), url)
        _parse_idx(raw, url, images="images" in name)
        _check_sha(name, raw, url)


def fetch(folder: Path, mirrors: Sequence[str]) -> None:
    """Download into `folder` each MNIST file it lacks, trying the mirrors in turn."""
    for name in FILES:
        if _find(folder, name) is not None:
            continue
        tried = []
        for mirror in mirrors:
            url = f"{mirror if mirror.endswith('/') else mirror + '/'}{name}.gz"
            print(f"MNIST: downloading {url}", file=sys.stderr)
            try:
                _download(url, folder / f"{name}.gz", name)
                break
            except (OSError, ValueError, http.client.HTTPException, DataError) as err:
                tried.append(f"  {url}: {err}")
        else:
            attempts = "\n".join(tried) or "  (data.mirrors is empty)"
            raise DataError(
                f"MNIST: could not download {name}.gz; tried:\n{attempts}\n{_where_to_put(folder)}"
            )


def resolve_source(config: DataConfig) -> Path:
    """The folder or file to read: with `auto`, the cache filled from the mirrors; else `data.source`."""
    if config.source != "auto":
        return Path(config.source).expanduser()
    folder = cache_dir()
    fetch(folder, config.mirrors)
    return folder


# --- Split, save, summarise -------------------------------------------------------------------


def split(mnist: Mnist, val_size: int, train_subset: int = 0, seed: int = 0) -> MnistSplits:
    """Shuffle the training digits with `seed`, hold out `val_size`, keep the first `train_subset` (0: all).

    The test digits stay in their published order. Same arguments, same arrays, on any machine.
    """
    if not 0 <= val_size < len(mnist.x_train):
        raise DataError(f"data.val_size = {val_size}: must be in 0..{len(mnist.x_train) - 1}")
    order = np.random.default_rng(seed).permutation(len(mnist.x_train))
    val, train = order[:val_size], order[val_size:]
    if train_subset:
        train = train[:train_subset]

    def images(x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x[..., np.newaxis], dtype=np.uint8)

    return MnistSplits(
        x_train=images(mnist.x_train[train]),
        y_train=mnist.y_train[train].astype(np.uint8),
        x_val=images(mnist.x_train[val]),
        y_val=mnist.y_train[val].astype(np.uint8),
        x_test=images(mnist.x_test),
        y_test=mnist.y_test.astype(np.uint8),
    )


def prepare(config: DataConfig) -> MnistSplits:
    """Find (or download), verify and split MNIST as `config` says."""
    source = resolve_source(config)
    try:
        mnist = load_mnist(source)
    except DataError as err:
        if config.source != "auto":
            raise
        # Downloads are verified before they land in the cache, so a bad file there was put by hand.
        raise DataError(f"{err}; delete it from {source} to download a fresh copy") from None
    return split(mnist, config.val_size, config.train_subset, config.seed)


def save_prepared(path: str | Path, splits: MnistSplits) -> None:
    """Write the splits as one compressed .npz, atomically; equal splits give equal bytes."""
    save_npz(path, **splits.arrays())


def load_prepared(path: str | Path) -> MnistSplits:
    """Read what `save_prepared` wrote, checking every array, so later stages fail early and clearly."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist; run the prepare stage first (`dvc repro prepare`)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise DataError(f"{path}: not a readable .npz file ({err}); run `dvc repro prepare` again") from None
    keys = [f.name for f in dataclasses.fields(MnistSplits)]
    missing = [key for key in keys if key not in arrays]
    if missing:
        raise DataError(f"{path}: missing {', '.join(missing)}; run `dvc repro prepare` again")
    for split_name in _SPLITS:
        x, y = arrays[f"x_{split_name}"], arrays[f"y_{split_name}"]
        if x.dtype != np.uint8 or x.shape[1:] != (SIDE, SIDE, 1) or y.shape != (len(x),):
            raise DataError(
                f"{path}: x_{split_name} {x.dtype}{x.shape} / y_{split_name} {y.shape} are not "
                f"uint8 images (N, {SIDE}, {SIDE}, 1) with N labels; run `dvc repro prepare` again"
            )
    return MnistSplits(**{key: arrays[key] for key in keys})


def class_counts(splits: MnistSplits) -> dict[str, dict[str, int]]:
    """How many digits of each class each split holds (a skewed split shows up here first)."""
    counts = {}
    for split_name in _SPLITS:
        labels = getattr(splits, f"y_{split_name}")
        per_digit = np.bincount(labels, minlength=10)
        counts[split_name] = {str(digit): int(n) for digit, n in enumerate(per_digit)}
    return counts
