import numpy as np
import pytest

from automc.analysis.layer_table import LayerTable
from automc.hw_cost import estimate, get_device, list_devices, load_device
from automc.policy import Policy

from .conftest import conv_table


def _bits(b: int) -> Policy:
    return Policy(w_bits={"conv": b}, a_bits={"conv": b})


@pytest.mark.parametrize("device", sorted(set(list_devices()) - {"host-cpu"}))
def test_latency_monotone_in_bits(device):
    """On devices whose narrower precisions are faster, fewer bits are never slower."""
    table = conv_table(cin=64, cout=64, hw=28)
    lat = estimate(table, [_bits(b) for b in (2, 4, 6, 8, 16, 32)], device).latency_ms
    assert np.all(np.diff(lat) >= -1e-12), lat


def test_an_int8_layer_runs_the_int8_kernels_even_where_they_are_slower():
    """host-cpu is MindSpore Lite 2.0 on x86: a FULL_QUANT .ms runs its int8 kernels, ~12x slower
    than fp32 (measured, benchmarks/results/deploy_quantized-2026-12-07.txt): the model says so."""
    table = conv_table(cin=64, cout=64, hw=28)
    int8, fp32 = estimate(table, [_bits(8), _bits(32)], "host-cpu").latency_ms
    assert int8 > 5 * fp32


@pytest.mark.parametrize("device", ["arm-a76", "t4", "a100", "ascend310", "ascend910", "jetson-orin-nano", "kirin990-npu"])
def test_int8_faster_than_float(device):
    table = conv_table(cin=256, cout=256, hw=56)
    lat = estimate(table, [_bits(8), _bits(32)], device).latency_ms
    assert lat[0] < lat[1]


def test_precision_efficiency_scales_only_compute_at_that_precision():
    from dataclasses import replace

    big = conv_table(cin=256, cout=256, hw=56)  # compute-bound
    spec = load_device("arm-a76", datasheet=True)  # peak ratios, no fitted factors
    slow_int8 = replace(spec, precision_efficiency={"int8": 0.5})
    base, slowed = (estimate(big, [_bits(8), _bits(32)], s).latency_ms for s in (spec, slow_int8))
    assert slowed[1] == pytest.approx(base[1])  # fp32 unchanged
    assert slowed[0] > 1.5 * base[0]  # int8 compute at half its peak
    assert base[1] / base[0] > 3.0 > slowed[1] / slowed[0]  # the INT8/FP32 speed-up falls short of the peak ratio


def test_a_precision_factor_per_class_slows_only_that_class():
    from dataclasses import replace

    conv, dw = conv_table(cin=256, cout=256, hw=56), conv_table(cin=256, cout=256, hw=56, kind="dwconv")
    spec = load_device("arm-a76", datasheet=True)
    slow_dw = replace(spec, precision_efficiency={"int8": {"dwconv": 0.25}})  # the other classes keep 1
    assert slow_dw.precision_factor("int8", "dwconv") == 0.25 and slow_dw.precision_factor("int8", "conv") == 1.0
    for table, slowed in ((conv, False), (dw, True)):
        base, new = (estimate(table, [_bits(8), _bits(32)], s).latency_ms for s in (spec, slow_dw))
        assert new[1] == pytest.approx(base[1])  # fp32 unchanged
        assert (new[0] > 1.5 * base[0]) if slowed else new[0] == pytest.approx(base[0])


def test_a_concat_costs_a_copy_except_where_the_runtime_elides_it():
    """TensorRT writes a concat's inputs into its output buffer: no row cost on its GPUs; other
    runtimes copy every element (memory traffic plus an op)."""
    from dataclasses import replace

    rows = [dict(name="a", kind="conv", cin=3, cout=64, kh=3, kw=3, h_in=56, w_in=56, h_out=56, w_out=56),
            dict(name="b", kind="conv", cin=3, cout=64, kh=3, kw=3, h_in=56, w_in=56, h_out=56, w_out=56),
            dict(name="cat", kind="concat", cin=128, cout=128, h_in=56, w_in=56, h_out=56, w_out=56)]
    table = LayerTable.from_rows(rows, input_shape=(3, 56, 56))
    t4 = get_device("t4")
    assert t4.elides_concat and not get_device("ascend310").elides_concat
    for spec, free in ((t4, True), (replace(t4, elides_concat=False), False), (get_device("ascend310"), False)):
        cat_ms = estimate(table, None, spec).layer_latency_ms[0][2]
        assert (cat_ms == 0) if free else cat_ms > 0, spec.name


