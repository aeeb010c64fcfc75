"""NAS (elastic width/depth/kernel) on real zoo and user networks: extraction, inherited weights,
layer-table predictions equal to the traced sub-network, joint NAS + pruning, MindIR, YAML."""

from __future__ import annotations

import numpy as np
import pytest

import mindspore as ms
from mindspore import nn  # noqa: E402

from automc.algorithms import build_compressors, find_cell  # noqa: E402
from automc.algorithms.nas import (  # noqa: E402
    ElasticNAS,
    ElasticSpace,
    extract,
    recalibrate_bn,
    sub_policy,
    uniform_width,
)
from automc.algorithms.pruning import ChannelPruning, l1_importance  # noqa: E402
from automc.config import config_from_dict  # noqa: E402
from automc.errors import CompressionError, ConfigError  # noqa: E402
from automc.hw_cost import estimate  # noqa: E402
from automc.models.zoo import mobilenetv2, resnet20, vgg11  # noqa: E402
from automc.policy import Policy  # noqa: E402

from algorithm_helpers import elastic_table, randomise_bn  # noqa: E402

ms.set_context(mode=ms.PYNATIVE_MODE)
MB_SHAPE = (3, 32, 32)
RN_SHAPE = (3, 16, 16)
COLUMNS = ("kind", "cin", "cout", "kh", "kw", "stride", "groups", "h_in", "w_in", "h_out", "w_out",
           "has_bias", "has_bn", "in_group", "out_group", "in_factor")


@pytest.fixture(scope="module")
def mbv2():
    net = mobilenetv2(input_shape=MB_SHAPE, width_mult=0.35, last_channels=64, kernel=5)
    randomise_bn(net)
    return net, elastic_table(net, MB_SHAPE)


@pytest.fixture(scope="module")
def rn20():
    net = resnet20(input_shape=RN_SHAPE, width=8)
    randomise_bn(net, 1)
    return net, elastic_table(net, RN_SHAPE)


def _present_view(table, policy):
    """Resolved shapes of ``policy`` restricted to the rows that are present."""
    shapes = table.resolve(policy)
    keep = shapes.present[0]
    names = tuple(n for n, k in zip(table.names, keep) if k)
    return names, {f: np.asarray(getattr(shapes, f))[0][keep] for f in ("cin", "cout", "kh", "kw", "groups",
                                                                         "h_out", "w_out", "macs", "params")}


def assert_resolve_matches(table, policy, net, input_shape):
    """``table.resolve(policy)`` == the traced layer table of the network ``policy`` produced."""
    traced = elastic_table(net, input_shape)
    names, predicted = _present_view(table, policy)
    assert names == traced.names
    actual = traced.resolve(Policy())
    for f, values in predicted.items():
        np.testing.assert_array_equal(values, np.asarray(getattr(actual, f))[0], err_msg=f)
    return traced


def assert_same_table(a, b):
    assert a.names == b.names
    for f in COLUMNS:
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    assert a.coupling == b.coupling


# ----------------------------------------------------------------- decisions
def test_decisions_of_zoo_networks(mbv2, rn20):
    nas = ElasticNAS(width=[0.5, 0.75], depth=[1, 2], kernel=[3, 5, 7])
    mb = {d.key: d for d in nas.decisions(mbv2[1])}
    assert mb["stage3.depth"].choices == (1, 2, 3) and mb["stage3.depth"].default == 3
    assert "stage1.depth" not in mb  # a one-block stage has nothing to choose
    assert mb["stage2.width"].choices == (0.5, 0.75, 1.0) and mb["head.width"].default == 1.0
    assert mb["block3.kernel"].choices == (3, 5)  # only shrinks from the baseline's 5 (7 is left out)
    assert all(d.kind == "categorical" and d.section == "nas" for d in mb.values())

    rn = {d.key: d.choices for d in nas.decisions(rn20[1])}
    assert rn == {**{f"stage{i}.depth": (1, 2, 3) for i in (1, 2, 3)},
                  **{f"stage{i}.width": (0.5, 0.75, 1.0) for i in (1, 2, 3)}}

    vgg = vgg11(input_shape=(3, 16, 16), width_mult=0.125)
    table = elastic_table(vgg, (3, 16, 16))
    keys = {d.key for d in nas.decisions(table)}
    assert {"stage1.width", "stage3.depth", "stage5.depth"} <= keys and "stage1.depth" not in keys


