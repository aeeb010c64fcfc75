from __future__ import annotations

import numpy as np
import pytest

from services import require_module
from mindspore import Tensor, nn

import deploy_nets
from automc.deploy import check_mindir_parity, export_mindir, find_conv_bn_pairs, fold_batchnorm
from automc.errors import DeployError

TOL = 1e-4


def _out(net, x):
    net.set_train(False)
    return net(Tensor(x)).asnumpy()


def _n_bn(net):
    return sum(isinstance(c, nn.BatchNorm2d) for _, c in net.cells_and_names())


@pytest.mark.parametrize("name,n_pairs", [("small_cnn", 2), ("tiny_resnet", 6), ("tiny_mobilenetv2", 5)])
def test_fold_parity(name, n_pairs, tmp_path):
    x = deploy_nets.batch(4, seed=3)
    reference = _out(deploy_nets.build(name), x)
    net = deploy_nets.build(name)
    assert len(find_conv_bn_pairs(net, x[:2])) == n_pairs
    folded = fold_batchnorm(net, x[:2])
    assert folded is net and _n_bn(net) == 0
    assert np.max(np.abs(_out(net, x) - reference)) <= TOL
    # The folded form still exports and matches its MindIR.
    report = check_mindir_parity(net, export_mindir(net, x[:2], tmp_path / "folded"), x)
    assert report.ok(TOL), str(report)


def test_fold_adds_bias_to_bias_free_conv():
    net = deploy_nets.build("small_cnn")
    assert not net.conv1.has_bias
    fold_batchnorm(net, deploy_nets.batch(2))
    assert net.conv1.has_bias and net.conv1.bias.shape == (8,)
    assert isinstance(net.bn1, nn.Identity)


class _SharedConvOutput(nn.Cell):
    """The conv output feeds the BN and the residual: folding would change the residual."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, pad_mode="pad", padding=1)
        self.bn = nn.BatchNorm2d(3)

    def construct(self, x):
        y = self.conv(x)
        return self.bn(y) + y


def test_fold_refuses_and_restores_when_conv_output_is_shared():
    net = _SharedConvOutput()
    deploy_nets._randomize_bn(net, 0)  # noqa: SLF001
    x = deploy_nets.batch(2)
    before = _out(net, x)
    with pytest.raises(DeployError, match="restored"):
        fold_batchnorm(net, x)
    assert isinstance(net.bn, nn.BatchNorm2d) and not net.conv.has_bias
    np.testing.assert_array_equal(_out(net, x), before)


def test_fold_mindcv_resnet18():
    mindcv = require_module("mindcv", "mindcv is in the test extras: pip install -e \".[test]\"")
    import mindspore as ms

    ms.set_seed(0)
    net = mindcv.create_model("resnet18", pretrained=False, num_classes=10)
    deploy_nets._randomize_bn(net, 1)  # noqa: SLF001
    x = np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)
    reference = _out(net, x)
    n_bn = _n_bn(net)
    fold_batchnorm(net, x)
    assert n_bn == 20 and _n_bn(net) == 0
    assert np.max(np.abs(_out(net, x) - reference)) <= TOL
