"""The layer table against hand counts, and the coupling groups the probe finds."""

import numpy as np

from automc.analysis import LayerTable, CouplingGroup, build_layer_table, kept_channels
from automc.models import build_model
from automc.policy import Policy


def _row(table, name):
    return {r["name"]: r for r in table.rows()}[name]


def test_lenet_hand_counts():
    table = build_layer_table(build_model("lenet", num_classes=10, input_shape=(1, 8, 8)), (1, 8, 8))
    assert table.names == ("conv1.0", "conv2.0", "pool1", "conv3.0", "pool2", "fc1", "fc2")
    # conv: H_out*W_out*C_out*C_in*k*k MACs; params = weights + folded BN bias (dense: + bias)
    expected = {
        "conv1.0": (8 * 8 * 16 * 1 * 9, 16 * 1 * 9 + 16),
        "conv2.0": (8 * 8 * 32 * 16 * 9, 32 * 16 * 9 + 32),
        "conv3.0": (4 * 4 * 64 * 32 * 9, 64 * 32 * 9 + 64),
        "fc1": (64 * 2 * 2 * 128, 256 * 128 + 128),
        "fc2": (128 * 10, 128 * 10 + 10),
        "pool1": (0, 0),
    }
    for name, (macs, params) in expected.items():
        row = _row(table, name)
        assert (row["macs"], row["params"]) == (macs, params), name
    fc1 = _row(table, "fc1")
    assert fc1["in_group"] == "conv3.0" and table.in_factor[table.index("fc1")] == 4  # flatten: 2x2 per channel
    assert _row(table, "pool1")["h_out"] == 4


def test_resnet20_hand_counts_and_residual_coupling():
    table = build_layer_table(build_model("resnet20", num_classes=10, input_shape=(3, 32, 32)), (3, 32, 32))
    totals = table.totals()
    assert totals["macs"] == 40_813_184  # the well-known ~41M MACs of ResNet-20
    assert totals["params"] == 271_690
    assert _row(table, "stem.0")["macs"] == 32 * 32 * 16 * 3 * 9
    assert _row(table, "layer2.0.conv1.0")["macs"] == 16 * 16 * 32 * 16 * 9  # stride 2
    assert _row(table, "layer2.0.shortcut.0")["macs"] == 16 * 16 * 32 * 16
    stage1 = table.group("stem.0")
    # the stem and every block's second conv write the same channels (joined by residual adds)
    assert stage1.producers == ("stem.0", "layer1.0.conv2.0", "layer1.1.conv2.0", "layer1.2.conv2.0")
    assert set(stage1.consumers) == {"layer1.0.conv1.0", "layer1.1.conv1.0", "layer1.2.conv1.0",
                                     "layer2.0.conv1.0", "layer2.0.shortcut.0"}
    assert {"stem.1", "layer1.0.conv2.1"} <= set(stage1.followers)  # their batch-norms
    # a block's inner channels are a group of their own
    assert table.group("layer1.0.conv1.0").producers == ("layer1.0.conv1.0",)
    assert not table.group("fc").prunable and "network output" in table.group("fc").reason
    assert len(table.prunable_groups) == 12
    # the residual adds (functional in construct, no cells) come from the coupling: one per block
    adds = [i for i, k in enumerate(table.kind) if k == "add"]
    assert len(adds) == 9
    first = adds[0]
    assert table.names[first] == "layer1.0.conv2.0.add" and table.names[first - 1] == "layer1.0.conv2.0"
    assert (table.cin[first], table.h_out[first], table.w_out[first]) == (16, 32, 32)
    assert table.coupling[table.out_group[first]].name == "stem.0"  # pruning the stage shrinks its adds


