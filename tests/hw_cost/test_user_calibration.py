"""A user's own device: measured rows fitted into a device YAML (``automc.hw_cost.user``, ``scaling``).

Real zoo networks, real layer tables, real fits: the "measurements" are what a planted device
(the base with known factors on its terms) predicts, so what the fit must recover is known."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from automc.analysis import COMPUTE_KINDS
from automc.errors import ConfigError
from automc.hw_cost import (COST_CLASSES, USER_DEVICES_ENV, ScaleFit, calibrate_device, estimate, get_device,
                            list_devices, load_device, read_measurements, use_device)
from automc.hw_cost.model import cost_classes
from automc.hw_cost.published import precision_policy
from automc.hw_cost.user import MeasuredRow, network_table, predict_row, profile_class_times

#: small zoo networks of different shapes: 5x5 convs and dense layers, 3x3 residual stages,
#: depthwise-separable blocks, a plain 3x3 stack
LENET, RESNET20, MOBILENET, VGG = (("lenet", (1, 28, 28)), ("resnet20", (3, 32, 32)), ("mobilenetv2", (3, 64, 64)),
                                   ("vgg11", (3, 32, 32)))


def planted(base, **factors) -> ScaleFit:
    """Factors on ``base``'s terms (1 where not given): the device the measurements come from."""
    compute = {c: factors.pop(c, 1.0) for c in COST_CLASSES}
    return ScaleFit(base=base.name, scale=factors.pop("scale", 1.0), compute=compute, memory=factors.pop("memory", 1.0),
                    overhead=factors.pop("overhead", 1.0), conversion=1.0, precision=factors.pop("precision", {}))


def measured(spec, nets, precision: str = "fp32") -> list[MeasuredRow]:
    """What ``spec`` predicts for each network, as measured rows."""
    rows = [MeasuredRow(net, shape, precision, 1.0, where=net) for net, shape in nets]
    return [replace(r, latency_ms=predict_row(spec, r)) for r in rows]


def test_one_row_scales_every_term_so_the_row_is_reproduced_exactly():
    base = get_device("arm-a76")
    (row,) = measured(base, [RESNET20])
    row = replace(row, latency_ms=row.latency_ms * 1.37)
    device = calibrate_device("arm-a76", [row], name="one-row")
    assert device.fitted_ms[0] == pytest.approx(row.latency_ms, rel=1e-9)
    fit = device.fit
    assert fit.scale == pytest.approx(1.37, rel=1e-9)
    assert all(v == 1.0 for v in fit.compute.values()) and fit.memory == fit.overhead == 1.0 and not fit.precision
    for net, shape in (LENET, MOBILENET):  # every other network scales by the same factor
        other = MeasuredRow(net, shape, "int8", 1.0)
        assert predict_row(device.spec, other) == pytest.approx(1.37 * predict_row(base, other), rel=1e-9)
    assert device.leave_one_out() is None


def test_calibration_recovers_a_planted_device_from_three_networks():
    # a runtime 1.5x slower than the base whose k x k convolutions run 2x faster still (Winograd):
    # 3x3 stacks (ResNet-20) and 1x1-heavy ones (MobileNetV2) no longer scale alike
    base = get_device("arm-a76")
    truth = planted(base, scale=1.5, conv=0.5).apply(base, name="truth")
    device = calibrate_device(base, measured(truth, [LENET, RESNET20, MOBILENET]), name="recovered")
    assert np.abs(device.errors).max() < 0.06  # the pull towards one scale leaves a few per cent
    fit = device.fit
    assert fit.compute["conv"] < 0.7 * fit.compute["conv1x1"], fit  # the k x k class moved against the 1x1 one
    # held out: networks and inputs no row measured (the pull towards one scale, RIDGE, keeps the fit from
    # chasing the rows all the way: within 8 %); the one scale of a single network is 25-40 % off
    scaled = calibrate_device(base, measured(truth, [RESNET20]), name="scaled")
    for net, shape in (VGG, ("mobilenetv2", (3, 96, 96)), ("resnet56", (3, 32, 32))):
        row = MeasuredRow(net, shape, "fp32", 1.0)
        assert predict_row(device.spec, row) == pytest.approx(predict_row(truth, row), rel=0.08), net
    mbv2 = MeasuredRow("mobilenetv2", (3, 96, 96), "fp32", 1.0)
    assert abs(predict_row(scaled.spec, mbv2) / predict_row(truth, mbv2) - 1) > 0.2
    loo = device.leave_one_out()
    assert loo is not None and len(loo) == 3 and all(ms > 0 for ms in loo)


