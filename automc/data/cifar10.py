"""CIFAR-10 binary batches (``data_batch_1.bin``..``data_batch_5.bin``, ``test_batch.bin``).

Each record is 1 label byte then 3,072 pixel bytes: 1,024 red, 1,024 green, 1,024 blue, each a
row-major 32x32 plane, so a record reshapes directly to (3, 32, 32).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from automc.data._base import RawDataset, existing_dir
from automc.errors import ConfigError

RECORD_BYTES = 1 + 3 * 32 * 32
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_HINT = "point it at the folder holding the CIFAR-10 binary batches (data_batch_*.bin, test_batch.bin)"


def read_batch(file: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> images uint8 (N, 3, 32, 32) and labels (N,)."""
    raw = np.fromfile(file, dtype=np.uint8)
    if raw.size == 0 or raw.size % RECORD_BYTES:
        raise ConfigError(
            f"data.path: {str(file)!r} has {raw.size} bytes, not a multiple of {RECORD_BYTES}; "
            "it is truncated or not a CIFAR-10 binary batch (use the 'binary version', not python/matlab)"
        )
    records = raw.reshape(-1, RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise ConfigError(
            f"data.path: {str(file)!r} has label {int(labels.max())} > 9; it is not a CIFAR-10 batch "
            "(CIFAR-100 uses another record layout)"
        )
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


def load_cifar10(*, path: str) -> RawDataset:
    """All train batches found in ``path`` (or its ``cifar-10-batches-bin`` subfolder) plus the official test batch."""
    root = existing_dir(path, hint=_HINT)
    if not list(root.glob("data_batch_*.bin")) and (root / "cifar-10-batches-bin").is_dir():
        root = root / "cifar-10-batches-bin"
    train_files = sorted(root.glob("data_batch_*.bin"), key=lambda p: (len(p.name), p.name))
    if not train_files:
        raise ConfigError(f"data.path {str(path)!r}: no data_batch_*.bin found; {_HINT}")
    test_file = root / "test_batch.bin"
    if not test_file.is_file():
        raise ConfigError(f"data.path {str(path)!r}: no test_batch.bin found next to the train batches; {_HINT}")

    parts = [read_batch(f) for f in train_files]
    x_test, y_test = read_batch(test_file)
    return RawDataset(
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        _class_names(root),
        x_test,
        y_test,
    )


def _class_names(root: Path) -> tuple[str, ...]:
    meta = root / "batches.meta.txt"
    if meta.is_file():
        names = tuple(line.strip() for line in meta.read_text(errors="replace").splitlines() if line.strip())
        if len(names) == 10:
            return names
    return CLASS_NAMES