def test_network_without_space_or_bad_policy_says_how_to_fix(rn20):
    net = nn.SequentialCell([nn.Conv2d(3, 4, 3), nn.ReLU()])
    with pytest.raises(CompressionError, match="elastic_space"):
        ElasticNAS().decisions(elastic_table(net, (3, 8, 8)))
    with pytest.raises(CompressionError, match="valid keys"):
        extract(rn20[0], rn20[1], {"stage9.depth": 1})
    with pytest.raises(ConfigError, match="keeps 1 to 3 blocks"):
        rn20[1].resolve(Policy(nas={"stage1.depth": 0}))


# ----------------------------------------------------------------- extraction
def test_mobilenetv2_subnet_shapes_table_and_cost(mbv2):
    net, table = mbv2
    nas = {"stem.width": 0.5, "stage2.width": 0.75, "stage4.width": 0.5, "head.width": 0.5,
           "stage3.depth": 1, "stage4.depth": 2, "stage6.depth": 2,
           "block2.kernel": 3, "block7.kernel": 3, "block15.kernel": 1}
    sub = extract(net, table, nas)
    # stages: stage2 = features 2-3, stage3 = 4-6, stage4 = 7-10, stage6 = 14-16
    assert isinstance(sub.features[5], nn.Identity) and isinstance(sub.features[6], nn.Identity)
    assert not isinstance(sub.features[4], nn.Identity) and not isinstance(net.features[5], nn.Identity)  # the baseline is untouched
    assert sub.features[7].conv[1][0].kernel_size == (3, 3)
    y = sub(ms.Tensor(np.random.default_rng(0).standard_normal((2, *MB_SHAPE)).astype(np.float32)))
    assert y.shape == (2, 10)

    traced = assert_resolve_matches(table, Policy(nas=nas), sub, MB_SHAPE)
    derived, _ = sub_policy(table, Policy(nas=nas))
    assert_same_table(derived, traced)
    removed = [n for n, p in zip(table.names, table.resolve(Policy(nas=nas)).present[0]) if not p]
    assert removed and {n.split(".")[1] for n in removed} == {"5", "6", "9", "10", "16"}

    # a kernel change alone changes MACs and the predicted latency
    k = {"block7.kernel": 3}
    cost = estimate(table, [Policy(), Policy(nas=k)], "arm-a76")
    assert cost.macs[1] < cost.macs[0] and cost.latency_ms[1] < cost.latency_ms[0]


def test_inherited_weights_centre_crop_and_l1_channels(mbv2):
    net, table = mbv2
    nas = {"stage4.width": 0.5, "block7.kernel": 3, "stage4.depth": 3}
    sub = extract(net, table, nas)
    expand, dw, project = "features.7.conv.0.0", "features.7.conv.1.0", "features.7.conv.2.0"
    w0 = find_cell(net, expand).weight.asnumpy()
    n_keep = int(round(w0.shape[0] * 0.5))
    kept = np.sort(np.argsort(-np.abs(w0.reshape(w0.shape[0], -1)).sum(1), kind="stable")[:n_keep])
    np.testing.assert_array_equal(find_cell(sub, expand).weight.asnumpy(), w0[kept])
    np.testing.assert_array_equal(find_cell(sub, dw).weight.asnumpy(), find_cell(net, dw).weight.asnumpy()[kept, :, 1:4, 1:4])
    np.testing.assert_array_equal(find_cell(sub, "features.7.conv.1.1").gamma.asnumpy(),
                                  find_cell(net, "features.7.conv.1.1").gamma.asnumpy()[kept])
    # the stage's output channels (a residual group) scale too: ranked by L1 over all its producers
    group = next(g for g in table.coupling if project in g.producers)
    scores = l1_importance([find_cell(net, p).weight.asnumpy() for p in group.producers])
    out_kept = np.sort(np.argsort(-scores, kind="stable")[:int(round(group.channels * 0.5))])
    np.testing.assert_array_equal(find_cell(sub, project).weight.asnumpy(),
                                  find_cell(net, project).weight.asnumpy()[out_kept][:, kept])
    # kept blocks of a stage are the first ones, with their weights unchanged
    block8 = "features.8.conv.0.0"
    assert find_cell(sub, block8).weight.shape[0] == round(find_cell(net, block8).weight.shape[0] * 0.5)  # same width knob
    assert isinstance(sub.features[10], nn.Identity) and not isinstance(sub.features[9], nn.Identity)
    assert {p.name for p in sub.get_parameters()} <= {p.name for p in net.get_parameters()}


