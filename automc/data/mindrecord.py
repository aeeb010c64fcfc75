"""MindSpore MindRecord files, read with ``mindspore.mindrecord.FileReader``.

Two schemas are understood, both with an ``int32`` field ``label``:

* raw arrays: ``data`` (float32/float64/int32/int64 array, flattened) and ``shape`` (int32 array,
  ``[C, H, W]`` or ``[H, W]``) -- written e.g. with
  ``FileWriter.add_schema({"data": {"type": "float32", "shape": [-1]},
  "shape": {"type": "int32", "shape": [-1]}, "label": {"type": "int32"}})``
  (MindRecord has no uint8 arrays: store pixels as int32 or float32);
* encoded images: ``image`` (``bytes`` of a png/jpg/bmp file), decoded with Pillow
  (grayscale stays 1 channel, anything else becomes RGB).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from automc.data._base import RawDataset
from automc.errors import ConfigError

_SCHEMA_HINT = (
    "write records with 'label' (int32) and either 'data' (array) + 'shape' (int32 [C, H, W]) or 'image' (bytes)"
)


def _read(path: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(
            f"{key} {str(path)!r} does not exist or is not a file; point it at the .mindrecord file "
            "(the first shard when the data is sharded)"
        )
    if not Path(f"{file}.db").is_file():
        raise ConfigError(
            f"{key} {str(path)!r}: its index {file.name}.db is missing; keep the .db file next to the MindRecord file"
        )
    from mindspore.mindrecord import FileReader

    try:
        reader = FileReader(str(file), num_consumer=1)
    except Exception as exc:  # MindSpore raises RuntimeError or its own ParamValueError types
        raise ConfigError(
            f"{key} {str(path)!r} is not a readable MindRecord file ({_short(exc)}); "
            "write it with mindspore.mindrecord.FileWriter"
        ) from None
    try:
        fields = set(reader.schema())
        if "label" not in fields or not ({"data", "shape"} <= fields or "image" in fields):
            raise ConfigError(f"{key} {str(path)!r} has fields {sorted(fields)}; {_SCHEMA_HINT}")
        images, labels = [], []
        for i, record in enumerate(reader.get_next()):
            images.append(_decode(record, i, key=key, path=path))
            labels.append(int(np.asarray(record["label"]).reshape(-1)[0]))
    finally:
        reader.close()
    if not images:
        raise ConfigError(f"{key} {str(path)!r} holds no records; write some samples before committing the file")
    shapes = {a.shape for a in images}
    if len(shapes) > 1:
        raise ConfigError(
            f"{key} {str(path)!r}: records have different shapes {sorted(shapes)[:3]}; store images of one size"
        )
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def _short(exc: Exception) -> str:
    """The one meaningful line of a MindSpore error (its messages span a banner and a C++ stack)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    picked = next((line for line in lines if line.startswith("[ERROR]")), lines[0] if lines else type(exc).__name__)
    return picked.removeprefix("[ERROR]").strip()[:200]


def _decode(record: dict, index: int, *, key: str, path: str) -> np.ndarray:
    if "data" in record:
        data = np.asarray(record["data"])
        shape = tuple(int(s) for s in np.asarray(record["shape"]).reshape(-1))
        if len(shape) == 2:
            shape = (1, *shape)
        if len(shape) != 3 or int(np.prod(shape)) != data.size:
            raise ConfigError(
                f"{key} {str(path)!r}: record {index} has {data.size} values but shape {list(shape)}; "
                "store shape as [C, H, W] matching data"
            )
        return data.reshape(shape)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(bytes(record["image"]))) as img:
            img = img.convert("L" if img.mode in ("1", "L", "I", "F", "I;16") else "RGB")
            arr = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ConfigError(
            f"{key} {str(path)!r}: record {index} 'image' is not a decodable image ({type(exc).__name__}); "
            "store encoded png/jpg bytes"
        ) from None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def load_mindrecord(*, path: str, test_path: str | None = None) -> RawDataset:
    """Samples from ``path``; an optional ``test_path`` file becomes the official test split."""
    x, y = _read(path, "data.path")
    if test_path is None:
        return RawDataset(x, y)
    x_test, y_test = _read(test_path, "data.test_path")
    return RawDataset(x, y, None, x_test, y_test)
