"""Mixed-precision quantization on real MindSpore networks (digits, tiny CNN): fake quant, PTQ, QAT, deploy."""

from __future__ import annotations

import json

import numpy as np
import pytest

import mindspore as ms
from mindspore import nn, ops  # noqa: E402

from automc.algorithms.quantization import (  # noqa: E402
    QuantConv2d,
    QuantDense,
    act_qparams,
    calibrate,
    check_bits,
    compressible_layers,
    fake_quant,
    find_bn_pairs,
    fold_batchnorm,
    quant_params,
    quantize,
    to_deploy_form,
    uniform_policy,
    weight_qparams,
)
from automc.errors import ConfigError, DeployError  # noqa: E402
from automc.policy import Policy  # noqa: E402
from automc.training import TrainSettings, accuracy, predict, train  # noqa: E402

from digits_data import digits_split  # noqa: E402


class TinyCNN(nn.Cell):
    """conv+BN, strided conv+BN, depthwise conv+BN, two dense layers: every kind of compressible layer."""

    def __init__(self):
        super().__init__()
        self.features = nn.SequentialCell(
            [nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2), nn.BatchNorm2d(16), nn.ReLU()]
        )
        self.dw = nn.Conv2d(16, 16, 3, group=16)
        self.bn = nn.BatchNorm2d(16)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Dense(16 * 4 * 4, 32, activation="relu")
        self.fc2 = nn.Dense(32, 10)

    def construct(self, x):
        x = ops.relu(self.bn(self.dw(self.features(x))))
        return self.fc2(self.fc1(self.flatten(x)))


LAYERS = ["features.0", "features.3", "dw", "fc1", "fc2"]


@pytest.fixture(scope="module")
def digits():
    return digits_split()


@pytest.fixture(scope="module")
def float_net(digits):
    xtr, ytr, xte, yte = digits
    ms.set_seed(0)
    net = TinyCNN()
    train(net, xtr, ytr, TrainSettings(epochs=6, lr=0.05, batch_size=64))
    assert accuracy(net, xte, yte) > 90.0
    return net


@pytest.fixture(scope="module")
def qat_net(float_net, digits):
    """Mixed bits, asymmetric, PTQ-calibrated then fine-tuned for one epoch under ms.jit."""
    xtr, ytr, _, _ = digits
    policy = Policy(
        w_bits={"features.0": 8, "features.3": 4, "dw": 6, "fc1": 4, "fc2": 8},
        a_bits={"features.0": 8, "features.3": 8, "dw": 6, "fc1": 8, "fc2": 8},
    )
    qnet = quantize(float_net, policy, symmetric=False, calib_x=xtr[:256])
    loss = train(qnet, xtr, ytr, TrainSettings(epochs=1, lr=0.01, batch_size=64))
    assert np.isfinite(loss)
    return qnet


# ----------------------------------------------------------------------------- fake quantization
def test_ste_gradient_is_one_inside_the_range_and_zero_outside_for_inputs():
    x = ms.Tensor(np.array([-3.0, -0.7, -0.2, 0.0, 0.31, 0.9, 2.5], np.float32))
    scale, zero, qmin, qmax = act_qparams(ms.Tensor(-1.0), ms.Tensor(1.0), 4, True)
    grad = ms.grad(lambda t: fake_quant(t, scale, zero, qmin, qmax, ste=True).sum())(x).asnumpy()
    inside = np.abs(x.asnumpy()) < 1.0
    np.testing.assert_array_equal(grad[inside], 1.0)
    np.testing.assert_array_equal(grad[~inside], 0.0)


def test_ste_gradient_passes_through_weights():
    w = ms.Tensor(np.random.default_rng(0).normal(size=(4, 3, 3, 3)).astype(np.float32))

    def f(t):
        s, z, lo, hi = weight_qparams(t, 3, True)
        return (fake_quant(t, s, z, lo, hi, ste=True, clip_grad=False) * 2.0).sum()

    np.testing.assert_array_equal(ms.grad(f)(w).asnumpy(), 2.0)


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_quantization_error_is_at_most_half_a_step(bits, symmetric):
    w = np.random.default_rng(bits).normal(size=(6, 4, 3, 3)).astype(np.float32) * np.arange(1, 7).reshape(6, 1, 1, 1)
    wt = ms.Tensor(w)
    s, z, lo, hi = weight_qparams(wt, bits, symmetric)
    deq = fake_quant(wt, s, z, lo, hi, ste=False).asnumpy()
    assert np.all(np.abs(deq - w) <= s.asnumpy() / 2 * (1 + 1e-5) + 1e-7)

    a = np.random.default_rng(1).uniform(-0.5, 3.0, size=(2, 3, 5, 5)).astype(np.float32)
    s, z, lo, hi = act_qparams(ms.Tensor(a.min()), ms.Tensor(a.max()), bits, symmetric)
    deq = fake_quant(ms.Tensor(a), s, z, lo, hi, ste=False).asnumpy()
    assert np.all(np.abs(deq - a) <= float(s.asnumpy()) / 2 * (1 + 1e-5) + 1e-7)


