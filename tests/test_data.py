"""The MNIST library: reading every accepted form, downloading into the cache, splitting, saving."""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import shutil
import socket
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from wae import data, plots
from wae.atomic import save_figure
from wae.config import DataConfig
from wae.errors import DataError

GZ_NAMES = sorted(f"{name}.gz" for name in data.FILES)


@pytest.fixture(scope="module")
def mnist(mnist_dir: Path) -> data.Mnist:
    return data.load_mnist(mnist_dir)


# --- Reading ----------------------------------------------------------------------------------


def test_shared_files_are_the_canonical_mnist(mnist: data.Mnist, mnist_dir: Path) -> None:
    assert mnist.x_train.shape == (60000, 28, 28) and mnist.x_train.dtype == np.uint8
    assert mnist.y_train.shape == (60000,) and mnist.y_train.dtype == np.uint8
    assert mnist.x_test.shape == (10000, 28, 28) and mnist.y_test.shape == (10000,)
    assert np.bincount(mnist.y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    # The hard-coded SHA-256 sums describe the files whose MD5 sums MNIST publishes.
    for name, md5 in [
        ("train-images-idx3-ubyte", "6bbc9ace898e44ae57da46a324031adb"),
        ("t10k-images-idx3-ubyte", "2646ac647ad5339dbf082846283269ea"),
    ]:
        raw = gzip.decompress((mnist_dir / f"{name}.gz").read_bytes())
        assert hashlib.md5(raw).hexdigest() == md5
        assert hashlib.sha256(raw).hexdigest() == data.SHA256[name]


def test_recompressed_and_uncompressed_copies_are_accepted(
    tmp_path: Path, mnist_dir: Path, mnist: data.Mnist
) -> None:
    for i, name in enumerate(data.FILES):
        raw = gzip.decompress((mnist_dir / f"{name}.gz").read_bytes())
        if i % 2:
            (tmp_path / name).write_bytes(raw)
        else:
            (tmp_path / f"{name}.gz").write_bytes(gzip.compress(raw, compresslevel=1))

    copy = data.load_mnist(tmp_path)

    for field in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(copy, field), getattr(mnist, field))


def test_keras_npz_is_accepted(tmp_path: Path, mnist: data.Mnist) -> None:
    npz = tmp_path / "mnist.npz"
    np.savez(npz, x_train=mnist.x_train, y_train=mnist.y_train, x_test=mnist.x_test, y_test=mnist.y_test)

    splits = data.prepare(DataConfig(source=str(npz), val_size=1000))

    assert splits.x_train.shape == (59000, 28, 28, 1) and splits.x_val.shape == (1000, 28, 28, 1)
    np.testing.assert_array_equal(splits.x_test[..., 0], mnist.x_test)


def test_npz_with_one_pixel_changed_or_an_array_missing_is_rejected(
    tmp_path: Path, mnist: data.Mnist
) -> None:
    x_test = mnist.x_test.copy()
    x_test[0, 14, 14] ^= 1
    npz = tmp_path / "mnist.npz"
    np.savez(npz, x_train=mnist.x_train, y_train=mnist.y_train, x_test=x_test, y_test=mnist.y_test)
    with pytest.raises(DataError, match=r"mnist\.npz\[x_test\]: checksum mismatch"):
        data.load_mnist(npz)

    np.savez(npz, x_train=mnist.x_train, y_train=mnist.y_train, x_test=mnist.x_test)
    with pytest.raises(DataError, match=r"mnist\.npz: no array 'y_test'"):
        data.load_mnist(npz)


# --- Downloading into the cache ---------------------------------------------------------------


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    """A real HTTP mirror of `folder` on localhost; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/mnist/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def dead_mirror() -> str:
    """A URL on a port nobody listens on: the connection is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist/"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("WAE_DATA_HOME", str(tmp_path / "data_home"))
    monkeypatch.setenv("CI", "1")
    return tmp_path / "data_home" / "mnist"


def test_download_fills_the_cache_from_the_first_working_mirror(
    tmp_path: Path, mnist_dir: Path, cache: Path
) -> None:
    site = tmp_path / "site" / "mnist"
    shutil.copytree(mnist_dir, site, ignore=shutil.ignore_patterns("*.md", "SHA256SUMS"))
    assert data.cache_dir() == cache

    with serve(site.parent) as mirror:
        splits = data.prepare(DataConfig(mirrors=(dead_mirror(), mirror)))

    assert sorted(p.name for p in cache.iterdir()) == GZ_NAMES  # and no temporary file left behind
    for name in GZ_NAMES:
        assert (cache / name).read_bytes() == (mnist_dir / name).read_bytes()
    assert len(splits.x_train) == 55000
    # Once cached, no mirror is needed: the next run works offline.
    again = data.prepare(DataConfig(mirrors=(dead_mirror(),)))
    np.testing.assert_array_equal(again.x_train, splits.x_train)


