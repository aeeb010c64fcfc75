"""mindrecord loader on files written with mindspore.mindrecord.FileWriter (both documented schemas)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from automc.data import load_dataset
from automc.errors import ConfigError

ARRAY_SCHEMA = {"data": {"type": "float32", "shape": [-1]}, "shape": {"type": "int32", "shape": [-1]}, "label": {"type": "int32"}}


def write(file: Path, schema: dict, records: list[dict]) -> None:
    from mindspore.mindrecord import FileWriter

    writer = FileWriter(str(file), shard_num=1, overwrite=True)
    writer.add_schema(schema, "automc test")
    if records:
        writer.write_raw_data(records)
    writer.commit()


def array_records(n: int, shape=(2, 4, 3), seed=0) -> tuple[list[dict], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *shape)).astype(np.float32)
    y = np.arange(n) % 3
    records = [{"data": x[i].reshape(-1), "shape": np.array(shape, np.int32), "label": int(y[i])} for i in range(n)]
    return records, x, y


def test_array_schema_with_test_file(tmp_path):
    records, _, _ = array_records(20)
    test_records, x_test, y_test = array_records(6, seed=1)
    write(tmp_path / "train.mindrecord", ARRAY_SCHEMA, records)
    write(tmp_path / "test.mindrecord", ARRAY_SCHEMA, test_records)
    s = load_dataset(
        "mindrecord", path=str(tmp_path / "train.mindrecord"), test_path=str(tmp_path / "test.mindrecord"), val_fraction=0.25
    )
    assert (len(s.train), len(s.val), len(s.test)) == (15, 5, 6)
    assert s.input_shape == (2, 4, 3) and s.num_classes == 3
    restored = s.test.x * np.asarray(s.std, np.float32)[:, None, None] + np.asarray(s.mean, np.float32)[:, None, None]
    np.testing.assert_allclose(restored, x_test, atol=1e-5)
    np.testing.assert_array_equal(s.test.y, y_test)


def test_encoded_image_schema(tmp_path):
    from PIL import Image

    records = []
    for i in range(12):
        buf = io.BytesIO()
        Image.fromarray(np.full((6, 5), 20 * i, np.uint8), mode="L").save(buf, format="PNG")
        records.append({"image": buf.getvalue(), "label": i % 2})
    write(tmp_path / "img.mindrecord", {"image": {"type": "bytes"}, "label": {"type": "int32"}}, records)
    s = load_dataset("mindrecord", path=str(tmp_path / "img.mindrecord"), test_fraction=0.25, val_fraction=0.0)
    assert s.input_shape == (1, 6, 5) and len(s.test) == 3 and len(s.train) == 9


def test_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist or is not a file; point it at the .mindrecord file"):
        load_dataset("mindrecord", path=str(tmp_path / "missing.mindrecord"))

    write(tmp_path / "wrong.mindrecord", {"pixels": {"type": "float32", "shape": [-1]}, "label": {"type": "int32"}},
          [{"pixels": np.zeros(4, np.float32), "label": 0}])
    with pytest.raises(ConfigError, match=r"has fields \['label', 'pixels'\]; write records with 'label'"):
        load_dataset("mindrecord", path=str(tmp_path / "wrong.mindrecord"))

    records, _, _ = array_records(3)
    records[1]["shape"] = np.array([5, 5], np.int32)
    write(tmp_path / "bad_shape.mindrecord", ARRAY_SCHEMA, records)
    with pytest.raises(ConfigError, match=r"record 1 has 24 values but shape \[1, 5, 5\]"):
        load_dataset("mindrecord", path=str(tmp_path / "bad_shape.mindrecord"))

    write(tmp_path / "empty.mindrecord", ARRAY_SCHEMA, [])
    with pytest.raises(ConfigError, match="holds no records"):
        load_dataset("mindrecord", path=str(tmp_path / "empty.mindrecord"))

    (tmp_path / "garbage.mindrecord").write_bytes(b"\0" * 100)
    (tmp_path / "garbage.mindrecord.db").write_bytes(b"\0" * 100)
    with pytest.raises(ConfigError, match="is not a readable MindRecord file") as info:
        load_dataset("mindrecord", path=str(tmp_path / "garbage.mindrecord"))
    assert "\n" not in str(info.value)

    (tmp_path / "nodb.mindrecord").write_bytes(b"\0" * 100)
    with pytest.raises(ConfigError, match="index nodb.mindrecord.db is missing"):
        load_dataset("mindrecord", path=str(tmp_path / "nodb.mindrecord"))