def test_a_global_pool_without_a_pooling_cell_gets_its_row():
    """A global average pool is a parameterless cell (the zoo's ``GlobalAvgPool``, mindcv's
    ``GlobalAvgPooling``) or ``ops.mean`` in ``construct``: either way one pool row over the whole
    map (it costs a read of every activation on a device), none for a flatten or a dense layer
    after a dense layer."""
    from mindspore import nn

    class Functional(nn.Cell):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3)
            self.fc1 = nn.Dense(8, 6)
            self.fc2 = nn.Dense(6, 4)

        def construct(self, x):
            return self.fc2(self.fc1(self.conv(x).mean((2, 3))))

    table = build_layer_table(Functional(), (3, 8, 8))
    assert table.names == ("conv", "fc1.pool", "fc1", "fc2")
    pool = _row(table, "fc1.pool")
    assert (pool["kind"], pool["cin"], pool["kh"], pool["h_in"], pool["h_out"], pool["macs"]) == ("pool", 8, 8, 8, 1, 0)
    assert pool["in_group"] == pool["out_group"] == "conv"  # pruning conv shrinks the pool

    resnet = build_layer_table(build_model("resnet20", num_classes=10, input_shape=(3, 32, 32)), (3, 32, 32))
    assert resnet.names[-2:] == ("pool", "fc") and _row(resnet, "pool")["kh"] == 8  # the zoo's GlobalAvgPool cell
    lenet = build_layer_table(build_model("lenet", num_classes=10, input_shape=(1, 8, 8)), (1, 8, 8))
    assert [k for k in lenet.kind].count("pool") == 2  # its two MaxPool2d, nothing at the flatten


def test_a_table_round_trips_through_json():
    import json

    table = build_layer_table(build_model("resnet20", num_classes=10, input_shape=(3, 32, 32)), (3, 32, 32))
    back = LayerTable.from_dict(json.loads(json.dumps(table.to_dict())))
    policy = Policy.from_dict({"prune": {g.name: 0.5 for g in table.prunable_groups[:3]}, "w_bits": {"fc": 4}})
    assert back.coupling == table.coupling and back.input_shape == table.input_shape
    assert back.totals(policy) == table.totals(policy) != table.totals()
    assert np.array_equal(back.resolve(policy).cin, table.resolve(policy).cin)


def test_mobilenetv2_depthwise_follows_and_inverted_residuals_couple():
    table = build_layer_table(build_model("mobilenetv2", num_classes=10, input_shape=(3, 32, 32)), (3, 32, 32))
    expand = table.group("features.2.conv.0.0")
    assert "features.2.conv.1.0" in expand.followers  # the depthwise conv is indexed by the expansion channels
    assert table.kind[table.index("features.2.conv.1.0")] == "dwconv"
    stage = table.group("features.4.conv.2.0")  # 32-channel stage: 3 blocks joined by residual adds
    assert stage.producers == ("features.4.conv.2.0", "features.5.conv.2.0", "features.6.conv.2.0")
    shapes = table.resolve(Policy(prune={"features.2.conv.0.0": 0.5}))
    dw = table.index("features.2.conv.1.0")
    assert shapes.cin[0, dw] == shapes.cout[0, dw] == shapes.groups[0, dw] == 48


def test_mobilenetv2_stem_stride_halves_the_maps_below_64_pixels_when_asked():
    """Below 64x64 the stem keeps the resolution (CIFAR style) unless ``stem_stride`` says 2."""
    tables = {s: build_layer_table(build_model("mobilenetv2", num_classes=10, input_shape=(1, 28, 28), width_mult=0.35,
                                               stem_stride=s), (1, 28, 28)) for s in (None, 2)}
    assert [_row(tables[s], "features.0.0")["h_out"] for s in (None, 2)] == [28, 14]
    assert _row(tables[2], "features.1.conv.0.0")["macs"] * 4 == _row(tables[None], "features.1.conv.0.0")["macs"]


