"""cifar10 loader on tiny batches written in the real binary layout (label byte + R, G, B planes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from automc.data import load_dataset
from automc.data.cifar10 import CLASS_NAMES
from automc.errors import ConfigError


def write_batch(file: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """``images`` uint8 (N, 32, 32, 3) as a viewer sees them; stored as label + R plane + G plane + B plane."""
    planes = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)
    records = np.concatenate([labels.astype(np.uint8)[:, None], planes], axis=1)
    file.write_bytes(records.tobytes())


def make_cifar(root: Path, per_batch: int = 10, n_test: int = 10, seed: int = 0) -> dict[str, tuple]:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = {}
    for name, n in [*((f"data_batch_{i}.bin", per_batch) for i in range(1, 6)), ("test_batch.bin", n_test)]:
        images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        labels = np.arange(n) % 10
        write_batch(root / name, images, labels)
        written[name] = (images, labels)
    return written


def test_reads_records_in_channel_planar_layout(tmp_path):
    written = make_cifar(tmp_path)
    s = load_dataset("cifar10", path=str(tmp_path), val_fraction=0.2, seed=0)
    assert (len(s.train), len(s.val), len(s.test)) == (40, 10, 10)  # official test batch is the test split
    assert s.input_shape == (3, 32, 32) and s.num_classes == 10 and s.class_names == CLASS_NAMES

    # the test split keeps file order; undo normalisation and compare with the pixels written
    images, labels = written["test_batch.bin"]
    restored = s.test.x * np.asarray(s.std, np.float32)[:, None, None] + np.asarray(s.mean, np.float32)[:, None, None]
    np.testing.assert_allclose(restored, images.transpose(0, 3, 1, 2), atol=1e-3)
    np.testing.assert_array_equal(s.test.y, labels)

    # train + val are the 50 train-batch images; mean/std are the train split's own pixel stats
    pool = {im.transpose(2, 0, 1).tobytes() for i in range(1, 6) for im in written[f"data_batch_{i}.bin"][0]}
    shift = (np.asarray(s.std, np.float32)[:, None, None], np.asarray(s.mean, np.float32)[:, None, None])
    train_raw = np.rint(s.train.x * shift[0] + shift[1]).astype(np.uint8)
    val_raw = np.rint(s.val.x * shift[0] + shift[1]).astype(np.uint8)
    assert {im.tobytes() for im in train_raw} | {im.tobytes() for im in val_raw} == pool
    np.testing.assert_allclose(s.mean, train_raw.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(s.std, train_raw.std(axis=(0, 2, 3)), rtol=1e-5)


def test_accepts_parent_folder_and_meta_names_and_max_samples(tmp_path):
    make_cifar(tmp_path / "cifar-10-batches-bin")
    (tmp_path / "cifar-10-batches-bin" / "batches.meta.txt").write_text("\n".join(f"c{i}" for i in range(10)) + "\n\n")
    s = load_dataset("cifar10", path=tmp_path, max_samples=30, resize=16, val_fraction=0.1)
    assert s.class_names == tuple(f"c{i}" for i in range(10))
    assert len(s.train) + len(s.val) + len(s.test) == 30 and len(s.test) == 5  # 50:10 train:test ratio kept
    assert s.input_shape == (3, 16, 16)


def test_subset_of_train_batches_is_enough(tmp_path):
    make_cifar(tmp_path)
    for i in range(2, 6):
        (tmp_path / f"data_batch_{i}.bin").unlink()
    s = load_dataset("cifar10", path=str(tmp_path), val_fraction=0.0)
    assert len(s.train) == 10


@pytest.mark.parametrize(
    ("setup", "match"),
    [
        (lambda root: None, "does not exist; point it at the folder holding the CIFAR-10"),
        (lambda root: root.mkdir(), "no data_batch_\\*.bin found; point it at the folder"),
        (lambda root: (make_cifar(root), (root / "test_batch.bin").unlink()), "no test_batch.bin found"),
        (lambda root: (make_cifar(root), (root / "data_batch_3.bin").write_bytes(b"\0" * 3000)), "not a multiple of 3073"),
        (lambda root: (make_cifar(root), (root / "test_batch.bin").write_bytes(b"\x63" + b"\0" * 3072)), "label 99 > 9"),
        (lambda root: (root.parent.mkdir(exist_ok=True), root.write_text("x")), "is not a folder"),
    ],
)
def test_errors_name_the_problem(tmp_path, setup, match):
    root = tmp_path / "cifar"
    setup(root)
    with pytest.raises(ConfigError, match=match) as info:
        load_dataset("cifar10", path=str(root))
    assert "\n" not in str(info.value)
