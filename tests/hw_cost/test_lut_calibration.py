import numpy as np
import pytest

from automc.errors import ConfigError
from automc.hw_cost import (
    LatencyLUT,
    Sample,
    apply_profile,
    calibrate,
    estimate,
    get_device,
    load_lut,
    load_profile,
    save_lut,
    save_profile,
    series_profile,
)
from automc.policy import Policy

from .conftest import conv_table


def test_lut_entry_overrides_estimate(tmp_path, small_table):
    spec = get_device("arm-a76")
    base = estimate(small_table, None, spec)
    lut = LatencyLUT.from_entries(
        [
            dict(kind="conv", cin=3, cout=16, k=3, stride=1, groups=1, h=32, w=32, bits=32, latency_ms=1.2345),
            dict(kind="conv", cin=3, cout=16, k=3, stride=1, groups=1, h=32, w=32, bits=8, latency_ms=0.5),
        ]
    )
    path = save_lut(lut, tmp_path / "a76.csv")
    lut2 = load_lut(path)
    assert len(lut2) == 2
    est = estimate(small_table, [Policy(), Policy(w_bits={"conv": 8}, a_bits={"conv": 8}), Policy(w_bits={"conv": 4})], spec, lut=lut2)
    assert est.layer_latency_ms[0, 0] == pytest.approx(1.2345)
    assert est.layer_latency_ms[1, 0] == pytest.approx(0.5)
    # no entry for the 4-bit weight signature (bits=max(w,a)=32 here -> entry exists) ...
    assert est.layer_latency_ms[2, 0] == pytest.approx(1.2345)
    # ... rows without entries keep the analytical figure
    assert np.allclose(est.layer_latency_ms[0, 1:], base.layer_latency_ms[0, 1:])


def _assert_load_fails(load, path, text: str, match: str) -> None:
    """``load`` of a file holding ``text`` raises ConfigError matching ``match``."""
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load(path)


def test_lut_bad_file_names_column(tmp_path):
    _assert_load_fails(load_lut, tmp_path / "bad.csv", "kind,cin,cout\nconv,1,2\n", "bad.csv.*missing column")


def test_calibration_recovers_known_device_and_round_trips(tmp_path):
    base = get_device("arm-a76")
    truth = base.with_updates(
        efficiency={"conv": 0.3, "conv1x1": 0.2, "dwconv": 0.1, "dense": 0.3, "pool": 0.1, "add": 0.1},
        op_overhead_us={c: 15.0 for c in ("conv", "conv1x1", "dwconv", "dense", "pool", "add")},
        network_overhead_us=100.0,
    )
    tables = [conv_table(cin=c, cout=c, k=k, hw=hw) for c in (16, 64, 128) for k in (1, 3) for hw in (8, 28)]
    tables += [conv_table(cin=c, cout=c, hw=hw, kind="dwconv") for c in (32, 128) for hw in (14, 28)]
    samples = [(t, float(estimate(t, None, truth).latency_ms[0])) for t in tables]
    profile = calibrate(base, samples, source="synthetic")
    assert profile.fit_rel_rmse < 0.05
    fitted = apply_profile(base, profile)
    for t, y in samples:
        assert estimate(t, None, fitted).latency_ms[0] == pytest.approx(y, rel=0.1)
    for suffix in (".yaml", ".json"):
        path = save_profile(profile, tmp_path / f"profile{suffix}")
        assert load_profile(path) == profile
    assert not list(tmp_path.glob("*.tmp"))


def test_a_second_series_shares_the_efficiencies_and_keeps_its_own_fixed_costs(tmp_path):
    """Two runtimes on one chip (ncnn's 224x224 rows and TFLite's 32x32 NAS-Bench-201 ones on a
    Raspberry Pi): the series share efficiencies and bandwidth; each has its own cost per op and
    per inference, which one shared fit would have to average."""
    base = get_device("arm-a76")
    eff = {"conv": 0.3, "conv1x1": 0.2, "dwconv": 0.1, "dense": 0.3, "pool": 0.1, "add": 0.1}
    own = base.with_updates(efficiency=eff, op_overhead_us={c: 5.0 for c in eff}, network_overhead_us=50.0)
    other = own.with_updates(op_overhead_us={c: 40.0 for c in eff}, network_overhead_us=2000.0)
    tables = [conv_table(cin=c, cout=c, k=k, hw=hw) for c in (16, 64, 128) for k in (1, 3) for hw in (8, 28)]
    tables += [conv_table(cin=c, cout=c, hw=hw, kind="dwconv") for c in (32, 128) for hw in (14, 28)]
    samples = [Sample(t, float(estimate(t, None, own).latency_ms[0])) for t in tables]
    samples += [Sample(t, float(estimate(t, None, other).latency_ms[0]), series="tflite") for t in tables[::2]]
    profile = calibrate(base, samples, source="synthetic")
    assert profile.fit_rel_rmse < 0.05
    assert profile.network_overhead_us == pytest.approx(50.0, rel=0.3)
    assert profile.series["tflite"]["network_overhead_us"] == pytest.approx(2000.0, rel=0.1)
    assert profile.efficiency["conv"] == pytest.approx(0.3, rel=0.2)
    shared = calibrate(base, [Sample(s.table, s.latency_ms) for s in samples], source="synthetic")
    assert shared.fit_rel_rmse > 3 * profile.fit_rel_rmse
    path = save_profile(profile, tmp_path / "profile.yaml")
    assert load_profile(path) == profile
    as_tflite = apply_profile(base, series_profile(profile, "tflite"))  # predicts the other series
    assert all(estimate(s.table, None, as_tflite).latency_ms[0] == pytest.approx(s.latency_ms, rel=0.05)
               for s in samples if s.series)
    with pytest.raises(ConfigError, match="no series 'onnx'"):
        series_profile(profile, "onnx")


