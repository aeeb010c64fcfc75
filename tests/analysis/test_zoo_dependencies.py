"""Channel dependencies of the networks users bring (issue 33), each on a small MindSpore network
written here: every group pruned at a random ratio, the network runs, and its re-trace equals the
table's prediction."""

from __future__ import annotations

import numpy as np

import mindspore as ms
from mindspore import nn, ops

from automc.algorithms.pruning import prune, refuse_breaking_groups
from automc.analysis import build_layer_table
from automc.policy import Policy


def _random_policy(table, seed=0, high=0.7):
    rng = np.random.default_rng(seed)
    return Policy(prune={g.name: float(rng.uniform(0.2, high)) for g in table.prunable_groups})


def _prunes_runs_and_retraces(net, shape, *, seed=0):
    """Prune every prunable group of ``net`` at a random ratio; the pruned network runs, is
    physically smaller, and its own trace equals the table's prediction. Returns the table (as a
    search builds it: groups whose pruning breaks the network refused)."""
    table = refuse_breaking_groups(net, build_layer_table(net, shape), shape)
    policy = _random_policy(table, seed)
    pruned = prune(net, table, policy)
    out = pruned(ms.Tensor(np.random.default_rng(seed).standard_normal((2, *shape)).astype(np.float32)))
    assert out.shape[0] == 2
    params = lambda n: sum(int(np.prod(p.shape)) for p in n.trainable_params())  # noqa: E731
    assert params(pruned) < params(net)
    traced = build_layer_table(pruned, shape)
    predicted = table.resolve(policy)
    assert traced.names == table.names
    np.testing.assert_array_equal(traced.cin, predicted.cin[0])
    np.testing.assert_array_equal(traced.cout, predicted.cout[0])
    assert traced.totals()["macs"] == table.totals(policy)["macs"] < table.totals()["macs"]
    return table


class _SharedReluBlock(nn.Cell):
    """A residual block as mindcv writes it: one ReLU cell called twice (after the first conv and
    after the add); and one max-pool cell called twice."""

    def __init__(self, c=8):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, pad_mode="same")
        self.conv1 = nn.Conv2d(c, c, 3, pad_mode="same")
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, pad_mode="same")
        self.bn2 = nn.BatchNorm2d(c)
        self.conv3 = nn.Conv2d(c, 2 * c, 3, pad_mode="same")
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2, 2)
        self.fc = nn.Dense(2 * c, 10)

    def construct(self, x):
        x = self.pool(self.stem(x))
        y = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(y)) + x)
        x = self.pool(self.conv3(x))
        return self.fc(x.mean((2, 3)))


def test_a_parameterless_cell_called_twice_is_two_calls_not_shared_weights():
    net = _SharedReluBlock()
    table = _prunes_runs_and_retraces(net, (3, 16, 16))
    prunable = {g.name for g in table.prunable_groups}
    # the block's inner channels and the residual stream are groups of their own, both prunable
    assert {"conv1", "stem", "conv3"} <= prunable, [(g.name, g.reason) for g in table.coupling]
    assert table.group("stem").producers == ("stem", "conv2")
    assert "shared weights" not in " ".join(g.reason for g in table.coupling)
    assert [n for n, k in zip(table.names, table.kind) if k == "pool"][:2] == ["pool", "pool:1"]
    cov = table.coverage()
    assert cov.share == 1.0 and not cov.blocked and cov.output_macs == table.rows()[-1]["macs"]


