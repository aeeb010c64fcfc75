"""A quantized network in the runtimes that run int8 kernels here: ONNX Runtime (QDQ) and MindSpore
Lite 2.0 (FULL_QUANT), each run for real on the test split, with parity against the network."""

from __future__ import annotations

import numpy as np
import pytest

import mindspore as ms
from mindspore import nn, ops

from automc.algorithms.quantization import quantize, to_deploy_form, to_float_form
from automc.deploy import ms_weight_bits
from automc.deploy.int8 import MIN_AGREEMENT, export_int8
from automc.deploy.qdq import INT8_KERNELS, cpu_has_vnni, export_onnx_qdq, onnx_kernels, qdq_layers
from automc.errors import DeployError
from automc.policy import Policy
from automc.training import TrainSettings, accuracy, predict, train

from digits_data import digits_split

pytestmark = pytest.mark.slow


class SmallNet(nn.Cell):
    """conv+BN, max-pool, strided conv, depthwise conv, two dense layers: each kind of int8 layer."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, has_bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(16, 32, 3, stride=2, has_bias=True)
        self.dw = nn.Conv2d(32, 32, 3, group=32, has_bias=True)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Dense(32 * 4 * 4, 32)
        self.fc2 = nn.Dense(32, 10)

    def construct(self, x):
        x = self.pool(ops.relu(self.bn1(self.conv1(x))))
        x = ops.relu(self.dw(ops.relu(self.conv2(x))))
        return self.fc2(ops.relu(self.fc1(self.flatten(x))))


INT8 = ["conv1", "conv2", "dw", "fc1"]  # fc2 stays float: a mixed-precision network


@pytest.fixture(scope="module")
def digits():
    return digits_split(2)


@pytest.fixture(scope="module")
def mixed(digits):
    """A trained network, int8 on four layers and float on the last, QAT-fine-tuned, deployment form."""
    xtr, ytr, xte, yte = digits
    ms.set_seed(0)
    net = SmallNet()
    train(net, xtr, ytr, TrainSettings(epochs=8, lr=0.05, batch_size=64))
    qnet = quantize(net, Policy(w_bits=dict.fromkeys(INT8, 8), a_bits=dict.fromkeys(INT8, 8)), calib_x=xtr[:256])
    train(qnet, xtr, ytr, TrainSettings(epochs=1, lr=0.01, batch_size=64))
    dnet = to_deploy_form(qnet)
    assert accuracy(dnet, xte, yte) > 85.0
    return dnet


def test_the_float_twin_computes_with_the_dequantized_weights(mixed, digits):
    _, _, xte, _ = digits
    twin = to_float_form(mixed)
    assert not any(type(c).__name__.startswith("Deploy") for _, c in twin.cells_and_names())
    cells = dict(mixed.cells_and_names())
    for name, cell in twin.cells_and_names():
        if name in INT8:
            assert np.array_equal(cell.weight.asnumpy(), cells[name].dequantized_weight())
    # only the input quantization differs: close, not equal
    ref, got = predict(mixed, xte), predict(twin, xte)
    assert np.mean(ref.argmax(1) == got.argmax(1)) > 0.95


def test_a_mixed_network_runs_int8_kernels_in_onnxruntime_with_parity(mixed, digits, tmp_path):
    xtr, _, xte, yte = digits
    run = export_int8(mixed, "onnxruntime", tmp_path / "best.onnx", calibration=xtr[:200], test_x=xte, test_y=yte)
    assert run.ok, run.line()
    assert run.agreement >= MIN_AGREEMENT and abs(run.accuracy - run.network_accuracy) <= 0.5
    kernels = onnx_kernels(run.path)
    assert sum(kernels[k] for k in INT8_KERNELS) == run.int8_kernel_count >= 3, kernels  # the convs at least
    written = qdq_layers(run.path)
    assert [w.layer for w in written] == INT8 and {w.w_bits for w in written} == {8}
    # without VNNI, 8-bit codes are stored as uint8 (int8 x uint8 pair sums saturate in int16)
    assert {w.weight_storage for w in written} == ({"int8"} if cpu_has_vnni() else {"uint8"})
    assert run.latency_ms > 0 and run.float_latency_ms > 0


def test_a_mixed_network_runs_full_quant_in_mindspore_lite_with_parity(mixed, digits, tmp_path):
    xtr, _, xte, yte = digits
    run = export_int8(mixed, "lite", tmp_path / "best.ms", calibration=xtr[:200], test_x=xte, test_y=yte)
    assert run.ok, run.line()
    bits = ms_weight_bits(run.path)
    assert {name: bits[f"{name}.weight"] for name in [*INT8, "fc2"]} == {**dict.fromkeys(INT8, 8), "fc2": 32}
    assert run.int8_kernel_count == len(INT8)
    assert run.latency_ms > 0 and run.float_latency_ms > 0


def test_a_layer_with_float_weights_reads_its_quantized_input_in_onnxruntime(digits, tmp_path):
    """w_bits 32 / a_bits 8 (possible with export.runtime: any): the input pair only, same outputs."""
    import onnxruntime as ort

    xtr, _, xte, _ = digits
    ms.set_seed(1)
    net = SmallNet()
    policy = Policy(w_bits={"conv1": 8, "conv2": 32}, a_bits={"conv1": 8, "conv2": 8})
    dnet = to_deploy_form(quantize(net, policy, calib_x=xtr[:128]))
    path = export_onnx_qdq(dnet, xte[:1], tmp_path / "m.onnx")
    assert [w.layer for w in qdq_layers(path)] == ["conv1"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = np.concatenate([session.run(None, {session.get_inputs()[0].name: xte[i:i + 1]})[0] for i in range(64)])
    ref = predict(dnet, xte[:64])
    assert np.abs(got - ref).max() <= 0.02 * np.abs(ref).max()


def test_a_network_without_int8_layers_is_refused(digits, tmp_path):
    xtr, _, xte, yte = digits
    net = SmallNet()
    dnet = to_deploy_form(quantize(net, Policy(w_bits={"conv1": 4}), calib_x=xtr[:64]))  # weight-only
    with pytest.raises(DeployError, match="nothing runs in int8"):
        export_int8(dnet, "onnxruntime", tmp_path / "m.onnx", calibration=xtr[:64], test_x=xte, test_y=yte)