def test_dropping_blocks_of_the_identity_network_keeps_outputs(rn20):
    """Removing a residual block whose branch outputs zero leaves the network's function unchanged."""
    net, table = rn20
    import copy

    zeroed = copy.deepcopy(net)
    bn = find_cell(zeroed, "layer2.2.conv2.1")
    bn.gamma.set_data(ms.Tensor(np.zeros(bn.gamma.shape, np.float32)))
    bn.beta.set_data(ms.Tensor(np.zeros(bn.beta.shape, np.float32)))
    sub = extract(zeroed, table, {"stage2.depth": 2})
    x = ms.Tensor(np.random.default_rng(1).standard_normal((2, *RN_SHAPE)).astype(np.float32))
    zeroed.set_train(False)
    np.testing.assert_allclose(sub(x).asnumpy(), zeroed(x).asnumpy(), atol=1e-5)


def test_uniform_width_and_zero_policy(rn20):
    net, table = rn20
    same = extract(net, table, {})
    x = ms.Tensor(np.random.default_rng(2).standard_normal((1, *RN_SHAPE)).astype(np.float32))
    net.set_train(False)
    np.testing.assert_allclose(same(x).asnumpy(), net(x).asnumpy(), atol=1e-6)
    nas = {**uniform_width(table, 0.5), "stage1.depth": 1, "stage3.depth": 2}
    assert_resolve_matches(table, Policy(nas=nas), extract(net, table, nas), RN_SHAPE)


# ----------------------------------------------------------------- joint policies
def test_joint_nas_then_pruning_matches_resolve(rn20):
    net, table = rn20
    nas = {"stage2.width": 0.5, "stage2.depth": 2, "stage3.depth": 1}
    prune = {g.name: 0.25 for g in table.prunable_groups}  # includes groups inside removed blocks
    policy = Policy(nas=nas, prune=prune, w_bits={"layer3.2.conv1.0": 8, "fc": 8})
    nas_c, pruning = ElasticNAS(), ChannelPruning()
    # the Evaluator's chain: each compressor gets the table and policy the previous one left
    step = nas_c.apply(net, table, policy)
    sub_table, rest = nas_c.after_apply(table, policy)
    assert "layer3.2.conv1.0" in prune and "layer3.2.conv1.0" not in rest.prune
    assert rest.w_bits == {"fc": 8} and not rest.nas
    final = pruning.apply(step, sub_table, rest)
    assert_resolve_matches(table, policy, final, RN_SHAPE)
    # quantization last, on the pruned sub-network; the removed layer's bit-width was dropped
    from automc.algorithms.quantization.compressor import MixedPrecisionQuantization

    calib = np.random.default_rng(4).standard_normal((8, *RN_SHAPE)).astype(np.float32)
    qnet = MixedPrecisionQuantization(mode="ptq", calib_batches=1).apply(final, sub_table, rest, calib_x=calib)
    assert qnet(ms.Tensor(calib[:2])).shape == (2, 10)
    # NAS width then pruning compose on the sub-network's channels: round(round(16 * .5) * .75)
    _, shapes = _present_view(table, policy)
    assert shapes["cout"][list(sub_table.names).index("layer2.0.conv1.0")] == 6


# ----------------------------------------------------------------- deployment
def test_mindir_round_trip(mbv2, tmp_path):
    net, table = mbv2
    sub = extract(net, table, {"stage2.width": 0.5, "stage4.depth": 1, "block3.kernel": 3})
    x = ms.Tensor(np.random.default_rng(3).standard_normal((2, *MB_SHAPE)).astype(np.float32))
    ms.export(sub, x, file_name=str(tmp_path / "sub"), file_format="MINDIR")
    graph = nn.GraphCell(ms.load(str(tmp_path / "sub.mindir")))
    np.testing.assert_allclose(graph(x).asnumpy(), sub(x).asnumpy(), atol=1e-5)