def test_int8_rows_move_the_int8_speed_and_caps_hold():
    base = get_device("arm-a76")
    truth = planted(base, scale=0.8, precision={"int8": 1.5}).apply(base, name="truth")
    rows = measured(truth, [RESNET20, MOBILENET]) + measured(truth, [RESNET20, MOBILENET], "int8")
    device = calibrate_device(base, rows, name="int8-recovered")
    assert np.abs(device.errors).max() < 0.06  # the pull towards one scale leaves a few per cent
    assert device.fit.precision["int8"] > 1.15  # INT8 kernels slower than the base's, relative to fp32
    for net, shape in (VGG, LENET):  # held out
        row = MeasuredRow(net, shape, "int8", 1.0)
        assert predict_row(device.spec, row) == pytest.approx(predict_row(truth, row), rel=0.08), net
    # no class runs faster than the shipped fits' caps of the (scaled) peak
    for c in COST_CLASSES:
        assert device.spec.efficiency_of(c) * device.fit.scale <= max(base.efficiency_of(c), 2.25) + 1e-9


def _profile_text(per_type_ms: dict[str, float], total_ms: float) -> str:
    """``benchmark --timeProfiling=true`` output in MindSpore Lite's format (10 timed loops)."""
    kernels = sum(per_type_ms.values())
    lines = ["-" * 89, f"{'opName':64s}avg(ms)         percent         calledTimess    opTotalTime"]
    for i, (op_type, ms) in enumerate(per_type_ms.items()):
        lines.append(f"{f'net/op{i}-{op_type}':64s}{ms:.6f}        {ms / kernels:.6f}        10              {ms * 10:.6f}")
    lines += ["-" * 89, "opType          avg(ms)         percent         calledTimess    opTotalTime"]
    for op_type, ms in per_type_ms.items():
        lines.append(f"{op_type:16s}{ms:.6f}        {ms / kernels:.6f}        10              {ms * 10:.6f}")
    lines += ["", f"total time :     {total_ms:.5f} ms,    kernel cost : {kernels:.5f} ms", "", "-" * 89,
              f"Model = net.ms, NumThreads = 1, MinRunTime = {total_ms * 0.97:.6f} ms, MaxRuntime = "
              f"{total_ms * 1.05:.6f} ms, AvgRunTime = {total_ms:.6f} ms"]
    return "\n".join(lines) + "\n"


def _class_ms(spec, net, shape) -> dict[str, float]:
    table = network_table(net, shape)
    per_layer = estimate(table, precision_policy(table, "fp32"), spec).layer_latency_ms[0]
    classes = cost_classes(table)
    return {c: float(per_layer[classes == i].sum()) for i, c in enumerate(COST_CLASSES)}