@pytest.mark.parametrize("symmetric", [True, False])
def test_mse_weight_range_clips_outliers_and_never_increases_the_error(symmetric):
    w = np.random.default_rng(0).standard_t(3, size=(8, 64)).astype(np.float32)
    wt = ms.Tensor(w)
    errs = {}
    for mse in (False, True):
        s, z, lo, hi = weight_qparams(wt, 2, symmetric, mse)
        deq = fake_quant(wt, s, z, lo, hi, ste=False).asnumpy()
        errs[mse] = ((deq - w) ** 2).sum(axis=1)
        s, z = s.asnumpy(), z.asnumpy()
        inside = (w >= (lo - z) * s) & (w <= (hi - z) * s)
        assert np.all(np.abs(deq - w)[inside] <= (s / 2 * (1 + 1e-5) + 1e-7).repeat(64, axis=1)[inside])
    assert np.all(errs[True] <= errs[False] + 1e-6) and errs[True].sum() < 0.8 * errs[False].sum()


def test_per_channel_weight_scales_have_one_entry_per_output_channel():
    for cell, shape in [
        (nn.Conv2d(3, 8, 3), (8, 1, 1, 1)),
        (nn.Conv2d(8, 8, 3, group=8), (8, 1, 1, 1)),
        (nn.Dense(20, 5), (5, 1)),
    ]:
        s, z, _, _ = weight_qparams(cell.weight, 8, True)
        assert s.shape == shape and z.shape == shape
        expected = np.abs(cell.weight.asnumpy().reshape(shape[0], -1)).max(1) / 127
        np.testing.assert_allclose(s.asnumpy().ravel(), expected, rtol=1e-6)


def test_symmetric_and_asymmetric_grids():
    w = ms.Tensor(np.random.default_rng(0).uniform(0.2, 1.0, size=(3, 10)).astype(np.float32))
    s, z, lo, hi = weight_qparams(w, 4, True)
    assert (lo, hi) == (-7.0, 7.0) and not z.asnumpy().any()
    sa, za, loa, hia = weight_qparams(w, 4, False)
    assert (loa, hia) == (0.0, 15.0)
    sym_err = np.abs(fake_quant(w, s, z, lo, hi, ste=False).asnumpy() - w.asnumpy()).max()
    asym_err = np.abs(fake_quant(w, sa, za, loa, hia, ste=False).asnumpy() - w.asnumpy()).max()
    assert asym_err < sym_err  # all-positive data: asymmetric does not waste the negative half

    # inputs: non-negative range -> unsigned grid with zero point 0; signed range -> narrow signed grid
    s, z, lo, hi = act_qparams(ms.Tensor(0.0), ms.Tensor(2.55), 8, True)
    assert float(lo.asnumpy()) == 0 and float(hi.asnumpy()) == 255 and float(z.asnumpy()) == 0
    np.testing.assert_allclose(float(s.asnumpy()), 0.01, rtol=1e-6)
    s, z, lo, hi = act_qparams(ms.Tensor(-1.0), ms.Tensor(2.54), 8, True)
    assert float(lo.asnumpy()) == -127 and float(hi.asnumpy()) == 127 and float(z.asnumpy()) == 0
    s, z, lo, hi = act_qparams(ms.Tensor(-1.0), ms.Tensor(3.0), 8, False)
    assert float(z.asnumpy()) == round(1.0 / (4.0 / 255)) and float(hi.asnumpy()) == 255


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize("bad", [0, 1, 17, 33, 8.5, 8.0, True, "8", None])
def test_bad_bit_widths_raise_config_error_naming_the_layer(float_net, bad):
    with pytest.raises(ConfigError, match=r"w_bits\['fc1'\].*2\.\.16, or 32") as err:
        quantize(float_net, Policy(w_bits={"fc1": bad}), fold_bn=False)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"a_bits\['dw'\]"):
        quantize(float_net, Policy(a_bits={"dw": bad}), fold_bn=False)