def test_a_residual_add_streams_nothing_where_the_runtime_fuses_it_into_the_conv():
    """TensorRT and CANN run a residual add in the epilogue of the conv producing its operand:
    the add row keeps only its fixed cost per op; elsewhere it reads two maps and writes one."""
    from dataclasses import replace

    rows = [dict(name="a", kind="conv", cin=64, cout=64, kh=3, kw=3, h_in=56, w_in=56, h_out=56, w_out=56),
            dict(name="add", kind="add", cin=64, cout=64, h_in=56, w_in=56, h_out=56, w_out=56)]
    table = LayerTable.from_rows(rows, input_shape=(64, 56, 56))
    for name in ("t4", "jetson-orin-nano", "ascend310"):
        spec = get_device(name)
        assert spec.fuses_residual_add, name
        fused = estimate(table, None, spec).layer_latency_ms[0]
        assert fused[1] == pytest.approx(spec.overhead_us_of("add") * 1e-3), name
        unfused = estimate(table, None, replace(spec, fuses_residual_add=False)).layer_latency_ms[0]
        assert unfused[1] > fused[1] and unfused[0] == fused[0], name
    assert not get_device("arm-a76").fuses_residual_add


def test_int8_layers_pay_per_element_for_quantizing_their_input_and_output():
    """With ``quantize_gelems`` an INT8 conv costs (input + output elements) / rate more; FP32
    and FP16 layers convert nothing."""
    from dataclasses import replace

    table = conv_table(cin=32, cout=16, k=3, hw=28)
    base = load_device("arm-a76", datasheet=True)
    spec = replace(base, quantize_gelems=2.0)
    elements = 32 * 28 * 28 + 16 * 28 * 28
    extra = estimate(table, _bits(8), spec).latency_ms[0] - estimate(table, _bits(8), base).latency_ms[0]
    assert extra == pytest.approx(elements / 2e9 * 1e3)
    for bits in (32, 16):
        assert estimate(table, _bits(bits), spec).latency_ms[0] == estimate(table, _bits(bits), base).latency_ms[0]


def test_a_fused_residual_add_moves_only_its_skip_tensor_in_dram_energy():
    """Unfused, an add reads two maps and writes one; fused into its producer's epilogue it reads
    the skip tensor and nothing else (the sum is the producer's own write)."""
    from dataclasses import replace

    rows = [dict(name="a", kind="conv", cin=64, cout=64, kh=3, kw=3, h_in=56, w_in=56, h_out=56, w_out=56),
            dict(name="add", kind="add", cin=64, cout=64, h_in=56, w_in=56, h_out=56, w_out=56)]
    table = LayerTable.from_rows(rows, input_shape=(64, 56, 56))
    t4 = replace(get_device("t4"), onchip_buffer_kib=0)  # every tensor in DRAM
    skip_mj = 64 * 56 * 56 * 4 * t4.energy.pj_per_dram_byte * 1e-9  # one fp32 map
    for spec, maps in ((t4, 1), (replace(t4, fuses_residual_add=False), 3)):
        est = estimate(table, None, spec)
        dynamic_mj = est.layer_energy_mj[0, 1] - spec.energy.static_power_w * est.layer_latency_ms[0, 1]
        assert dynamic_mj == pytest.approx(maps * skip_mj), spec.fuses_residual_add


def test_int8_conversions_cost_one_multiply_add_per_element_at_the_widest_precision():
    from dataclasses import replace

    table = conv_table(cin=32, cout=16, k=3, hw=28)
    spec = load_device("arm-a76", datasheet=True)
    pricier = replace(spec, energy=replace(spec.energy, pj_per_mac={**spec.energy.pj_per_mac, "fp32": 10.0}))
    elements = 32 * 28 * 28 + 16 * 28 * 28
    cheap, dear = (estimate(table, _bits(8), s).energy_mj[0] for s in (spec, pricier))
    assert dear - cheap == pytest.approx((10.0 - spec.energy.pj_per_mac["fp32"]) * elements * 1e-9)


def test_a_smooth_activation_costs_an_elementwise_pass_where_only_clamps_are_fused():
    """Hard-swish after a conv: HiAI and CANN fuse conv + ReLU but run hard-swish as an op of its
    own (an ``act`` row: memory traffic plus an op); TensorRT and the CPU runtimes fuse it."""
    from dataclasses import replace

    rows = [dict(name="a", kind="conv", cin=16, cout=64, kh=1, kw=1, h_in=56, w_in=56, h_out=56, w_out=56, has_act=True),
            dict(name="a.act", kind="act", cin=64, cout=64, h_in=56, w_in=56, h_out=56, w_out=56)]
    table = LayerTable.from_rows(rows, input_shape=(16, 56, 56))
    kirin = get_device("kirin990-npu")
    assert not kirin.fuses_complex_activations and get_device("arm-a76").fuses_complex_activations
    for spec, charged in ((kirin, True), (replace(kirin, fuses_complex_activations=True), False),
                          (get_device("arm-a76"), False),
                          # a runtime that fuses nothing already charges the activation on its conv
                          (replace(kirin, fuses_conv_bn_act=False), False)):
        act_ms = estimate(table, None, spec).layer_latency_ms[0][1]
        assert (act_ms > 0) if charged else act_ms == 0, spec.name


