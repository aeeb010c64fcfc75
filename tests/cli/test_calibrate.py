"""``automc calibrate``: a measurements CSV to a device YAML; every bad row one line and exit code 2;
the YAML as ``devices:`` and in ``latency@NAME`` of a dry run, and in ``automc devices``."""

from __future__ import annotations

import pytest
import yaml

from lenet_digits import LENET_DIGITS

HEADER = "network,input,precision,latency_ms"
GOOD = "resnet20,3x32x32,fp32,0.8"


def _write(tmp_path, text: str, name: str = "m.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("csv, expected", [
    (f"{HEADER}\nresnet99,3x32x32,fp32,1.0\n", ["m.csv:2: unknown network 'resnet99'", "mindcv:NAME", "pkg.module:function"]),
    (f"{HEADER}\nmindcv:nosuchnet,3x224x224,fp32,1.0\n", ["m.csv:2: unknown network 'mindcv:nosuchnet'", "list_models"]),
    (f"{HEADER}\nnosuchpkg.mod:net,3x32x32,fp32,1.0\n", ["m.csv:2: network 'nosuchpkg.mod:net': cannot import module"]),
    (f"{HEADER}\n{GOOD}\nresnet20,3x32,fp32,1.0\n", ["m.csv:3: input '3x32' must be channels x height x width, e.g. 3x224x224"]),
    (f"{HEADER}\nresnet20,3x32x32,int4,1.0\n", ["m.csv:2: precision 'int4' is not one of fp32, fp16, int8"]),
    (f"{HEADER}\nresnet20,3x32x32,fp32,0\n", ["m.csv:2: latency_ms '0' must be a positive number of milliseconds"]),
    (f"{HEADER}\n{GOOD}\n\nresnet20,3x32x32,fp32,-2\n", ["m.csv:4: latency_ms '-2' must be a positive number"]),
    (f"{HEADER}\n{GOOD},1\n", ["m.csv:2: 5 values, the header names 4 columns"]),
    (f"{HEADER}\nresnet20,3x32x32,fp32,fast\n", ["m.csv:2: latency_ms 'fast' must be a positive number"]),
    ("network,input,precision\nresnet20,3x32x32,fp32\n", ["m.csv:1: missing column 'latency_ms'",
                                                          "network,input,precision,latency_ms"]),
    (f"{HEADER},speed\n{GOOD},1\n", ["m.csv:1: unknown column 'speed'"]),
    (f"{HEADER},profile\n{GOOD},nope.txt\n", ["m.csv:2: profile 'nope.txt' cannot be read", "--timeProfiling=true"]),
    (f"{HEADER},profile\n{GOOD},bad.txt\n", ["m.csv:2: profile 'bad.txt': the benchmark output has no summary line"]),
    (f"{HEADER},threads\n{GOOD},1\nlenet,1x28x28,fp32,0.1,4\n", ["rows at 1 and 4 threads", "one CSV per thread count"]),
    (f"{HEADER},batch\n{GOOD},zero\n", ["m.csv:2: batch 'zero' must be a positive whole number"]),
    (f"{HEADER}\n", ["no measurements"]),
    (None, ["measurements file", "cannot be read"]),
])
def test_every_bad_csv_is_one_line_naming_the_row_and_the_fix(tmp_path, cli, csv, expected):
    (tmp_path / "bad.txt").write_text("benchmark: model file not found\n")
    path = tmp_path / "m.csv"
    if csv is not None:
        path.write_text(csv)
    code, out, err = cli("calibrate", "arm-a76", str(path), "--out", str(tmp_path / "new.yaml"))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    for text in expected:
        assert text in lines[0], lines[0]
    assert not (tmp_path / "new.yaml").exists()


def test_calibrate_writes_a_device_the_dry_run_and_devices_use(tmp_path, cli, monkeypatch, own_device_registry):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, f"{HEADER},threads\nlenet,1x28x28,fp32,0.12,1\nresnet20,3x32x32,fp32,1.9,1\n"
                     "resnet20,3x32x32,int8,0.95,1\nmobilenetv2,3x64x64,fp32,3.1,1\n")
    code, out, err = cli("calibrate", "arm-a76", "m.csv", "--out", "phones/my-phone.yaml")
    assert code == 0, err
    assert "wrote phones/my-phone.yaml (device 'my-phone')" in out and "latency@my-phone" in out
    assert "leave-one-out (each row predicted by a fit to the others): " in out and "in-sample: " in out
    data = yaml.safe_load((tmp_path / "phones" / "my-phone.yaml").read_text())
    assert data["name"] == "my-phone" and len(data["calibration"]["rows"]) == 4
    assert data["calibration"]["threads"] == 1 and "leave_one_out" in data["calibration"]

    code, out, _ = cli("devices", "phones/my-phone.yaml")
    assert code == 0 and "my-phone" in out and "yours: 4 measurements, base arm-a76" in out
    monkeypatch.setenv("AUTOMC_DEVICES", str(tmp_path / "phones"))
    code, out, _ = cli("devices")
    assert code == 0 and "my-phone" in out

    monkeypatch.delenv("AUTOMC_DEVICES")
    experiment = {**LENET_DIGITS, "name": "mine", "devices": ["phones/my-phone.yaml"],
                  "objectives": ["accuracy", "latency@my-phone"], "constraints": ["latency@my-phone <= 80%"]}
    (tmp_path / "x.yaml").write_text(yaml.safe_dump(experiment))
    code, out, err = cli("search", "x.yaml", "--dry-run")
    assert code == 0, err
    assert "latency@my-phone: " in out and "latency@my-phone <= 80% of baseline = " in out
    assert "latency@phones/my-phone.yaml: " in out  # the devices: entry is scored under its own name too

    unknown = {**experiment, "objectives": ["accuracy"], "constraints": ["latency@your-phone <= 80%"]}
    (tmp_path / "y.yaml").write_text(yaml.safe_dump(unknown))
    code, _, err = cli("search", "y.yaml", "--dry-run")  # a name no file states: one line, the known names listed
    assert code == 2 and "unknown device 'your-phone'" in err and "my-phone" in err and "arm-a76" in err


def test_a_device_name_that_is_a_built_in_one_is_refused(tmp_path, cli):
    _write(tmp_path, f"{HEADER}\n{GOOD}\n")
    code, _, err = cli("calibrate", "arm-a76", str(tmp_path / "m.csv"), "--out", str(tmp_path / "t4.yaml"))
    assert code == 2 and "device name 't4' is a built-in device's" in err and "--name" in err
