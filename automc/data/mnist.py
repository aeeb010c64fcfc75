"""MNIST idx files (``train-images-idx3-ubyte`` ... ``t10k-labels-idx1-ubyte``, optionally ``.gz``).

idx headers are big-endian: magic 2051 then count, rows, cols for images; magic 2049 then count
for labels; pixels/labels follow as unsigned bytes. Fashion-MNIST and KMNIST use the same files;
``fashion_mnist`` reads them from the Debian package ``dataset-fashion-mnist`` unless given a path.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from automc.data._base import RawDataset, existing_dir
from automc.errors import ConfigError

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
#: Where the Debian package ``dataset-fashion-mnist`` installs the four idx .gz files.
FASHION_MNIST_PATH = "/usr/share/datasets/fashion-mnist"
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_HINT = "point it at the folder holding the MNIST idx files (train-images-idx3-ubyte[.gz], ...)"
_SUBFOLDERS = (".", "raw", "MNIST/raw")  # torchvision keeps the files in MNIST/raw


def _find(root: Path, stem: str, path: str) -> Path:
    """``stem`` like ``train-images-idx3-ubyte``; also accepts ``.gz`` and the ``train-images.idx3-ubyte`` spelling."""
    prefix, _, kind = stem.rpartition("-idx")
    names = [stem, f"{prefix}.idx{kind}"]
    for sub in _SUBFOLDERS:
        for name in names:
            for suffix in ("", ".gz"):
                candidate = root / sub / f"{name}{suffix}"
                if candidate.is_file():
                    return candidate
    raise ConfigError(f"data.path {str(path)!r}: no {stem} (or {stem}.gz) found; {_HINT}")


def read_idx(file: Path, *, magic: int) -> np.ndarray:
    """Images (N, rows, cols) for magic 2051, labels (N,) for magic 2049; checks header and size."""
    opener = gzip.open if file.suffix == ".gz" else open
    try:
        with opener(file, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise ConfigError(f"data.path: cannot read {str(file)!r} ({exc}); re-download or decompress it") from None
    ndim = 3 if magic == IMAGES_MAGIC else 1
    header_bytes = 4 * (1 + ndim)
    if len(data) < header_bytes:
        raise ConfigError(f"data.path: {str(file)!r} is {len(data)} bytes, too short for an idx header; re-download it")
    header = np.frombuffer(data, dtype=">u4", count=1 + ndim)
    if int(header[0]) != magic:
        raise ConfigError(
            f"data.path: {str(file)!r} has magic number {int(header[0])}, expected {magic} "
            f"({'images' if magic == IMAGES_MAGIC else 'labels'}); it is not an MNIST idx file or the names are swapped"
        )
    dims = tuple(int(d) for d in header[1:])
    expected = int(np.prod(dims))
    if len(data) - header_bytes != expected:
        raise ConfigError(
            f"data.path: {str(file)!r} holds {len(data) - header_bytes} data bytes "
            f"but its header {dims} needs {expected}; "
            "the file is truncated or corrupt, re-download it"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_bytes).reshape(dims)


def _read_pair(root: Path, prefix: str, path: str) -> tuple[np.ndarray, np.ndarray]:
    images_file = _find(root, f"{prefix}-images-idx3-ubyte", path)
    labels_file = _find(root, f"{prefix}-labels-idx1-ubyte", path)
    x = read_idx(images_file, magic=IMAGES_MAGIC)
    y = read_idx(labels_file, magic=LABELS_MAGIC)
    if len(x) != len(y):
        raise ConfigError(
            f"data.path: {images_file.name} has {len(x)} images but {labels_file.name} has {len(y)} labels; "
            "use files from the same release"
        )
    return x[:, None], y.astype(np.int64)


def load_mnist(*, path: str) -> RawDataset:
    """The 60k train images (val is carved from them) and the official 10k ``t10k`` test set."""
    return _load(existing_dir(path, hint=_HINT), path, tuple(str(i) for i in range(10)))


def load_fashion_mnist(*, path: str | None = None) -> RawDataset:
    """Fashion-MNIST (same idx layout as MNIST), by default from the ``dataset-fashion-mnist`` package."""
    if path is None:
        path = FASHION_MNIST_PATH
        if not Path(path).is_dir():
            raise ConfigError(
                f"data: Fashion-MNIST not found at {path}; install it with `apt-get install dataset-fashion-mnist` "
                "or set data.kwargs.path to a folder with the idx files"
            )
    return _load(existing_dir(path, hint=_HINT), path, FASHION_CLASSES)


def _load(root: Path, path: str, class_names: tuple[str, ...]) -> RawDataset:
    x, y = _read_pair(root, "train", path)
    x_test, y_test = _read_pair(root, "t10k", path)
    return RawDataset(x, y, class_names, x_test, y_test)