def test_a_group_whose_pruning_breaks_the_network_is_refused_with_the_error():
    """A coupling the analysis missed (here: the residual stream's second producer dropped from the
    group by hand) makes pruning the group break the forward pass: the check refuses that group,
    with MindSpore's error as the reason, and keeps the others prunable."""
    import dataclasses

    net = _SharedReluBlock()
    table = build_layer_table(net, (3, 16, 16))
    assert refuse_breaking_groups(net, table, (3, 16, 16)) is table  # nothing breaks: the same table
    wrong = dataclasses.replace(table, coupling=tuple(
        dataclasses.replace(g, producers=("stem",), followers=()) if g.name == "stem" else g for g in table.coupling))
    checked = refuse_breaking_groups(net, wrong, (3, 16, 16))
    stem = checked.group("stem")
    assert not stem.prunable and stem.blocked_by == ("breaks the network",)
    assert stem.reason.startswith("pruning it breaks the network (") and len(stem.reason) > 40
    assert {g.name for g in checked.prunable_groups} == {g.name for g in table.prunable_groups} - {"stem"}
    assert checked.coverage().blocked["breaks the network"][0] == 1


class _SharedConv(nn.Cell):
    """A conv with parameters called twice: shared weights, which pruning must leave alone."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, pad_mode="same")
        self.conv = nn.Conv2d(8, 8, 3, pad_mode="same")
        self.fc = nn.Dense(8, 10)

    def construct(self, x):
        x = self.conv(self.conv(self.stem(x)))
        return self.fc(x.mean((2, 3)))


def test_a_cell_with_parameters_called_twice_is_shared_weights_and_counted_as_such():
    table = build_layer_table(_SharedConv(), (3, 8, 8))
    shared = [g for g in table.coupling if "shared weights" in g.blocked_by]
    assert shared and all("conv is called 2 times (shared weights)" in g.reason for g in shared)
    cov = table.coverage()
    assert cov.share == 0.0 and cov.prunable_macs == 0
    assert sum(n for n, _ in cov.blocked.values()) == len([g for g in table.coupling if "output" not in g.blocked_by])
    assert any(g.blocked_by[0] == "shared weights" for g in shared) and "shared weights" in cov.to_text()


class _ChannelsLastMLP(nn.Cell):
    """A ConvNeXt-style block: a depthwise conv, then dense layers on a channels-last map."""

    def __init__(self, c=8):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 4, stride=4, pad_mode="valid")
        self.dw = nn.Conv2d(c, c, 7, pad_mode="same", group=c)
        self.pw1 = nn.Dense(c, 4 * c)
        self.act = nn.GELU()
        self.pw2 = nn.Dense(4 * c, c)
        self.head = nn.Dense(c, 10)

    def construct(self, x):
        x = self.stem(x)
        y = ops.transpose(self.dw(x), (0, 2, 3, 1))
        y = ops.transpose(self.pw2(self.act(self.pw1(y))), (0, 3, 1, 2))
        return self.head((x + y).mean((2, 3)))


def test_dense_layers_on_channels_last_maps_cost_once_per_position():
    """ConvNeXt's MLP: each nn.Dense multiplies every position of the 8x8 map: the table's MACs
    equal a count from hooks on every Conv2d/Dense (was once per sample: 0.14x on convnext_tiny)."""
    net = _ChannelsLastMLP()
    table = build_layer_table(net, (3, 32, 32))
    hooked: dict[str, int] = {}

    def hook(name):
        def count(cell, inputs, output):
            x = inputs[0]
            if isinstance(cell, nn.Dense):
                hooked[name] = int(np.prod(x.shape[:-1])) * cell.in_channels * cell.out_channels
            else:
                kh, kw = cell.kernel_size
                hooked[name] = int(np.prod(output.shape)) * (cell.in_channels // cell.group) * kh * kw
        return count

    for name, cell in net.cells_and_names():
        if isinstance(cell, (nn.Conv2d, nn.Dense)):
            cell.register_forward_hook(hook(name))
    net(ms.Tensor(np.zeros((1, 3, 32, 32), np.float32)))
    rows = {r["name"]: r for r in table.rows()}
    for name, macs in hooked.items():
        assert rows[name]["macs"] == macs, (name, rows[name], macs)
    assert (rows["pw1"]["h_out"], rows["pw1"]["w_out"]) == (8, 8)
    act = rows["pw1.act"]  # the GELU after it: over the dense layer's channels, at every position
    assert (act["cin"], act["h_out"], act["w_out"]) == (32, 8, 8)
    assert table.totals()["macs"] == sum(hooked.values())


class _GhostModule(nn.Cell):
    """GhostNet's module: a primary conv and cheap depthwise features of it, concatenated."""

    def __init__(self, cin, cout):
        super().__init__()
        self.primary = nn.Conv2d(cin, cout // 2, 1)
        self.cheap = nn.Conv2d(cout // 2, cout // 2, 3, pad_mode="same", group=cout // 2)

    def construct(self, x):
        y = self.primary(x)
        return ops.concat((y, self.cheap(y)), 1)


class _GhostSE(nn.Cell):
    """A ghost bottleneck with squeeze-and-excite: a shortcut conv added to a ghost module's concat
    output, and an excite gate multiplying a ghost concat (the two couplings GhostNet's groups broke on)."""

    def __init__(self, c=16):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, pad_mode="same")
        self.ghost1 = _GhostModule(c, 2 * c)
        self.reduce = nn.Conv2d(2 * c, c // 2, 1)
        self.expand = nn.Conv2d(c // 2, 2 * c, 1)
        self.ghost2 = _GhostModule(2 * c, c)
        self.shortcut = nn.Conv2d(c, c, 1)
        self.fc = nn.Dense(c, 10)

    def construct(self, x):
        x = self.stem(x)
        y = self.ghost1(x)
        y = y * ops.sigmoid(self.expand(ops.relu(self.reduce(y.mean((2, 3), keep_dims=True)))))
        y = self.ghost2(y) + self.shortcut(x)
        return self.fc(y.mean((2, 3)))


def test_a_ghost_bottleneck_with_squeeze_excite_couples_gate_shortcut_and_ghost_features():
    """Every group prunes and runs; none is refused by trying it (GhostNet's 13 were)."""
    net = _GhostSE()
    table = _prunes_runs_and_retraces(net, (3, 16, 16))
    assert not [g.name for g in table.coupling if "breaks the network" in g.blocked_by]
    # the excite gate multiplies ghost1's concat: its channel k scales both copies of ghost1's k
    assert table.group("ghost1.primary").producers == ("ghost1.primary", "expand")
    assert table.group("ghost1.primary").map_of("expand", "out") == ((0, 0, 16, 1), (16, 0, 16, 1))
    # the shortcut is added to ghost2's concat: two of its channels per class of ghost2's primary conv
    assert table.group("ghost2.primary").producers == ("ghost2.primary", "shortcut")
    assert table.coverage().share == 1.0


class _DenseChain(nn.Cell):
    """A DenseNet block: each layer reads the concat of the stem and every earlier layer (through
    a batch-norm over the whole concat), and adds its own channels to it; a transition after."""

    def __init__(self, c=8, growth=4, layers=3):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, pad_mode="same")
        self.norms = nn.CellList([nn.BatchNorm2d(c + i * growth) for i in range(layers)])
        self.convs = nn.CellList([nn.Conv2d(c + i * growth, growth, 3, pad_mode="same") for i in range(layers)])
        self.transition = nn.Conv2d(c + layers * growth, 8, 1)
        self.fc = nn.Dense(8, 10)

    def construct(self, x):
        x = self.stem(x)
        for norm, conv in zip(self.norms, self.convs):
            x = ops.concat((x, conv(ops.relu(norm(x)))), 1)
        return self.fc(self.transition(x).mean((2, 3)))


def test_a_densenet_concat_chain_prunes_each_layer_where_every_later_layer_reads_it():
    net = _DenseChain()
    table = _prunes_runs_and_retraces(net, (3, 8, 8))
    assert {"stem", "convs.0", "convs.1", "convs.2", "transition"} <= {g.name for g in table.prunable_groups}
    # convs.0's channels sit after the stem's in every later reader: batch-norms, convs, the transition
    assert table.group("convs.0").map_of("convs.2", "in") == ((8, 0, 4, 1),)
    assert set(table.group("convs.0").followers) == {"norms.1", "norms.2"}
    assert table.coverage().share == 1.0


class _Fire(nn.Cell):
    """SqueezeNet's fire module: a squeeze conv, two expand convs concatenated."""

    def __init__(self, cin, squeeze, expand):
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.e1 = nn.Conv2d(squeeze, expand, 1)
        self.e3 = nn.Conv2d(squeeze, expand, 3, pad_mode="same")

    def construct(self, x):
        x = ops.relu(self.squeeze(x))
        return ops.concat((ops.relu(self.e1(x)), ops.relu(self.e3(x))), 1)


class _Squeeze(nn.Cell):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, pad_mode="same")
        self.fire1 = _Fire(16, 4, 8)
        self.fire2 = _Fire(16, 6, 12)
        self.head = nn.Conv2d(24, 10, 1)

    def construct(self, x):
        return self.head(self.fire2(self.fire1(self.stem(x)))).mean((2, 3))


def test_fire_modules_prune_each_expand_conv_of_the_concat_on_its_own():
    table = _prunes_runs_and_retraces(_Squeeze(), (3, 8, 8))
    prunable = {g.name for g in table.prunable_groups}
    assert {"fire1.e1", "fire1.e3", "fire2.e1", "fire2.e3", "fire1.squeeze"} <= prunable
    assert table.group("fire1.e3").map_of("fire2.squeeze", "in") == ((8, 0, 8, 1),)


class _Shuffle(nn.Cell):
    """ShuffleNet v2's unit: split in halves, one branch through convs, concat, channel shuffle."""

    def __init__(self, c=8):
        super().__init__()
        self.stem = nn.Conv2d(3, 2 * c, 3, pad_mode="same")
        self.conv1 = nn.Conv2d(c, c, 1)
        self.dw = nn.Conv2d(c, c, 3, pad_mode="same", group=c)
        self.conv2 = nn.Conv2d(c, c, 1)
        self.head = nn.Conv2d(2 * c, 10, 1)

    def construct(self, x):
        x = self.stem(x)
        c = x.shape[1] // 2
        y = ops.concat((x[:, :c], self.conv2(self.dw(ops.relu(self.conv1(x[:, c:]))))), 1)
        n, _, h, w = y.shape
        y = ops.transpose(y.reshape(n, 2, c, h, w), (0, 2, 1, 3, 4)).reshape(n, 2 * c, h, w)
        return self.head(y).mean((2, 3))


def test_a_split_and_channel_shuffle_keep_the_branch_prunable_and_refuse_what_they_move():
    """The branch's inner channels are prunable; the stem's halves are read unevenly (a split) and
    the branch output is moved by the shuffle: refused, with the reason, and nothing breaks."""
    table = _prunes_runs_and_retraces(_Shuffle(), (3, 8, 8))
    assert table.group("conv1").prunable
    stem = table.group("stem")
    assert not stem.prunable and "unevenly" in stem.reason and stem.blocked_by == ("re-indexed",)


class _GroupedBlock(nn.Cell):
    """RegNet-X's block: 1x1 conv, 3x3 grouped conv (group width 4), 1x1 conv, residual add."""

    def __init__(self, c=16, groups=4):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, pad_mode="same")
        self.conv1 = nn.Conv2d(c, c, 1)
        self.grouped = nn.Conv2d(c, c, 3, pad_mode="same", group=groups)
        self.conv3 = nn.Conv2d(c, c, 1)
        self.fc = nn.Dense(c, 10)

    def construct(self, x):
        x = self.stem(x)
        x = x + self.conv3(ops.relu(self.grouped(ops.relu(self.conv1(x)))))
        return self.fc(x.mean((2, 3)))