def test_calibration_recovers_int8_factors_per_class(tmp_path):
    """A device whose INT8 depthwise kernels reach far less of the INT8 peak than its INT8 3x3
    kernels (as on Arm cores; still no slower than FP16's peak, 0.5 of INT8's on the A76): the fit
    finds both factors from whole samples at two precisions, and the profile round-trips them."""
    base = get_device("arm-a76")
    truth = base.with_updates(precision_efficiency={"int8": {"conv": 0.8, "dwconv": 0.55}})
    tables = [conv_table(cin=c, cout=c, hw=hw) for c in (64, 128) for hw in (28, 56)]
    tables += [conv_table(cin=c, cout=c, hw=hw, kind="dwconv") for c in (256, 512) for hw in (28, 56)]
    samples = [(t, float(estimate(t, pol, truth).latency_ms[0]), pol) for t in tables
               for pol in (Policy(), Policy(w_bits={"conv": 8}, a_bits={"conv": 8}))]
    # a depthwise layer's MACs and its activation elements grow alike: a per-element INT8 cost
    # would explain its slowness as well as a lower factor; here the factors alone are fitted
    profile = calibrate(base, samples, fit_quantize=False, source="synthetic")
    int8 = profile.precision_efficiency["int8"]
    assert int8["conv"] == pytest.approx(0.8, rel=0.15) and int8["dwconv"] == pytest.approx(0.55, rel=0.1)
    assert load_profile(save_profile(profile, tmp_path / "p.yaml")).precision_efficiency["int8"] == pytest.approx(int8)


def test_calibration_recovers_the_int8_conversion_cost_per_element(tmp_path):
    """INT8 layers quantize their input and requantize their output element by element: a cost
    per activation element, which 3x3 convolutions of a few channels (few MACs per element) feel
    most. The fit finds the planted rate from whole samples at FP32 and INT8, and FP32 samples
    pay nothing for it."""
    base = get_device("arm-a76")
    truth = base.with_updates(quantize_gelems=0.5)
    int8 = Policy(w_bits={"conv": 8}, a_bits={"conv": 8})
    tables = [conv_table(cin=c, cout=c, k=k, hw=hw) for c in (8, 32, 128) for k in (1, 3) for hw in (14, 56)]
    samples = [(t, float(estimate(t, pol, truth).latency_ms[0]), pol) for t in tables for pol in (Policy(), int8)]
    assert all(estimate(t, None, truth).latency_ms[0] == estimate(t, None, base).latency_ms[0] for t in tables)
    profile = calibrate(base, samples, source="synthetic")
    assert profile.quantize_gelems == pytest.approx(0.5, rel=0.15)
    fitted = apply_profile(base, profile)
    assert fitted.quantize_gelems == profile.quantize_gelems
    for t, y, pol in samples:
        assert estimate(t, pol, fitted).latency_ms[0] == pytest.approx(y, rel=0.1)
    assert load_profile(save_profile(profile, tmp_path / "p.yaml")).quantize_gelems == profile.quantize_gelems


