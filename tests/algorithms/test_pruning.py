"""Physical, dependency-aware channel pruning on real MindSpore networks."""

import numpy as np
import pytest

from services import require_module

import mindspore as ms
from automc.algorithms.pruning import ChannelPruning, prune
from automc.analysis import build_layer_table
from automc.errors import CompressionError
from automc.models import build_model
from automc.policy import Policy


def _random_policy(table, seed=0, high=0.7):
    rng = np.random.default_rng(seed)
    return Policy(prune={g.name: float(rng.uniform(0, high)) for g in table.prunable_groups})


def _n_params(net):
    return sum(int(np.prod(p.shape)) for p in net.trainable_params())


@pytest.mark.parametrize("name,shape,kwargs", [
    ("lenet", (1, 8, 8), {}), ("resnet20", (3, 32, 32), {}),
    ("mobilenetv2", (3, 16, 16), {"width_mult": 0.5, "last_channels": 256}), ("vgg11", (3, 32, 32), {})])
def test_pruned_network_is_smaller_runs_and_matches_the_table(name, shape, kwargs):
    net = build_model(name, num_classes=10, input_shape=shape, **kwargs)
    table = build_layer_table(net, shape)
    policy = _random_policy(table)
    pruned = prune(net, table, policy)
    out = pruned(ms.Tensor(np.random.randn(2, *shape).astype(np.float32)))
    assert out.shape == (2, 10)
    assert _n_params(pruned) < _n_params(net)
    traced = build_layer_table(pruned, shape)  # analyse the new network from scratch
    predicted = table.resolve(policy)
    np.testing.assert_array_equal(traced.cin, predicted.cin[0])
    np.testing.assert_array_equal(traced.cout, predicted.cout[0])
    np.testing.assert_array_equal(traced.groups, predicted.groups[0])
    assert traced.totals()["macs"] == table.totals(policy)["macs"]
    # the original network is untouched
    assert build_layer_table(net, shape).totals() == table.totals()


def test_removing_dead_channels_preserves_the_function():
    """Channels whose filter, BN shift and mean are zero contribute nothing: L1 importance ranks
    them last, and removing them leaves the network's outputs unchanged."""
    net = build_model("resnet20", num_classes=10, input_shape=(3, 32, 32))
    net.set_train(False)
    dead = [1, 5, 6, 11]
    for cell_path in ("layer1.0.conv1", "layer2.1.conv1"):
        conv, bn = net.layer1 if False else None, None
        seq = net
        for part in cell_path.split("."):
            seq = seq._cells[part]
        conv, bn = seq[0], seq[1]
        w = conv.weight.asnumpy()
        w[dead] = 0
        conv.weight.set_data(ms.Tensor(w))
        for p in (bn.beta, bn.moving_mean):
            v = p.asnumpy()
            v[dead] = 0
            p.set_data(ms.Tensor(v))
    table = build_layer_table(net, (3, 32, 32))
    x = ms.Tensor(np.random.randn(4, 3, 32, 32).astype(np.float32))
    pruned = prune(net, table, Policy(prune={"layer1.0.conv1.0": 0.25, "layer2.1.conv1.0": 4 / 32}))
    assert pruned.layer1[0].conv1[0].out_channels == 12 and pruned.layer2[1].conv1[0].out_channels == 28
    np.testing.assert_allclose(pruned(x).asnumpy(), net(x).asnumpy(), atol=1e-5)


def test_importance_keeps_the_largest_filters_in_order():
    net = build_model("lenet", num_classes=10, input_shape=(1, 8, 8))
    w = net.conv1[0].weight.asnumpy()
    scale = np.arange(1, 17, dtype=np.float32)[:, None, None, None]
    net.conv1[0].weight.set_data(ms.Tensor(np.sign(w) * 0.01 * scale))
    table = build_layer_table(net, (1, 8, 8))
    pruned = prune(net, table, Policy(prune={"conv1.0": 0.5}))
    np.testing.assert_array_equal(pruned.conv1[0].weight.asnumpy(), net.conv1[0].weight.asnumpy()[8:])
    np.testing.assert_array_equal(pruned.conv1[1].gamma.asnumpy(), net.conv1[1].gamma.asnumpy()[8:])
    np.testing.assert_array_equal(pruned.conv2[0].weight.asnumpy(), net.conv2[0].weight.asnumpy()[:, 8:])


def test_unprunable_and_unknown_groups_are_refused():
    net = build_model("lenet", num_classes=10, input_shape=(1, 8, 8))
    table = build_layer_table(net, (1, 8, 8))
    with pytest.raises(CompressionError, match="network output"):
        prune(net, table, Policy(prune={"fc2": 0.5}))
    with pytest.raises(CompressionError, match="unknown group"):
        prune(net, table, Policy(prune={"nope": 0.5}))


def test_decisions_cover_prunable_groups_only():
    net = build_model("resnet20", num_classes=10, input_shape=(3, 32, 32))
    table = build_layer_table(net, (3, 32, 32))
    decisions = ChannelPruning(max_ratio=0.6).decisions(table)
    assert [d.key for d in decisions] == [g.name for g in table.prunable_groups]
    assert all(d.high == 0.6 and d.low == 0.0 for d in decisions)


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v2_100"])
def test_mindcv_networks_prune_and_run(arch):
    require_module("mindcv", "mindcv is in the test extras: pip install -e \".[test]\"")
    net = build_model("mindcv", num_classes=10, input_shape=(3, 32, 32), arch=arch)
    table = build_layer_table(net, (3, 32, 32))
    assert len(table.prunable_groups) > 5
    policy = _random_policy(table, high=0.5)
    pruned = prune(net, table, policy)
    assert pruned(ms.Tensor(np.random.randn(1, 3, 32, 32).astype(np.float32))).shape == (1, 10)
    assert build_layer_table(pruned, (3, 32, 32)).totals() == table.totals(policy)