def test_a_grouped_conv_keeps_the_same_number_of_channels_in_every_conv_group():
    net = _GroupedBlock()
    table = _prunes_runs_and_retraces(net, (3, 8, 8))
    assert table.group("conv1").divisions == 4 and table.group("grouped").divisions == 4
    assert {"conv1", "grouped", "stem"} <= {g.name for g in table.prunable_groups}
    from automc.policy import Policy

    row = table.index("grouped")
    shapes = table.resolve(Policy(prune={"conv1": 0.3, "grouped": 0.6}))
    # 4 per group: 0.3 keeps 3 in each (12), 0.6 keeps 2 in each (8); the conv keeps its 4 groups
    assert (shapes.cin[0, row], shapes.cout[0, row], shapes.groups[0, row]) == (12, 8, 4)
    pruned = prune(net, table, Policy(prune={"conv1": 0.3, "grouped": 0.6}))
    assert pruned.grouped.group == 4 and pruned.grouped.weight.shape == (8, 3, 3, 3)


class _ConvNeXtBlock(nn.Cell):
    """ConvNeXt's block as mindcv writes it: depthwise conv, permute to channels-last, LayerNorm,
    Dense / GELU / Dense, a layer scale (the block's own parameter), permute back, residual add."""

    def __init__(self, c):
        super().__init__()
        self.dw = nn.Conv2d(c, c, 7, pad_mode="same", group=c)
        self.norm = nn.LayerNorm((c,), epsilon=1e-6)
        self.pw1 = nn.Dense(c, 4 * c)
        self.act = nn.GELU()
        self.pw2 = nn.Dense(4 * c, c)
        self.gamma_ = ms.Parameter(ms.Tensor(np.full(c, 1e-6, np.float32)))

    def construct(self, x):
        y = ops.transpose(self.dw(x), (0, 2, 3, 1))
        y = self.gamma_ * self.pw2(self.act(self.pw1(self.norm(y))))
        return x + ops.transpose(y, (0, 3, 1, 2))