# ----------------------------------------------------------------- user networks and YAML
class UserNet(nn.Cell):
    """A user network: two residual blocks with a 5x5 depthwise conv, declared through ``elastic_space``."""

    def __init__(self, droppable_first: bool = False):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, pad_mode="same")
        self.blocks = nn.CellList([Residual(8), Residual(8)])
        self.head = nn.Conv2d(8, 16, 1)
        self.fc = nn.Dense(16 * 8 * 8, 10)
        self.flatten = nn.Flatten()
        self.droppable_first = droppable_first

    def construct(self, x):
        x = self.stem(x)
        for b in self.blocks:
            x = b(x)
        return self.fc(self.flatten(self.head(x)))

    def elastic_space(self):
        return ElasticSpace(stages={"body": ("blocks.0", "blocks.1")}, widths={"inner": ("blocks.0.pw", "blocks.1.pw")},
                            kernels={"dw": ("blocks.0.dw", "blocks.1.dw")})


class Residual(nn.Cell):
    def __init__(self, c: int):
        super().__init__()
        self.pw = nn.Conv2d(c, 2 * c, 1)
        self.dw = nn.Conv2d(2 * c, 2 * c, 5, pad_mode="pad", padding=2, group=2 * c)
        self.out = nn.Conv2d(2 * c, c, 1)
        self.relu = nn.ReLU()

    def construct(self, x):
        return x + self.out(self.relu(self.dw(self.pw(x))))


class BadUserNet(UserNet):
    def elastic_space(self):
        return ElasticSpace(stages={"all": ("blocks.0", "head")})


def test_user_network_declaration():
    net = UserNet()
    table = elastic_table(net, (3, 8, 8))
    assert {d.key: d.choices for d in ElasticNAS(width=[0.5], depth=[1], kernel=[3]).decisions(table)} == {
        "body.depth": (1, 2), "inner.width": (0.5, 1.0), "dw.kernel": (3, 5)}
    nas = {"body.depth": 1, "inner.width": 0.5, "dw.kernel": 3}
    assert_resolve_matches(table, Policy(nas=nas), extract(net, table, nas), (3, 8, 8))
    with pytest.raises(CompressionError, match="keep their input's shape"):
        elastic_table(BadUserNet(), (3, 8, 8))


def test_yaml_nas_section_builds_decisions(rn20):
    data = {"name": "nas-yaml", "model": {"name": "resnet20"},
            "compress": {"nas": {"width": [0.5, 0.75], "depth": [2], "kernel": [3]}, "pruning": {"max_ratio": 0.5}}}
    config = config_from_dict(data)
    compressors = build_compressors(config)
    assert [c.name for c in compressors] == ["nas", "pruning"]
    keys = {d.param_name: d.choices for d in compressors[0].decisions(rn20[1])}
    assert keys["nas.stage1.depth"] == (2, 3) and keys["nas.stage3.width"] == (0.5, 0.75, 1.0)
    for bad in ({"kernel": [4]}, {"width": [1.5]}, {"depth": [-1]}, {"widths": [0.5]}):
        with pytest.raises(ConfigError, match="compress.nas"):
            config_from_dict({**data, "compress": {"nas": bad}})


def test_table_with_elastic_hook_pickles(rn20):
    """The trial context (with its table) is shipped to Ray workers, so the hook must pickle."""
    import pickle

    table = rn20[1]
    policy = Policy(nas={"stage2.width": 0.75, "stage3.depth": 2}, prune={"layer1.0.conv1.0": 0.5})
    copy_ = pickle.loads(pickle.dumps(table))
    a, b = table.resolve(policy), copy_.resolve(policy)
    np.testing.assert_array_equal(a.macs, b.macs)
    np.testing.assert_array_equal(a.present, b.present)


def test_recalibrate_bn_sets_batch_statistics():
    net = nn.SequentialCell([nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)])
    x = np.random.default_rng(5).standard_normal((16, 3, 6, 6)).astype(np.float32) * 3 + 1
    recalibrate_bn(net, x, samples=16)
    assert not net.training
    conv_out = net[0](ms.Tensor(x)).asnumpy()
    np.testing.assert_allclose(net[1].moving_mean.asnumpy(), conv_out.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(net[1].moving_variance.asnumpy(), conv_out.var((0, 2, 3), ddof=1), rtol=1e-3)
    # the second batch-norm saw inputs normalised with the first one's batch statistics
    y = net[3](net[2](net[1](ms.Tensor(conv_out)))).asnumpy()
    np.testing.assert_allclose(net[4].moving_mean.asnumpy(), y.mean((0, 2, 3)), rtol=1e-3, atol=1e-4)