def test_a_profile_of_one_network_informs_each_op_class(tmp_path):
    # 3x3 convolutions 2x slower than the base's, everything else as the base: one network and its profile
    base = get_device("arm-a76")
    truth = planted(base, conv=2.0, conv1x1=2.0).apply(base, name="truth")
    per_class = _class_ms(truth, *RESNET20)
    conv = per_class["conv"] + per_class["conv1x1"] + per_class["dwconv"]
    (row,) = measured(truth, [RESNET20])
    text = _profile_text({"Conv2DFusion": conv, "AddFusion": per_class["add"], "ReduceFusion": per_class["pool"],
                          "FullConnection": per_class["dense"], "Reshape": 0.002}, row.latency_ms)
    (tmp_path / "resnet20.txt").write_text(text)
    (tmp_path / "m.csv").write_text(f"network,input,precision,latency_ms,threads,profile\n"
                                    f"resnet20,3x32x32,fp32,{row.latency_ms},1,resnet20.txt\n")
    rows = read_measurements(tmp_path / "m.csv")
    assert rows[0].profile is not None and rows[0].profile.threads == 1
    groups, unmapped = profile_class_times(rows[0].profile)
    assert unmapped == ["Reshape"] and (("conv", "conv1x1", "dwconv"), pytest.approx(conv)) in groups
    device = calibrate_device(base, rows, name="profiled")
    fitted = _class_ms(device.spec, *RESNET20)
    for c in ("add", "pool", "dense"):
        assert fitted[c] == pytest.approx(per_class[c], rel=0.1), c
    assert fitted["conv"] + fitted["conv1x1"] == pytest.approx(per_class["conv"] + per_class["conv1x1"], rel=0.05)
    # without the profile the one row can only scale: the element-wise adds come out ~1.8x too slow
    plain = calibrate_device(base, [replace(rows[0], profile=None)], name="plain")
    assert _class_ms(plain.spec, *RESNET20)["add"] > 1.5 * per_class["add"]
    assert "Reshape" in device.to_text()


def test_the_written_yaml_is_a_device_wherever_a_name_is(tmp_path, monkeypatch, own_device_registry):
    base = get_device("arm-a76")
    truth = planted(base, scale=1.3, dwconv=1.5).apply(base, name="truth")
    rows = measured(truth, [LENET, RESNET20, MOBILENET])
    device = calibrate_device("arm-a76", rows, name="my-phone", source="m.csv")
    left_out = device.leave_one_out()
    path = device.save(tmp_path / "my-phone.yaml", left_out)
    spec = load_device(path)
    assert spec.name == "my-phone" and spec.kind == "cpu" and spec.calibrated_from.startswith("3 measurements in m.csv")
    cal = spec.calibration
    assert cal["base"] == "arm-a76" and len(cal["rows"]) == 3 and cal["fit"]["scale"] == pytest.approx(device.fit.scale)
    assert cal["in_sample"]["rows"] == 3 and "leave_one_out" in cal and "leave_one_out_ms" in cal["rows"][0]
    for r in rows:  # the file predicts what the fit predicts
        assert predict_row(spec, r) == pytest.approx(predict_row(device.spec, r), rel=1e-9)
    # by name: once an experiment's devices: entry registered it, or from an $AUTOMC_DEVICES folder
    assert use_device(str(path)).name == "my-phone" and get_device("my-phone").name == "my-phone"
    other = tmp_path / "mine"
    other.mkdir()
    calibrate_device("arm-a76", rows[:1], name="my-board").save(other / "board.yaml")
    monkeypatch.setenv(USER_DEVICES_ENV, str(other))
    assert "my-board" in list_devices() and get_device("my-board").calibration["base"] == "arm-a76"
    with pytest.raises(ConfigError, match="a built-in device's"):
        calibrate_device("arm-a76", rows[:1], name="t4")
    clash = tmp_path / "clash.yaml"  # a file that calls itself by a built-in name would change what that name means
    clash.write_text(path.read_text().replace("name: my-phone", "name: arm-a76", 1))
    with pytest.raises(ConfigError, match="names device 'arm-a76', a built-in device"):
        use_device(str(clash))


def test_published_mindcv_tables_are_used_without_a_trace():
    table = network_table("mindcv:resnet50", (3, 224, 224))
    assert table.input_shape == (3, 224, 224) and sum(k in COMPUTE_KINDS for k in table.kind) > 50
