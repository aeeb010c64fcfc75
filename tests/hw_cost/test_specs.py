from pathlib import Path

import pytest
import yaml

from automc.errors import ConfigError
from automc.hw_cost import DEVICES_DIR, estimate, get_device, list_devices, load_device

REQUIRED_DEVICES = {"ascend310", "ascend910", "a100", "t4", "jetson-orin-nano", "kirin990-npu", "arm-a76", "arm-a76-4t", "arm-a72", "host-cpu"}


def test_builtin_devices_load_and_cite_sources():
    assert REQUIRED_DEVICES <= set(list_devices())
    for name in REQUIRED_DEVICES:
        spec = load_device(DEVICES_DIR / f"{name}.yaml")
        assert spec.name == name
        assert spec.peak_tops and spec.memory_bandwidth_gbps > 0
        if name != "host-cpu":
            assert "peak_tops" in spec.sources and spec.sources["peak_tops"], name
            assert all("title" in s for s in spec.sources["peak_tops"])


def test_int4_only_where_published():
    assert "int4" in get_device("t4").peak_tops and "int4" in get_device("a100").peak_tops
    assert "int4" not in get_device("ascend310").peak_tops
    # 4-bit weights run at INT8 on Ascend, fp32 falls back to fp16 (no fp32 cube)
    spec = get_device("ascend310")
    assert spec.exec_precision(4) == "int8" and spec.exec_precision(32) == "fp16"


def _write(tmp_path: Path, **changes) -> Path:
    data = yaml.safe_load((DEVICES_DIR / "arm-a76.yaml").read_text())
    data["name"] = "my-board"
    data.pop("profile", None)  # the built-in's fit to published latencies is not this board's
    for k, v in changes.items():
        if v is None:
            data.pop(k, None)
        else:
            data[k] = v
    path = tmp_path / "my-board.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_user_device_file_is_usable_by_path(tmp_path, small_table):
    path = _write(tmp_path)
    spec = load_device(path)
    assert spec.name == "my-board"
    est = estimate(small_table, None, str(path))
    assert est.device == "my-board" and est.latency_ms[0] > 0


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"peak_tops_fp32": 1.0}, "peak_tops_fp32"),
        ({"memory_bandwidth_gbps": None}, "memory_bandwidth_gbps"),
        ({"memory_bandwidth_gbps": "fast"}, "memory_bandwidth_gbps"),
        ({"align": {"cin": 0, "cout": 8}}, "align.cin"),
        ({"peak_tops": {"fp64": 1.0}}, "peak_tops.fp64"),
        ({"efficiency": {"conv": -1}}, "efficiency.conv"),
        ({"precision_efficiency": {"int8": 0}}, "precision_efficiency.int8"),
        ({"precision_efficiency": {"int2": 0.5}}, "precision_efficiency.int2"),
        ({"precision_efficiency": {"int8": {"depthwise": 0.5}}}, "precision_efficiency.int8.depthwise"),
        ({"precision_efficiency": {"int8": {"dwconv": 0}}}, "precision_efficiency.int8.dwconv"),
        ({"elides_concat": "yes"}, "elides_concat"),
        ({"fuses_residual_add": "yes"}, "fuses_residual_add"),
        ({"quantize_gelems": 0}, "quantize_gelems"),
        ({"fuses_complex_activations": 0}, "fuses_complex_activations"),
    ],
)
def test_bad_device_field_names_field_and_file(tmp_path, changes, field):
    path = _write(tmp_path, **changes)
    with pytest.raises(ConfigError) as err:
        load_device(path)
    msg = str(err.value)
    assert field in msg and str(path) in msg and "\n" not in msg


def test_unknown_device_lists_valid_names():
    with pytest.raises(ConfigError, match="arm-a76"):
        get_device("nonexistent-board")