def test_resolve_is_vectorised_and_bits_enter_bitops():
    g = [CouplingGroup("c1", 16, ("c1",), ("fc",))]
    table = LayerTable.from_rows(
        [dict(name="c1", kind="conv", cin=3, cout=16, kh=3, kw=3, h_in=8, w_in=8, h_out=8, w_out=8, out_group="c1"),
         dict(name="fc", kind="dense", cin=64, cout=10, in_group="c1", in_factor=4, has_bias=True)], g)
    shapes = table.resolve([Policy(), Policy(prune={"c1": 0.5}, w_bits={"c1": 8}, a_bits={"c1": 8})])
    assert shapes.cout[:, 0].tolist() == [16, 8]
    assert shapes.cin[:, 1].tolist() == [64, 32]
    assert shapes.macs[1, 0] == 8 * 8 * 8 * 3 * 9
    assert shapes.bitops[1, 0] == shapes.macs[1, 0] * 64 and shapes.bitops[0, 0] == shapes.macs[0, 0] * 1024


def test_resolve_reads_policies_that_set_the_same_keys_or_different_ones_alike():
    """Policies that all set the same layers take a fast path (one lookup call per policy); a
    batch where they differ, or set one layer, or none, reads the same values per policy."""
    g = [CouplingGroup("c1", 16, ("c1",), ("c2",)), CouplingGroup("c2", 8, ("c2",), ("fc",))]
    table = LayerTable.from_rows(
        [dict(name="c1", kind="conv", cin=3, cout=16, kh=3, kw=3, h_in=8, w_in=8, h_out=8, w_out=8, out_group="c1"),
         dict(name="c2", kind="conv", cin=16, cout=8, kh=3, kw=3, h_in=8, w_in=8, h_out=8, w_out=8, in_group="c1",
              out_group="c2"),
         dict(name="pool", kind="pool", cin=8, cout=8, kh=8, kw=8, h_in=8, w_in=8, h_out=1, w_out=1, in_group="c2",
              out_group="c2"),
         dict(name="fc", kind="dense", cin=8, cout=10, in_group="c2", has_bias=True)], g)
    same = [Policy(prune={"c1": r, "c2": r / 2}, w_bits={"c1": b, "c2": 4}, a_bits={"c1": 8, "fc": b})
            for r, b in ((0.25, 8), (0.5, 4), (0.0, 32))]
    mixed = same + [Policy(prune={"c2": 0.5}, w_bits={"fc": 8}), Policy(a_bits={"pool": 8}), Policy()]
    for batch in (same, mixed, mixed[3:4], mixed[4:]):
        together = table.resolve(batch)
        for i, pol in enumerate(batch):
            alone = table.resolve([pol])
            for name in ("cout", "cin", "w_bits", "a_bits"):
                assert getattr(together, name)[i].tolist() == getattr(alone, name)[0].tolist()
            assert together.w_bits[i].tolist() == [pol.w_bits.get(n, 32) for n in table.names]
            assert together.a_bits[i].tolist() == [pol.a_bits.get(n, 32) for n in table.names]
            assert together.cout[i, 1] == kept_channels(8, pol.prune.get("c2", 0.0))


def test_kept_channels_rounds_and_keeps_one():
    assert kept_channels(16, 0.5) == 8
    assert kept_channels(10, 0.25) == 8  # 7.5 rounds up
    assert kept_channels(3, 0.99) == 1


def test_producers_into_one_concat_are_groups_of_their_own_read_at_their_offsets():
    from mindspore import nn, ops

    from automc.policy import Policy

    class Cat(nn.Cell):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 8, 3)
            self.b = nn.Conv2d(3, 8, 3)
            self.c = nn.Conv2d(16, 4, 1)

        def construct(self, x):
            return self.c(ops.concat((self.a(x), self.b(x)), axis=1)).mean((2, 3))

    table = build_layer_table(Cat(), (3, 8, 8))
    assert table.group("a").prunable and table.group("b").prunable
    assert table.group("b").map_of("c", "in") == ((8, 0, 8, 1),)  # b's channels sit at 8..15 of c's input
    shapes = table.resolve(Policy(prune={"a": 0.5, "b": 0.25}))
    assert shapes.cin[0, table.index("c")] == 4 + 6 and shapes.cout[0, table.index("c.concat")] == 10
    # the concat copies both outputs: a row of its own (memory traffic, no MACs) before its reader
    assert table.names == ("a", "b", "c.concat", "c")
    concat = _row(table, "c.concat")
    # pad_mode "same": the 8x8 map stays 8x8
    assert (concat["kind"], concat["cin"], concat["cout"], concat["h_in"], concat["macs"]) == ("concat", 16, 16, 8, 0)