def test_a_conversion_rate_floor_bounds_the_fit():
    """``min_quantize_gelems`` floors the fitted conversion rate: samples whose INT8 layers are
    slower than that allows get the floor, and the rest of the slowness goes to other terms."""
    base = get_device("arm-a76")
    truth = base.with_updates(quantize_gelems=0.1)
    int8 = Policy(w_bits={"conv": 8}, a_bits={"conv": 8})
    tables = [conv_table(cin=c, cout=c, k=k, hw=hw) for c in (8, 32, 128) for k in (1, 3) for hw in (14, 56)]
    samples = [(t, float(estimate(t, pol, truth).latency_ms[0]), pol) for t in tables for pol in (Policy(), int8)]
    assert calibrate(base, samples).quantize_gelems == pytest.approx(0.1, rel=0.15)
    assert calibrate(base, samples, min_quantize_gelems=0.3).quantize_gelems == pytest.approx(0.3, rel=1e-6)
    with pytest.raises(ConfigError, match="min_quantize_gelems must be > 0"):
        calibrate(base, samples, min_quantize_gelems=0.0)


def test_profile_bad_field(tmp_path):
    text = "device: x\nefficiency: {convv: 1}\nmemory_efficiency: 1\nop_overhead_us: {}\nnetwork_overhead_us: 0\n"
    _assert_load_fails(load_profile, tmp_path / "p.yaml", text, "efficiency.convv")


def test_device_yaml_profile_is_applied_and_datasheet_skips_it(tmp_path):
    from automc.hw_cost import load_device

    profile = calibrate("arm-a76", [(conv_table(cin=c, cout=c, hw=14), 0.05 * c) for c in (16, 32, 64, 128)],
                        source="four made-up figures")
    save_profile(profile, tmp_path / "fit.yaml")
    text = "".join(line for line in open(get_device("arm-a76").path).read().splitlines(keepends=True)
                   if not line.startswith("profile:"))  # the built-in's own fit, replaced by the user's
    (tmp_path / "my-a76.yaml").write_text(text.replace("name: arm-a76", "name: my-a76") + "\nprofile: fit.yaml\n")
    fitted, plain = load_device(tmp_path / "my-a76.yaml"), load_device(tmp_path / "my-a76.yaml", datasheet=True)
    assert fitted.calibrated_from == "four made-up figures" and plain.calibrated_from == ""
    assert fitted.efficiency_of("conv") == pytest.approx(profile.efficiency["conv"])
    assert plain.efficiency_of("conv") == load_device("arm-a76", datasheet=True).efficiency_of("conv")
    # the built-in Raspberry Pi 4 core ships fitted to published NAS-Bench-201 latencies
    assert "raspi4" in get_device("arm-a72").calibrated_from
    assert load_device("arm-a72", datasheet=True).calibrated_from == ""


def test_weighted_calibration_follows_the_heavier_samples():
    base = get_device("arm-a76")
    tables = [conv_table(cin=c, cout=c, hw=14) for c in (16, 32, 64, 128)]
    truth = [float(estimate(t, None, base).latency_ms[0]) for t in tables]
    liars = [2.0 * y for y in truth]  # the same tables measured twice as slow
    samples = list(zip(tables, truth)) + list(zip(tables, liars))
    fast = calibrate(base, samples, weights=[1.0] * 4 + [1e-3] * 4)
    slow = calibrate(base, samples, weights=[1e-3] * 4 + [1.0] * 4)
    pred = lambda prof: float(estimate(tables[2], None, apply_profile(base, prof)).latency_ms[0])  # noqa: E731
    assert pred(fast) == pytest.approx(truth[2], rel=0.1) and pred(slow) == pytest.approx(liars[2], rel=0.1)
    with pytest.raises(ConfigError, match="weights"):
        calibrate(base, samples, weights=[1.0])


def test_a_robust_fit_keeps_one_inconsistent_sample_from_dragging_the_terms():
    """Published series mix software versions: one figure the other samples cannot explain (here
    measured 3x slow) should count less, not pull every term towards it."""
    base = get_device("arm-a76")
    truth = base.with_updates(efficiency={"conv": 0.3, "conv1x1": 0.2, "dwconv": 0.1, "dense": 0.3, "pool": 0.1,
                                          "add": 0.1}, op_overhead_us={"conv": 15.0}, network_overhead_us=100.0)
    tables = [conv_table(cin=c, cout=c, k=k, hw=hw) for c in (16, 64, 128) for k in (1, 3) for hw in (8, 28)]
    measured = [float(estimate(t, None, truth).latency_ms[0]) for t in tables]
    samples = list(zip(tables, [3.0 * measured[0]] + measured[1:]))  # the first one is off

    def worst_miss(profile):  # over the consistent samples
        fitted = apply_profile(base, profile)
        return max(abs(float(estimate(t, None, fitted).latency_ms[0]) / y - 1) for t, y in zip(tables[1:], measured[1:]))

    plain, robust = calibrate(base, samples), calibrate(base, samples, robust_scale=np.log(1.25))
    assert worst_miss(robust) < 0.05 < worst_miss(plain)
    with pytest.raises(ConfigError, match="robust_scale must be >= 0"):
        calibrate(base, samples, robust_scale=-1.0)