def test_valid_bits_and_unknown_layers():
    assert [check_bits(b, where="x") for b in (2, 8, 16, 32, np.int64(4))] == [2, 8, 16, 32, 4]
    with pytest.raises(ConfigError, match="not a Conv2d/Dense layer.*valid layers: features.0"):
        quantize(TinyCNN(), Policy(w_bits={"fc9": 8}), fold_bn=False)
    with pytest.raises(ConfigError, match="weight_range 'max' is invalid; use one of mse, minmax"):
        quantize(TinyCNN(), Policy(w_bits={"fc1": 8}), fold_bn=False, weight_range="max")


# ----------------------------------------------------------------------------- batch-norm folding
def test_folded_conv_equals_conv_plus_batchnorm_in_inference():
    rng = np.random.default_rng(0)
    for conv in (nn.Conv2d(4, 6, 3, stride=2, has_bias=True), nn.Conv2d(6, 6, 3, group=6)):
        c = conv.out_channels
        bn = nn.BatchNorm2d(c)
        bn.gamma.set_data(ms.Tensor(rng.uniform(0.5, 2, c).astype(np.float32)))
        bn.beta.set_data(ms.Tensor(rng.normal(size=c).astype(np.float32)))
        bn.moving_mean.set_data(ms.Tensor(rng.normal(size=c).astype(np.float32)))
        bn.moving_variance.set_data(ms.Tensor(rng.uniform(0.1, 3, c).astype(np.float32)))
        bn.set_train(False)
        x = ms.Tensor(rng.normal(size=(2, conv.in_channels, 9, 9)).astype(np.float32))
        ref = bn(conv(x)).asnumpy()
        np.testing.assert_allclose(fold_batchnorm(conv, bn)(x).asnumpy(), ref, atol=1e-4, rtol=0)


def test_quantize_folds_traced_bn_pairs_and_leaves_the_original_alone(float_net, digits):
    xtr = digits[0]
    assert find_bn_pairs(float_net, xtr[:2]) == {"features.0": "features.1", "features.3": "features.4", "dw": "bn"}
    before = {p.name: p.asnumpy().copy() for p in float_net.get_parameters()}
    qnet = quantize(float_net, uniform_policy(LAYERS, w_bits=32, a_bits=32), calib_x=xtr[:64])
    assert not any(isinstance(c, (QuantConv2d, QuantDense)) for _, c in qnet.cells_and_names())  # 32 = float
    qnet = quantize(float_net, uniform_policy(LAYERS, w_bits=16, a_bits=16), calib_x=xtr[:128])
    cells = dict(qnet.cells_and_names())
    assert isinstance(cells["features.0"], QuantConv2d) and isinstance(cells["fc2"], QuantDense)
    assert all(isinstance(cells[b], nn.Identity) for b in ("features.1", "features.4", "bn"))
    names = [p.name for p in qnet.get_parameters()]
    assert len(names) == len(set(names)) and "features.3.a_min" in names
    # 16-bit with folded BN reproduces the float network
    np.testing.assert_allclose(predict(qnet, xtr[:64]), predict(float_net, xtr[:64]), atol=2e-2)
    for p in float_net.get_parameters():
        np.testing.assert_array_equal(p.asnumpy(), before[p.name])


# ----------------------------------------------------------------------------- PTQ / QAT
def test_8bit_ptq_is_within_one_point_of_float(float_net, digits):
    xtr, _, xte, yte = digits
    qnet = quantize(float_net, uniform_policy(LAYERS, w_bits=8), calib_x=xtr, calib_batches=4)
    ready = [float(c.a_ready.asnumpy()) for _, c in qnet.cells_and_names() if isinstance(c, QuantConv2d)]
    assert ready == [1.0, 1.0, 1.0]
    assert accuracy(qnet, xte, yte) >= accuracy(float_net, xte, yte) - 1.0


def test_calibration_is_min_max_over_the_batches(float_net, digits):
    xtr = digits[0]
    qnet = quantize(float_net, Policy(a_bits={"features.0": 8}), fold_bn=False, calib_x=xtr, calib_batches=2, batch_size=50)
    cell = dict(qnet.cells_and_names())["features.0"]
    assert float(cell.a_max.asnumpy()) == pytest.approx(float(xtr[:100].max()))
    assert float(cell.a_min.asnumpy()) == pytest.approx(float(xtr[:100].min()))
    calibrate(qnet, xtr[:10] * 0.5, batches=1, batch_size=10)
    assert float(cell.a_max.asnumpy()) == pytest.approx(float(xtr[:10].max() * 0.5))


