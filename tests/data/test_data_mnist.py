"""mnist and fashion_mnist loaders on tiny idx files (big-endian headers, magic 2051/2049), plain and gzipped."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from services import missing

from automc.data import load_dataset
from automc.errors import ConfigError


def write_idx(file: Path, array: np.ndarray, *, magic: int | None = None, compress: bool = False) -> None:
    magic = magic if magic is not None else (2051 if array.ndim == 3 else 2049)
    payload = struct.pack(">I" + "I" * array.ndim, magic, *array.shape) + array.astype(np.uint8).tobytes()
    if compress:
        file = file.with_name(file.name + ".gz")
        payload = gzip.compress(payload)
    file.write_bytes(payload)


def make_mnist(root: Path, n_train: int = 30, n_test: int = 10, *, compress: bool = False) -> dict[str, np.ndarray]:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) * 3) % 10,
    }
    for name, array in arrays.items():
        write_idx(root / name, array, compress=compress)
    return arrays


@pytest.mark.parametrize("compress", [False, True])
def test_reads_idx_files(tmp_path, compress):
    arrays = make_mnist(tmp_path, compress=compress)
    s = load_dataset("mnist", path=str(tmp_path), val_fraction=0.2, seed=0)
    assert (len(s.train), len(s.val), len(s.test)) == (24, 6, 10)
    assert s.input_shape == (1, 28, 28) and s.num_classes == 10
    restored = s.test.x[:, 0] * np.float32(s.std[0]) + np.float32(s.mean[0])
    np.testing.assert_allclose(restored, arrays["t10k-images-idx3-ubyte"], atol=1e-3)
    np.testing.assert_array_equal(s.test.y, arrays["t10k-labels-idx1-ubyte"])


def test_torchvision_layout_resize_and_channels(tmp_path):
    make_mnist(tmp_path / "MNIST" / "raw")
    s = load_dataset("mnist", path=tmp_path, resize=32, channels=3, max_samples=20)
    assert s.input_shape == (3, 32, 32)
    assert len(s.train) + len(s.val) + len(s.test) == 20


@pytest.mark.parametrize(
    ("corrupt", "match"),
    [
        (lambda r: write_idx(r / "train-images-idx3-ubyte", np.zeros((30, 28, 28)), magic=2049),
         "magic number 2049, expected 2051 \\(images\\)"),
        (lambda r: write_idx(r / "t10k-labels-idx1-ubyte", np.zeros(10), magic=1234),
         "magic number 1234, expected 2049 \\(labels\\)"),
        (lambda r: (r / "t10k-images-idx3-ubyte").unlink(), "no t10k-images-idx3-ubyte \\(or t10k-images-idx3-ubyte.gz\\) found"),
        (lambda r: write_idx(r / "train-labels-idx1-ubyte", np.zeros(29)), "30 images but train-labels-idx1-ubyte has 29 labels"),
        (lambda r: (r / "train-images-idx3-ubyte").write_bytes(
            (r / "train-images-idx3-ubyte").read_bytes()[:-5]), "truncated or corrupt"),
        (lambda r: (r / "train-labels-idx1-ubyte").write_bytes(b"\0\0"), "too short for an idx header"),
    ],
)
def test_errors_name_the_file(tmp_path, corrupt, match):
    make_mnist(tmp_path)
    corrupt(tmp_path)
    with pytest.raises(ConfigError, match=match) as info:
        load_dataset("mnist", path=str(tmp_path))
    assert "\n" not in str(info.value)


def test_missing_folder(tmp_path):
    with pytest.raises(ConfigError, match="data.path .* does not exist; point it at the folder holding the MNIST"):
        load_dataset("mnist", path=str(tmp_path / "nope"))


# ----------------------------------------------------------------------------- fashion_mnist

FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def test_fashion_mnist_reads_idx_gz_with_the_fashion_class_names(tmp_path):
    arrays = make_mnist(tmp_path, compress=True)
    s = load_dataset("fashion_mnist", path=str(tmp_path), val_fraction=0.2, seed=0)
    assert s.class_names == FASHION and s.num_classes == 10
    assert (len(s.train), len(s.val), len(s.test)) == (24, 6, 10)
    np.testing.assert_array_equal(s.test.y, arrays["t10k-labels-idx1-ubyte"])


def test_fashion_mnist_missing_default_folder_says_how_to_install(tmp_path, monkeypatch):
    from automc.data import mnist

    monkeypatch.setattr(mnist, "FASHION_MNIST_PATH", str(tmp_path / "fashion-mnist"))
    with pytest.raises(ConfigError, match="apt-get install dataset-fashion-mnist") as info:
        load_dataset("fashion_mnist")
    assert "\n" not in str(info.value) and "data.kwargs.path" in str(info.value)


def test_fashion_mnist_from_the_debian_package():
    from automc.data.mnist import FASHION_MNIST_PATH

    if not Path(FASHION_MNIST_PATH).is_dir():
        missing(f"{FASHION_MNIST_PATH} missing: apt-get install dataset-fashion-mnist (.ci/run installs it)")
    s = load_dataset("fashion_mnist", max_samples=2000, seed=0)
    assert len(s.train) + len(s.val) + len(s.test) == 2000
    assert s.input_shape == (1, 28, 28) and s.class_names == FASHION
    assert set(np.unique(s.train.y)) == set(range(10))