def test_a_ghost_module_concat_of_a_conv_and_its_depthwise_features_gets_its_row():
    """GhostNet: ``concat(x1, dw(x1))`` joins one producer's channels with features made from
    them (no second producer): the reader's input is a whole multiple of the producer's width."""
    from mindspore import nn, ops

    class Ghost(nn.Cell):
        def __init__(self):
            super().__init__()
            self.primary = nn.Conv2d(3, 8, 1)
            self.cheap = nn.Conv2d(8, 8, 3, group=8)
            self.c = nn.Conv2d(16, 4, 1)

        def construct(self, x):
            x1 = self.primary(x)
            return self.c(ops.concat((x1, self.cheap(x1)), axis=1)).mean((2, 3))

    table = build_layer_table(Ghost(), (3, 8, 8))
    assert table.names == ("primary", "cheap", "c.concat", "c")
    assert (_row(table, "c.concat")["cin"], _row(table, "c.concat")["h_in"]) == (16, 8)


def test_ghost_modules_summed_along_an_identity_chain_get_a_concat_and_an_add_each():
    """Two ghost bottlenecks with identity shortcuts: the second reads stem + ghost(1), the head
    stem + ghost(1) + ghost(2). Each ghost module reaches its reader twice per channel (as is and
    through its depthwise copy), which tells a sum of ghost modules from a concat of producers
    of the same total width. The deep GhostNet keeps all of its 32 ghost modules and 16 adds
    (untrained maps grow to 1e20 there without the trace's per-layer rescaling)."""
    from mindcv.models import create_model
    from mindspore import nn, ops

    class Ghost(nn.Cell):
        def __init__(self, c):
            super().__init__()
            self.primary = nn.Conv2d(c, c // 2, 1)
            self.cheap = nn.Conv2d(c // 2, c // 2, 3, group=c // 2)

        def construct(self, x):
            x1 = self.primary(x)
            return ops.concat((x1, self.cheap(x1)), axis=1) + x

    class Net(nn.Cell):
        def __init__(self):
            super().__init__()
            self.stem, self.g1, self.g2, self.head = nn.Conv2d(3, 8, 3), Ghost(8), Ghost(8), nn.Conv2d(8, 4, 1)

        def construct(self, x):
            return self.head(self.g2(self.g1(self.stem(x)))).mean((2, 3))

    table = build_layer_table(Net(), (3, 8, 8))
    assert table.names == ("stem", "g1.primary", "g1.cheap", "g2.primary.concat", "g2.primary.add", "g2.primary",
                           "g2.cheap", "head.concat", "head.add", "head")
    assert all(_row(table, n)["cin"] == 8 for n in ("g2.primary.add", "head.concat", "head.add"))
    ghostnet = build_layer_table(create_model("ghostnet_100", num_classes=10), (3, 64, 64))
    assert (sum(k == "concat" for k in ghostnet.kind), sum(k == "add" for k in ghostnet.kind)) == (32, 16)


def test_squeezenets_fire_modules_get_one_concat_row_each():
    from mindcv.models import create_model

    table = build_layer_table(create_model("squeezenet1_1", num_classes=10), (3, 64, 64))
    concats = [r for r in table.rows() if r["kind"] == "concat"]
    assert len(concats) == 8  # fire2-fire9: expand 1x1 and expand 3x3 concatenated
    expands = {r["name"]: r["cout"] for r in table.rows() if "expand" in r["name"] and r["kind"] == "conv"}
    assert sum(expands.values()) == sum(r["cout"] for r in concats)


def test_nested_concats_and_channel_shuffles_get_rows_where_they_run():
    """``ops.concat`` and ``ops.transpose`` in ``construct`` are no cells: the trace records their
    primitives' calls. Inception's branch concatenated inside the block's concat gets a row of its
    own; ShuffleNetV2's channel shuffle (reshape, transpose, reshape, split) copies the whole map:
    a ``shuffle`` row over the block input it reorders, beside the block's concat."""
    from mindcv.models import create_model
    from mindspore import nn, ops

    class Block(nn.Cell):
        def __init__(self):
            super().__init__()
            self.a, self.b1, self.b2 = nn.Conv2d(8, 4, 1), nn.Conv2d(8, 2, (1, 3)), nn.Conv2d(8, 2, (3, 1))
            self.main = nn.Conv2d(4, 4, 1)
            self.head = nn.Conv2d(8, 4, 1)

        def construct(self, x):
            y = ops.concat((self.a(x), ops.concat((self.b1(x), self.b2(x)), axis=1)), axis=1)  # 4 + (2 + 2)
            n, c, h, w = y.shape
            y = ops.reshape(ops.transpose(ops.reshape(y, (n * c // 2, 2, h * w)), (1, 0, 2)), (2, -1, c // 2, h, w))
            return self.head(ops.concat((y[0], self.main(y[1])), axis=1)).mean((2, 3))

    class Net(nn.Cell):
        def __init__(self):
            super().__init__()
            self.stem, self.block = nn.Conv2d(3, 8, 3), Block()

        def construct(self, x):
            return self.block(self.stem(x))

    table = build_layer_table(Net(), (3, 8, 8))
    assert table.names == ("stem", "block.a", "block.b1", "block.b2", "block.main.concat.0", "block.main.concat.1",
                           "block.main.shuffle", "block.main", "block.head.concat", "block.head")
    rows = {r["name"]: (r["kind"], r["cin"], r["cout"], r["h_in"], r["macs"]) for r in table.rows()}
    assert rows["block.main.concat.0"] == ("concat", 4, 4, 8, 0)  # the branch's 1x3 and 3x1 outputs
    assert rows["block.main.concat.1"] == ("concat", 8, 8, 8, 0)  # the block's
    assert rows["block.main.shuffle"] == ("shuffle", 8, 8, 8, 0)
    assert rows["block.head.concat"] == ("concat", 8, 8, 8, 0)
    shufflenet = build_layer_table(create_model("shufflenet_v2_x1_0", num_classes=10), (3, 64, 64))
    # 16 blocks, each ending in a concat; the 13 of stride 1 shuffle their input
    assert (sum(k == "concat" for k in shufflenet.kind), sum(k == "shuffle" for k in shufflenet.kind)) == (16, 13)


def test_a_concat_no_primitive_shows_is_still_found_by_the_probe():
    """Channels stacked and reshaped (no concat primitive runs): the probe sees the reader's input
    holding two producers' channels at new indices, widths adding up: one concat row."""
    from mindspore import nn, ops

    class Stack(nn.Cell):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Conv2d(3, 8, 3), nn.Conv2d(3, 8, 3), nn.Conv2d(16, 4, 1)

        def construct(self, x):
            y = ops.stack((self.a(x), self.b(x)), axis=1)  # (n, 2, 8, h, w): a's channels, then b's
            return self.c(ops.reshape(y, (y.shape[0], 16, y.shape[3], y.shape[4]))).mean((2, 3))

    from automc.analysis.probe import trace_network

    assert trace_network(Stack(), (3, 8, 8)).ops == []  # no concat primitive ran
    table = build_layer_table(Stack(), (3, 8, 8))
    assert table.names == ("a", "b", "c.concat", "c")
    assert _row(table, "c.concat")["cin"] == 16


def test_a_squeeze_excite_gate_gets_a_mul_row_over_the_map_it_scales():
    """``x * sigmoid(fc2(relu(fc1(mean(x)))))`` in ``construct``: the multiply is no cell; it reads
    and writes the whole map (an element-wise op on a device), so it gets a row after the excite
    conv, in the map's channel group. A classifier after a global pool is no gate."""
    from mindcv.models import create_model
    from mindspore import nn, ops

    class SE(nn.Cell):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 16, 3)
            self.reduce = nn.Conv2d(16, 4, 1, has_bias=True)
            self.expand = nn.Conv2d(4, 16, 1, has_bias=True)
            self.fc = nn.Dense(16, 10)

        def construct(self, x):
            x = self.conv(x)
            gate = ops.sigmoid(self.expand(ops.relu(self.reduce(x.mean((2, 3), keep_dims=True)))))
            return self.fc((x * gate).mean((2, 3)))

    table = build_layer_table(SE(), (3, 8, 8))
    assert table.names == ("conv", "reduce.pool", "reduce", "expand", "expand.mul", "fc.pool", "fc")
    mul = _row(table, "expand.mul")
    assert (mul["kind"], mul["cin"], mul["h_in"], mul["h_out"], mul["macs"]) == ("mul", 16, 8, 8, 0)
    assert mul["in_group"] == mul["out_group"] == "conv"  # pruning conv shrinks the multiply
    small = build_layer_table(create_model("mobilenet_v3_small_100", num_classes=10), (3, 64, 64))
    assert sum(k == "mul" for k in small.kind) == 9  # its nine squeeze-and-excite blocks


def test_a_smooth_activation_gets_an_act_row_and_a_clamp_does_not():
    """conv -> BN -> hard-swish: an ``act`` row over the conv's output, in its channel group (a
    runtime that fuses only clamps runs it as an op); conv -> BN -> ReLU: only ``has_act``."""
    from mindcv.models import create_model
    from mindspore import nn

    class Net(nn.Cell):
        def __init__(self):
            super().__init__()
            self.a, self.bn_a, self.hs = nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.HSwish()
            self.b, self.bn_b, self.relu = nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8), nn.ReLU()
            self.fc = nn.Dense(8, 10)

        def construct(self, x):
            x = self.relu(self.bn_b(self.b(self.hs(self.bn_a(self.a(x))))))
            return self.fc(x.mean((2, 3)))

    table = build_layer_table(Net(), (3, 8, 8))
    assert table.names == ("a", "a.act", "b", "fc.pool", "fc")
    act = _row(table, "a.act")
    assert (act["kind"], act["cin"], act["h_out"], act["macs"], act["out_group"]) == ("act", 8, 8, 0, "a")
    assert table.has_act[table.names.index("a")] and table.has_act[table.names.index("b")]
    assert table.resolve(Policy(prune={"a": 0.5})).cout[0, 1] == 4  # pruning the conv shrinks its activation
    large = build_layer_table(create_model("mobilenet_v3_large_100", num_classes=10), (3, 64, 64))
    # hard-swish after the stem, the expand and depthwise convs of the last nine blocks and the
    # last conv; hard-sigmoid on the eight gates; hard-swish after the 1280-wide dense layer
    assert sum(k == "act" for k in large.kind) == 1 + 18 + 1 + 8 + 1


def test_the_trace_runs_mindspores_host_pipeline_synchronously(monkeypatch):
    """MindSpore reads MS_DEV_HOST_BLOCKING_RUN at the first graph it runs; when that is the layer
    table's trace (a search with a cached baseline), training later ran ~6x slower without it."""
    import os

    monkeypatch.delenv("MS_DEV_HOST_BLOCKING_RUN", raising=False)
    build_layer_table(build_model("lenet", num_classes=10, input_shape=(1, 8, 8)), (1, 8, 8))
    assert os.environ.get("MS_DEV_HOST_BLOCKING_RUN") == "1"