class _ConvNeXt(nn.Cell):
    """A stem whose LayerNorm is channels-first (mindcv's ``ConvNextLayerNorm``), two blocks, a head."""

    def __init__(self, c=8):
        super().__init__()
        from mindcv.models.convnext import ConvNextLayerNorm

        self.stem = nn.Conv2d(3, c, 4, stride=4, pad_mode="valid")
        self.stem_norm = ConvNextLayerNorm((c,), epsilon=1e-6, norm_axis=1)
        self.blocks = nn.SequentialCell([_ConvNeXtBlock(c), _ConvNeXtBlock(c)])
        self.head = nn.Dense(c, 10)

    def construct(self, x):
        return self.head(self.blocks(self.stem_norm(self.stem(x))).mean((2, 3)))


def test_a_convnext_block_slices_its_layernorms_and_layer_scale_with_the_stream():
    """The residual stream passes LayerNorms (channels-first and -last) and the layer scales
    (1e-6, which leave a probe 1e-6 of the stream): one group, with the norms as followers, and
    each MLP's hidden channels (Dense on a channels-last map) a group of their own."""
    net = _ConvNeXt()
    table = _prunes_runs_and_retraces(net, (3, 32, 32))
    stream = table.group("stem")
    assert stream.prunable and stream.producers == ("stem", "blocks.0.pw2", "blocks.1.pw2")
    assert set(stream.followers) == {"stem_norm", "blocks.0.dw", "blocks.0.norm", "blocks.1.dw", "blocks.1.norm"}
    assert table.group("blocks.0.pw1").prunable and table.coverage().share == 1.0
    from automc.policy import Policy

    pruned = prune(net, table, Policy(prune={"stem": 0.5}))
    block = pruned.blocks[1]
    assert block.gamma_.shape == (4,) and block.norm.gamma.shape == (4,) and pruned.stem_norm.beta.shape == (4,)