def test_qat_trains_under_jit_and_updates_weights_and_observers(qat_net, float_net, digits):
    _, _, xte, yte = digits
    cells = dict(qat_net.cells_and_names())
    assert isinstance(cells["fc1"], QuantDense) and cells["fc1"].w_bits == 4
    assert all(float(cells[n].a_ready.asnumpy()) == 1.0 for n in LAYERS)
    fc1_float = dict(float_net.cells_and_names())["fc1"].weight.asnumpy()
    assert not np.allclose(cells["fc1"].weight.asnumpy(), fc1_float)
    assert accuracy(qat_net, xte, yte) >= accuracy(float_net, xte, yte) - 3.0


def test_qat_step_runs_inside_ms_jit(float_net, digits):
    xtr, ytr, _, _ = digits
    qnet = quantize(float_net, uniform_policy(LAYERS, w_bits=4, a_bits=8), calib_x=xtr[:64])
    loss_cell = nn.WithLossCell(qnet, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"))
    step_cell = nn.TrainOneStepCell(loss_cell, nn.SGD(qnet.trainable_params(), learning_rate=0.01))
    step_cell.set_train(True)

    @ms.jit
    def step(a, b):
        return step_cell(a, b)

    a_max_before = float(dict(qnet.cells_and_names())["fc2"].a_max.asnumpy())
    losses = [float(step(ms.Tensor(xtr[i : i + 32]), ms.Tensor(ytr[i : i + 32])).asnumpy()) for i in range(0, 160, 32)]
    assert all(np.isfinite(losses))
    assert float(dict(qnet.cells_and_names())["fc2"].a_max.asnumpy()) != a_max_before  # EMA observer ran in graph


# ----------------------------------------------------------------------------- deployment form
def test_deploy_form_matches_the_qat_network(qat_net, digits):
    _, _, xte, _ = digits
    deploy = to_deploy_form(qat_net)
    assert not any(isinstance(c, (QuantConv2d, QuantDense)) for _, c in deploy.cells_and_names())
    cells = dict(deploy.cells_and_names())
    assert cells["features.3"].w_int.dtype == ms.int8 and cells["features.3"].w_scale.shape == (16, 1, 1, 1)
    codes = cells["features.3"].w_int.asnumpy()
    assert codes.min() >= -8 and codes.max() <= 7  # 4-bit asymmetric codes, shifted into int4 range
    ref, out = predict(qat_net, xte), predict(deploy, xte)
    assert (ref.argmax(1) == out.argmax(1)).mean() >= 0.995
    np.testing.assert_allclose(out, ref, atol=1e-4)


def test_quant_params_are_json_ready_and_consistent(qat_net):
    qp = quant_params(qat_net)
    assert set(qp) == set(LAYERS)
    assert qp["features.3"]["w_bits"] == 4 and len(qp["features.3"]["w_scale"]) == 16
    assert qp["fc2"]["a_scale"] > 0 and 0 <= qp["fc2"]["a_zero_point"] <= 255
    dq = quant_params(to_deploy_form(qat_net))
    for name in LAYERS:
        np.testing.assert_allclose(dq[name]["w_scale"], qp[name]["w_scale"], rtol=1e-6)
        assert dq[name]["w_zero_point"] == qp[name]["w_zero_point"]
        assert dq[name]["a_zero_point"] == qp[name]["a_zero_point"]
    json.dumps(qp)


def test_deploy_form_needs_calibrated_inputs(float_net):
    qnet = quantize(float_net, Policy(a_bits={"fc2": 8}), fold_bn=False)
    with pytest.raises(DeployError, match="fc2.*no calibrated range"):
        to_deploy_form(qnet)


def test_mindir_export_round_trip(qat_net, digits, tmp_path):
    _, _, xte, _ = digits
    deploy = to_deploy_form(qat_net)
    sample = ms.Tensor(xte[:16])
    ms.export(deploy, sample, file_name=str(tmp_path / "qnet"), file_format="MINDIR")
    graph = nn.GraphCell(ms.load(str(tmp_path / "qnet.mindir")))
    np.testing.assert_allclose(graph(sample).asnumpy(), deploy(sample).asnumpy(), atol=1e-5)
    assert compressible_layers(deploy) == {}  # no float Conv2d/Dense left: all became deploy cells