def test_cube_alignment_steps_on_ascend():
    spec = load_device("ascend310", datasheet=True)  # the tiling alone, without the fitted fixed overheads
    lat = {c: estimate(conv_table(cin=256, cout=c, hw=56), None, spec).latency_ms[0] for c in (15, 16, 17, 32)}
    assert lat[17] > 1.5 * lat[16]  # a 17th channel costs a whole extra 16-wide tile
    assert lat[15] >= lat[16] * 0.999  # 15 channels still occupy a full tile
    assert abs(lat[17] - lat[32]) / lat[32] < 0.05
    # the MAC count itself is smooth: the step comes from the tiling only
    assert estimate(conv_table(cout=17), None, spec).macs[0] < 1.1 * estimate(conv_table(cout=16), None, spec).macs[0]


def test_size_bytes_exact(small_table):
    # conv: 16*3*3*3 = 432 weights at 3 bits = 1296 bits = 162 B; BN-folded bias 16*4 = 64 B;
    #       fp32 per-channel scale 16*4 = 64 B  -> 290 B
    # fc:   640 weights at 5 bits = 400 B; bias 40 B; scale 40 B -> 480 B;  pool: 0 B
    est = estimate(small_table, Policy(w_bits={"conv": 3, "fc": 5}), "arm-a76")
    assert int(est.size_bytes[0]) == 290 + 480
    # float: 432*4 + 64 + 640*4 + 40 = 4392 B, no scales
    assert int(estimate(small_table, Policy(), "arm-a76").size_bytes[0]) == 1728 + 64 + 2560 + 40
    assert int(est.params[0]) == 432 + 16 + 640 + 10
    assert int(est.macs[0]) == 432 * 1024 + 640
    assert int(est.bitops[0]) == 432 * 1024 * 3 * 32 + 640 * 5 * 32


def test_vectorised_matches_single_and_resolve(small_table):
    rows = [
        dict(name="c1", kind="conv", cin=3, cout=32, kh=3, kw=3, h_in=16, w_in=16, h_out=16, w_out=16, has_bn=True, out_group="g"),
        dict(name="dw", kind="dwconv", cin=32, cout=32, kh=3, kw=3, h_in=16, w_in=16, h_out=16, w_out=16, has_bn=True, in_group="g", out_group="g"),
        dict(name="c2", kind="conv", cin=32, cout=8, kh=1, kw=1, h_in=16, w_in=16, h_out=16, w_out=16, in_group="g"),
    ]
    from automc.analysis.layer_table import CouplingGroup

    table = LayerTable.from_rows(rows, coupling=[CouplingGroup("g", 32, ("c1",), ("dw", "c2"))])
    rng = np.random.default_rng(0)
    n = 1100  # more than one chunk of the batched model (automc.hw_cost.model.CHUNK)
    pols = [Policy(prune={"g": float(r)}, w_bits={"c2": int(b)}) for r, b in zip(rng.uniform(0, 0.9, n), rng.choice([4, 8, 32], n))]
    batch_shapes = table.resolve(pols)
    for i in (0, 17, 1099):
        one = table.resolve(pols[i])
        for f in ("cin", "cout", "groups", "w_bits", "a_bits", "has_bias"):
            assert np.array_equal(getattr(batch_shapes, f)[i], getattr(one, f)[0]), f
    batch = estimate(table, pols, "kirin990-npu")
    picked = [0, 1, 511, 512, 513, 1099]  # both sides of chunk borders
    single = np.array([estimate(table, pols[i], "kirin990-npu").latency_ms[0] for i in picked])
    assert np.allclose(batch.latency_ms[picked], single)
    assert batch.layer_latency_ms.shape == (n, 3) and batch.size_bytes.shape == (n,)
    assert np.allclose(batch.layer_latency_ms.sum(1) + get_device("kirin990-npu").network_overhead_us * 1e-3, batch.latency_ms)


def test_energy_positive_and_lower_at_int8():
    table = conv_table(cin=128, cout=128, hw=28)
    est = estimate(table, [_bits(8), _bits(32)], "arm-a76")
    assert np.all(est.energy_mj > 0) and est.energy_mj[0] < est.energy_mj[1]


def test_unfused_device_charges_bn_and_act():
    spec = get_device("arm-a76")
    table = conv_table()
    fused = estimate(table, None, spec).latency_ms[0]
    unfused = estimate(table, None, spec.with_updates(fuses_conv_bn_act=False)).latency_ms[0]
    assert unfused > fused
