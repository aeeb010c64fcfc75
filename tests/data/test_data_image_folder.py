"""image_folder loader on a tiny tree of real png/jpg/bmp files, one sub-folder per class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from automc.data import load_dataset
from automc.errors import ConfigError


def make_tree(root: Path, size=(12, 10)) -> None:
    """Classes 'cat' (reddish png), 'dog' (greenish jpg/bmp); size is (W, H) as Pillow takes it."""
    rng = np.random.default_rng(0)
    for cls, color, exts in (("cat", 0, (".png",)), ("dog", 1, (".jpg", ".bmp"))):
        (root / cls).mkdir(parents=True)
        for i in range(6):
            arr = rng.integers(0, 60, (size[1], size[0], 3), dtype=np.uint8)
            arr[..., color] += 180
            Image.fromarray(arr).save(root / cls / f"{i}{exts[i % len(exts)]}")
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()


def test_reads_classes_resizes_and_converts(tmp_path):
    make_tree(tmp_path)
    s = load_dataset("image_folder", path=str(tmp_path), image_size=[8, 9], val_fraction=0.25, test_fraction=0.25)
    assert s.class_names == ("cat", "dog") and s.num_classes == 2
    assert s.input_shape == (3, 8, 9)
    assert len(s.train) + len(s.val) + len(s.test) == 12 and len(s.test) == 3
    raw = s.train.x * np.asarray(s.std, np.float32)[:, None, None] + np.asarray(s.mean, np.float32)[:, None, None]
    red_minus_green = raw[:, 0].mean(axis=(1, 2)) - raw[:, 1].mean(axis=(1, 2))
    assert np.all((red_minus_green > 0) == (s.train.y == 0))  # cats are red, dogs green

    g = load_dataset("image_folder", path=str(tmp_path), mode="grayscale", resize=16, channels=3)
    assert g.input_shape == (3, 16, 16)  # native 10x12 kept by the loader, then resized
    np.testing.assert_array_equal(g.train.x[:, 0], g.train.x[:, 1])


def test_errors(tmp_path):
    with pytest.raises(ConfigError, match="no class sub-folders found; point it at a folder with one sub-folder"):
        load_dataset("image_folder", path=str(tmp_path))
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(ConfigError, match="class folder 'empty_class' has no images"):
        load_dataset("image_folder", path=str(tmp_path))
    (tmp_path / "empty_class").rmdir()

    make_tree(tmp_path / "tree")
    Image.new("RGB", (5, 5)).save(tmp_path / "tree" / "dog" / "small.png")
    with pytest.raises(ConfigError, match="is 5x5 but .* is 10x12; set data.image_size"):
        load_dataset("image_folder", path=str(tmp_path / "tree"))
    (tmp_path / "tree" / "dog" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ConfigError, match="cannot read image .*broken.png"):
        load_dataset("image_folder", path=str(tmp_path / "tree"), image_size=8)
    with pytest.raises(ConfigError, match="data.mode = 'cmyk'; use 'rgb' or 'grayscale'"):
        load_dataset("image_folder", path=str(tmp_path / "tree"), mode="cmyk")
    with pytest.raises(ConfigError, match="data.image_size"):
        load_dataset("image_folder", path=str(tmp_path / "tree"), image_size=[8])
    with pytest.raises(ConfigError, match="unknown argument.*size.*valid: path, image_size, mode"):
        load_dataset("image_folder", path=str(tmp_path / "tree"), size=8)