def test_corrupt_download_is_rejected_and_never_cached(tmp_path: Path, mnist_dir: Path, cache: Path) -> None:
    cache.mkdir(parents=True)
    for name in GZ_NAMES:
        if name != "t10k-labels-idx1-ubyte.gz":
            shutil.copy(mnist_dir / name, cache / name)
    site = tmp_path / "site" / "mnist"
    site.mkdir(parents=True)
    raw = bytearray(gzip.decompress((mnist_dir / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    raw[8] = (raw[8] + 1) % 10  # a well-formed file whose first label is wrong
    (site / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(raw)))

    with serve(site.parent) as mirror, pytest.raises(DataError) as err:
        data.prepare(DataConfig(mirrors=(mirror,)))

    assert f"{mirror}t10k-labels-idx1-ubyte.gz: checksum mismatch" in str(err.value)
    assert sorted(p.name for p in cache.iterdir()) == [
        n for n in GZ_NAMES if n != "t10k-labels-idx1-ubyte.gz"
    ]


def test_no_working_mirror_says_where_to_put_the_files(cache: Path) -> None:
    mirror = dead_mirror()

    with pytest.raises(DataError) as err:
        data.prepare(DataConfig(mirrors=(mirror,)))

    message = str(err.value)
    assert f"{mirror}train-images-idx3-ubyte.gz" in message and "Connection refused" in message
    assert f"in {cache}" in message and "data.source in params.yaml" in message
    assert all(name in message for name in data.FILES)
    assert list(cache.iterdir()) == []


# --- Split, save, summarise -------------------------------------------------------------------


def test_split_depends_only_on_its_arguments(mnist: data.Mnist) -> None:
    first = data.split(mnist, val_size=5000, seed=0)
    same = data.split(mnist, val_size=5000, seed=0)
    other_seed = data.split(mnist, val_size=5000, seed=1)
    subset = data.split(mnist, val_size=5000, train_subset=1000, seed=0)

    for name, array in first.arrays().items():
        np.testing.assert_array_equal(array, getattr(same, name))
    assert not np.array_equal(first.y_val, other_seed.y_val)
    assert first.x_train.shape == (55000, 28, 28, 1) and first.x_val.dtype == np.uint8
    np.testing.assert_array_equal(subset.x_train, first.x_train[:1000])
    np.testing.assert_array_equal(subset.x_val, first.x_val)
    # Train and validation together are exactly the 60,000 training digits.
    counts = data.class_counts(first)
    total = {d: counts["train"][d] + counts["val"][d] for d in counts["train"]}
    assert total == {str(d): int(n) for d, n in enumerate(np.bincount(mnist.y_train))}


def test_prepared_file_round_trips_with_identical_bytes(tmp_path: Path, mnist: data.Mnist) -> None:
    splits = data.split(mnist, val_size=500, train_subset=2000, seed=3)
    data.save_prepared(tmp_path / "a.npz", splits)
    data.save_prepared(tmp_path / "b.npz", data.split(mnist, val_size=500, train_subset=2000, seed=3))

    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    loaded = data.load_prepared(tmp_path / "a.npz")
    for name, array in splits.arrays().items():
        np.testing.assert_array_equal(getattr(loaded, name), array)


def test_load_prepared_explains_a_missing_or_bad_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"mnist\.npz does not exist; run the prepare stage"):
        data.load_prepared(tmp_path / "mnist.npz")
    (tmp_path / "mnist.npz").write_text("not a zip")
    with pytest.raises(DataError, match=r"mnist\.npz: not a readable \.npz file"):
        data.load_prepared(tmp_path / "mnist.npz")
    np.savez(tmp_path / "mnist.npz", x_train=np.zeros((2, 28, 28, 1), np.uint8))
    with pytest.raises(DataError, match=r"missing y_train, x_val, y_val, x_test, y_test"):
        data.load_prepared(tmp_path / "mnist.npz")


def test_preview_shows_a_grid_of_digits_titled_by_label(tmp_path: Path, mnist: data.Mnist) -> None:
    figure = plots.preview_figure(mnist.x_train[:16, ..., None], mnist.y_train[:16])

    assert len(figure.axes) == 16
    assert [ax.get_title() for ax in figure.axes] == [str(y) for y in mnist.y_train[:16]]
    assert all(not ax.get_xticks().size and not ax.get_yticks().size for ax in figure.axes)
    save_figure(tmp_path / "preview.png", figure)
    assert (tmp_path / "preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
