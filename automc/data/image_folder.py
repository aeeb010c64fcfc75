"""A folder with one sub-folder per class of image files (png/jpg/bmp/...), read with Pillow."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from automc.data._base import RawDataset, existing_dir, parse_size
from automc.errors import ConfigError

EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
_HINT = "point it at a folder with one sub-folder of images per class (e.g. cats/1.png, dogs/2.jpg)"


def load_image_folder(
    *, path: str, image_size: Any = None, mode: Literal["rgb", "grayscale"] = "rgb"
) -> RawDataset:
    """Class names are the sorted sub-folder names; images are resized to ``image_size`` (H, W) bilinearly.

    Without ``image_size`` all images must already share one size.
    """
    from PIL import Image, UnidentifiedImageError

    root = existing_dir(path, hint=_HINT)
    size = parse_size(image_size, key="data.image_size")
    if mode not in ("rgb", "grayscale"):
        raise ConfigError(f"data.mode = {mode!r}; use 'rgb' or 'grayscale'")
    pil_mode = "RGB" if mode == "rgb" else "L"

    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise ConfigError(f"data.path {str(path)!r}: no class sub-folders found; {_HINT}")

    images: list[np.ndarray] = []
    labels: list[int] = []
    first: tuple[Path, tuple[int, int]] | None = None
    for label, class_dir in enumerate(class_dirs):
        files = sorted(
            p for p in class_dir.rglob("*")
            if p.is_file() and p.suffix.lower() in EXTENSIONS and not p.name.startswith(".")
        )
        if not files:
            raise ConfigError(
                f"data.path {str(path)!r}: class folder {class_dir.name!r} has no images "
                f"({', '.join(sorted(EXTENSIONS))}); add images or remove the folder"
            )
        for file in files:
            try:
                with Image.open(file) as img:
                    img = img.convert(pil_mode)
                    if size is not None and img.size != (size[1], size[0]):
                        img = img.resize((size[1], size[0]), Image.BILINEAR)
                    arr = np.asarray(img, dtype=np.uint8)
            except (UnidentifiedImageError, OSError, ValueError) as exc:
                raise ConfigError(
                    f"data.path: cannot read image {str(file)!r} ({type(exc).__name__}); remove or replace the file"
                ) from None
            if first is None:
                first = (file, arr.shape[:2])
            elif arr.shape[:2] != first[1]:
                raise ConfigError(
                    f"data.path: {str(file)!r} is {arr.shape[0]}x{arr.shape[1]} but {str(first[0])!r} is "
                    f"{first[1][0]}x{first[1][1]}; set data.image_size, e.g. [32, 32]"
                )
            images.append(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))
            labels.append(label)
    return RawDataset(np.stack(images), np.asarray(labels, dtype=np.int64), tuple(p.name for p in class_dirs))
