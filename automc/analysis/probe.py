"""Watch a network run and learn which of its layers read which producer channels, at which
input positions, for any ``nn.Cell``.

MindSpore has no public graph tracer for arbitrary Python ``construct`` code, and Tensor methods
(``x + y``, ``x[:, :n]``, ``x.reshape``) never pass through Python, so the analysis watches the
network run instead (PyNative forward hooks on the leaf cells):

1. one clean forward pass records every leaf cell's input and output (and the calls of the
   concat and transpose primitives between leaf cells, for the layer table's rows);
2. every *producer* (a conv or a dense layer; and a LayerNorm, which mixes channels) is probed
   in three samples of a batched pass, other channel-mixing layers replaying their clean
   outputs: all its output channels shifted by ``d`` (which positions it reaches), channel
   ``k`` shifted by ``d * (1 + k / C)`` and by ``d * (2 - k / C)`` (which channel);
3. at every leaf's input, with ``d1``, ``d2`` the coded samples' changes minus the first's,
   position ``i`` carries producer channel ``k = C * d1 / (d1 + d2)``. The ops between layers
   are affine in the shift while tracing (batch-norm in inference, pooling of a shift,
   depthwise convs, element-wise adds and gates, a ReLU past its kink; activation cells act as
   the identity), so ``k`` is exact there, and the same at every element of the map. A
   position two channels reach, or a non-linear op in ``construct`` (``ops.sigmoid``), breaks
   that; such a producer is probed again bit by bit (one sample per bit of ``k``, read as
   reached or not), and what still names no channel is marked mixed.

The result is a *channel index map* per (producer, leaf): ``src[i]`` is the producer channel at
the leaf's input position ``i`` (along the leaf's channel axis: ``channel_axis``), ``UNREACHED``
or ``MIXED``. Concats, slices, channel shuffles, flattens and
ghost modules all show up as maps, with no op special-cased. ``automc.analysis.coupling`` turns
the maps into coupling groups.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

#: samples per batched pass (a producer's samples stay in one pass): bounds memory, every leaf
#: keeps its probe input
PROBE_CHUNK = 33
UNREACHED, MIXED = -1, -2
#: a change this small relative to a channel's clean magnitude is a reach: a batched pass with no
#: probe reproduces the clean pass bit for bit (measured on ConvNeXt, DenseNet, MobileNetV3), and
#: ConvNeXt's layer scale (1e-6) leaves a probe 1e-5 of the stream it joins
_NOISE = 1e-9
# While tracing, element-wise activation cells act as the identity (in the clean pass and the
# probes alike), so a channel that a ReLU happens to clamp for the random input is still seen.
ACTIVATIONS = frozenset({"ReLU", "ReLU6", "LeakyReLU", "HSwish", "HSigmoid", "Sigmoid", "Tanh", "GELU",
                         "SiLU", "Swish", "Mish", "ELU", "Hardtanh", "Softsign", "Softplus", "CELU", "SeLU"})
#: activations that are more than a clamp: runtimes that fuse only ReLU/ReLU6 into a conv run them
#: as their own element-wise op (an ``act`` row); ``Swish`` is mindcv's cell for x * sigmoid(x)
SMOOTH_ACTIVATIONS = frozenset({"HSwish", "HSigmoid", "Sigmoid", "Tanh", "GELU", "SiLU", "Swish", "Mish", "ELU",
                                "Softsign", "Softplus", "CELU", "SeLU"})
CLAMPS = frozenset({"ReLU", "ReLU6"})
#: leaf kinds that mix channels: while probing they replay their clean output (plus their own
#: probe), so a probe travels only through channel-wise ops
MIXING = frozenset({"conv", "dense", "groupconv", "norm", "other"})


def kind_of(cell) -> str:
    """The trace's kind of a leaf cell: conv, dwconv, groupconv, dense, bn, norm (LayerNorm),
    pool, paramless or other (a cell with parameters the analysis cannot slice)."""
    from mindspore import nn

    if isinstance(cell, nn.Conv2d):
        if cell.group == 1:
            return "conv"
        if cell.group == cell.in_channels == cell.out_channels:
            return "dwconv"
        return "groupconv"
    if isinstance(cell, nn.Dense):
        return "dense"
    if isinstance(cell, (nn.BatchNorm2d, nn.BatchNorm1d)):
        return "bn"
    if isinstance(cell, nn.LayerNorm):
        return "norm"
    if isinstance(cell, (nn.MaxPool2d, nn.AvgPool2d)):
        return "pool"
    if len(list(cell.get_parameters(expand=False))) == 0:
        return "paramless"
    return "other"


def channel_axis(cell, ndim: int) -> int | None:
    """The axis of a leaf's input (or output) that holds channels: the last for ``nn.Dense`` and
    ``nn.LayerNorm`` (channels-last maps, tokens; 1 for a LayerNorm with ``norm_axis`` 1, as
    mindcv's channels-first one), 1 for convs, batch-norm and pooling; None for cells that work
    on any layout (activations, dropout, identity): the probe tells from the data."""
    from mindspore import nn

    if isinstance(cell, nn.LayerNorm):
        return 1 if getattr(cell, "norm_axis", -1) == 1 else ndim - 1
    if isinstance(cell, nn.Dense):
        return ndim - 1
    if ndim < 3 or kind_of(cell) in ("conv", "dwconv", "groupconv", "bn", "pool"):
        return 1
    return None


@dataclass
class Node:
    """One node of the trace: a leaf cell, or one call of a parameterless leaf cell (``name:k``
    for its k-th call after the first: an activation or pooling cell that ``construct`` calls
    twice is a function applied twice, not a shared layer)."""

    name: str
    cell: Any
    calls: int = 0
    order: int = -1
    x: np.ndarray | None = None
    y: np.ndarray | None = None
    probe_x: np.ndarray | None = None
    #: the channel axis of a layout-agnostic cell's input and output, once the probe found it
    found_axis: int | None = None

    @property
    def kind(self) -> str:
        return kind_of(self.cell)

    def axis(self, ndim: int) -> int:
        axis = channel_axis(self.cell, ndim)
        return axis if axis is not None else (self.found_axis if self.found_axis is not None else 1)

    @property
    def in_channels(self) -> int:
        return 0 if self.x is None or self.x.ndim < 2 else int(self.x.shape[self.axis(self.x.ndim)])

    @property
    def out_channels(self) -> int:
        return 0 if self.y is None or self.y.ndim < 2 else int(self.y.shape[self.axis(self.y.ndim)])


@dataclass
class NetworkTrace:
    """What the probe learned: nodes in execution order and the channel index maps."""

    nodes: list[Node]
    producers: list[str] = field(default_factory=list)
    #: leaf -> producer -> src: the producer's channel at each input position of the leaf
    #: (``UNREACHED``, ``MIXED``); only pairs where some position is reached
    reads: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    output_aligned: set[str] = field(default_factory=set)  # producers whose channels reach the output
    #: functional ops called between leaf cells in the clean pass: (leaves run before it, op, input
    #: shapes, output shape), op "concat" or "transpose"
    ops: list[tuple[int, str, tuple[tuple[int, ...], ...], tuple[int, ...]]] = field(default_factory=list)

    @functools.cached_property
    def _by_name(self) -> dict[str, Node]:
        return {n.name: n for n in self.nodes}

    def node(self, name: str) -> Node:
        return self._by_name[name]


#: (module, primitive class, op) whose calls the clean pass records: ``ops.concat``/``ops.cat``
#: (a pyboost primitive), ``ops.Concat()``, ``ops.transpose`` and ``Tensor.transpose``
_RECORDED_PRIMITIVES = (("mindspore.ops.auto_generate.pyboost_inner_prim", "_PyboostConcatPrim", "concat"),
                        ("mindspore.ops.auto_generate.gen_ops_prim", "Concat", "concat"),
                        ("mindspore.ops.auto_generate.gen_ops_prim", "Transpose", "transpose"))


def _record_primitives(record) -> list[tuple[type, Any]]:
    """Wrap the recorded primitives' ``__call__`` so each call reports ``record(op, args, output)``;
    returns what ``_restore_primitives`` puts back. A primitive this MindSpore does not have is
    skipped (its concats still show in the channel maps)."""
    patched = []
    for module, name, op in _RECORDED_PRIMITIVES:
        try:
            cls = getattr(importlib.import_module(module), name, None)
        except ImportError:
            continue
        original = cls.__dict__.get("__call__") if cls is not None else None
        if original is None:
            continue

        def call(self, *args, _original=original, _op=op, **kwargs):
            out = _original(self, *args, **kwargs)
            record(_op, args, out)
            return out

        cls.__call__ = call
        patched.append((cls, original))
    return patched


def _restore_primitives(patched: list[tuple[type, Any]]) -> None:
    for cls, original in patched:
        cls.__call__ = original


def _shapes(args) -> tuple[tuple[int, ...], ...]:
    """Shapes of the tensors among a primitive call's arguments (a concat's list included)."""
    out = []
    for a in args:
        for t in a if isinstance(a, (list, tuple)) else (a,):
            if hasattr(t, "shape") and hasattr(t, "asnumpy"):
                out.append(tuple(int(d) for d in t.shape))
    return tuple(out)


def _per_channel(delta: np.ndarray, axis: int, sign: np.ndarray | None = None) -> np.ndarray:
    """``(samples, channels)``: each sample's change summed over every axis but ``axis`` (its
    absolute value, or signed by ``sign``, so a response whose sign varies over the map does not
    cancel)."""
    moved = np.moveaxis(delta, axis, 1).reshape(delta.shape[0], delta.shape[axis], -1).astype(np.float64)
    if sign is None:
        return np.abs(moved).sum(-1)
    return (moved * np.moveaxis(sign, axis, 1).reshape(moved.shape)).sum(-1)


def _samples(channels: int, mode: str) -> int:
    """How many samples ``_patterns`` gives a producer of ``channels`` channels."""
    return 3 if mode == "codes" else 1 + max(int(channels - 1).bit_length(), 1)


def _patterns(channels: int, d: float, mode: str) -> list[np.ndarray]:
    """The per-channel shifts of one producer's samples: ``codes``: all by ``d``, channel k by
    ``d * (1 + k / C)`` and by ``d * (2 - k / C)``; ``bits``: all, then channel k by ``d`` where
    bit j of k is set, one sample per bit."""
    if mode == "codes":
        code = np.arange(channels, dtype=np.float32) / channels
        return [np.full(channels, d, np.float32), d * (1 + code), d * (2 - code)]
    k = np.arange(channels)
    return [np.full(channels, d, np.float32)] + [
        np.where((k >> j) & 1, d, 0).astype(np.float32) for j in range(_samples(channels, mode) - 1)]


def _decode(delta: np.ndarray, axis: int, base: np.ndarray, channels: int, mode: str) -> np.ndarray:
    """Source channel at each input position of a leaf from one producer's samples' changes
    ``delta`` (module docstring): ``UNREACHED`` where the first sample left it (beyond float noise
    on ``base``, the clean input's per-channel magnitude: ``_NOISE``), ``MIXED`` where the codes do not name
    one channel.

    ``codes``: with ``d1 = up - all`` and ``d2 = down - all`` (both affine in the shift, also past
    a ReLU's kink), ``k = C * d1 / (d1 + d2)``, summed over the map and at every element alike. ``bits``: k's bit j is whether sample j reached
    the position (any monotone op between, a sigmoid gate included)."""
    reach = _per_channel(delta[:1], axis)[0]
    src = np.full(reach.shape, UNREACHED, dtype=np.int64)
    hit = reach > _NOISE * (base + base.mean() + 1e-30)
    if not hit.any():
        return src
    if mode == "codes":
        d1, d2 = delta[1:2] - delta[:1], delta[2:3] - delta[:1]
        sign = np.sign(d1 + d2)
        both = _per_channel(d1 + d2, axis, sign)[0]
        k = channels * _per_channel(d1, axis, sign)[0] / np.where(both > 0, both, 1.0)
        nearest = np.rint(k)
        ok = (both > 1e-3 * reach) & (np.abs(k - nearest) < 0.2) & (nearest >= 0) & (nearest < channels)
        # every element must name the same channel: an op that is not affine in the shift (x * x,
        # Swish with its sigmoid cell as identity) names different ones over the map
        e1 = np.moveaxis(d1[0], axis - 1, 0).reshape(len(src), -1).astype(np.float64)
        e12 = e1 + np.moveaxis(d2[0], axis - 1, 0).reshape(len(src), -1)
        strong = np.abs(e12) > 1e-3 * np.abs(e12).max(axis=1, keepdims=True)
        per_element = channels * e1 / np.where(strong, e12, 1.0)
        spread = np.where(strong, np.abs(per_element - nearest[:, None]), 0.0).max(axis=1)
        ok &= spread < 0.25
        src[hit] = np.where(ok, nearest, MIXED).astype(np.int64)[hit]
        return src
    bits = _per_channel(delta[1:], axis) > _NOISE * (base + base.mean() + 1e-30)
    k = (bits * (1 << np.arange(bits.shape[0]))[:, None]).sum(0)
    src[hit] = np.where(k < channels, k, MIXED)[hit]
    return src


def trace_network(net, input_shape: Sequence[int], *, seed: int = 0) -> NetworkTrace:
    """Run the probe described in the module docstring; ``net`` is left unchanged."""
    import mindspore as ms

    if ms.get_context("mode") != ms.PYNATIVE_MODE:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1, *input_shape)).astype(np.float32)

    leaves: dict[int, Node] = {}
    for name, cell in net.cells_and_names():
        if name and not cell.name_cells():
            leaves[id(cell)] = Node(name, cell)
    weightless = {k for k, leaf in leaves.items() if not list(leaf.cell.get_parameters(expand=False))}
    later_calls: dict[tuple[int, int], Node] = {}  # (cell, k): the k-th call of a parameterless cell, k >= 1
    state: dict[str, Any] = {"probing": False, "order": 0, "patterns": {}, "n": 0, "calls": {}}

    def node_of(cell) -> Node:
        """The node this call of ``cell`` runs as (calls are counted per forward pass, which
        runs the same calls in the same order every time)."""
        k = state["calls"].get(id(cell), 0)
        state["calls"][id(cell)] = k + 1
        if k == 0 or id(cell) not in weightless:  # a cell with parameters is one node: shared weights
            return leaves[id(cell)]
        if (id(cell), k) not in later_calls:
            later_calls[(id(cell), k)] = Node(f"{leaves[id(cell)].name}:{k}", cell)
        return later_calls[(id(cell), k)]

    ops_seen: list = []

    made_by: dict[int, tuple[str, Any]] = {}  # id of a tensor the clean pass made -> ("node", name) | ("op", index)
    keep_alive: list = []  # the tensors of made_by (their ids stay theirs)

    def made(tensor, source) -> None:
        made_by[id(tensor)] = source
        keep_alive.append(tensor)

    def record(op, args, out):  # the primitives are patched for the clean pass only
        if hasattr(out, "shape"):
            tensors = [t for a in args for t in (a if isinstance(a, (list, tuple)) else (a,)) if hasattr(t, "asnumpy")]
            sources = tuple(made_by.get(id(t)) for t in tensors)
            ops_seen.append((state["order"], op, _shapes(args), tuple(int(d) for d in out.shape), sources))
            made(out, ("op", len(ops_seen) - 1))

    def pre_hook(cell, inputs):
        state["mark"] = len(ops_seen)  # primitives a leaf cell calls inside itself are its own business

    def hook(cell, inputs, output):
        if not state["probing"]:
            del ops_seen[state.get("mark", len(ops_seen)):]
            result = _clean(cell, inputs, output)
            made(output if result is None else result, ("node", node_by_cell[id(cell)].name))
            return result
        return _probe(cell, inputs, output)

    node_by_cell: dict[int, Node] = {}

    def _clean(cell, inputs, output):
        node = node_by_cell[id(cell)] = node_of(cell)
        x_np = inputs[0].asnumpy() if inputs and hasattr(inputs[0], "asnumpy") else None
        activation = type(cell).__name__ in ACTIVATIONS
        node.x = x_np
        node.calls += 1
        node.order = state["order"]
        state["order"] += 1
        node.y = output.asnumpy() if hasattr(output, "asnumpy") else None
        if activation:
            return inputs[0]
        if node.y is not None and node.kind in ("conv", "dense", "groupconv"):
            # untrained weights with identity activations grow the maps block after block
            # (1e20 deep in GhostNet): a probe's change then drowns in float32 rounding. Each
            # layer's output at unit mean magnitude keeps every channel's change visible.
            node.y = node.y / np.float32(np.abs(node.y).mean() + 1e-12)
            return ms.Tensor(node.y)
        return None

    def _probe(cell, inputs, output):
        node = node_of(cell)
        node.probe_x = inputs[0].asnumpy() if inputs and hasattr(inputs[0], "asnumpy") else None
        if type(cell).__name__ in ACTIVATIONS:
            return inputs[0]
        if node.y is None or node.kind not in MIXING:
            return None
        replay = np.repeat(node.y, state["n"], axis=0)
        axis = node.axis(replay.ndim)
        for b, pattern in state["patterns"].get(node.name, ()):
            shape = [1] * (replay.ndim - 1)
            shape[axis - 1] = -1
            replay[b] += pattern.reshape(shape)
        return ms.Tensor(replay)

    handles = [leaf.cell.register_forward_hook(hook) for leaf in leaves.values()]
    handles += [leaf.cell.register_forward_pre_hook(pre_hook) for leaf in leaves.values()]
    was_training = net.training
    net.set_train(False)
    patched = _record_primitives(record)
    try:
        try:
            base_out = net(ms.Tensor(x)).asnumpy()
        finally:
            _restore_primitives(patched)
        nodes = [*leaves.values(), *later_calls.values()]
        executed = sorted((n for n in nodes if n.calls > 0), key=lambda n: n.order)
        # a LayerNorm is probed as well: it mixes channels (so it stops the probes of what it
        # reads), and its output carries its input's channels on (``automc.analysis.coupling``)
        producers = [n for n in executed if n.kind in ("conv", "dense", "groupconv", "norm") and n.y is not None
                     and n.y.ndim >= 2]
        trace = NetworkTrace(nodes=executed, producers=[p.name for p in producers], ops=ops_seen)
        for mode, todo in (("codes", producers), ("bits", None)):
            if todo is None:  # channels the codes could not name: once more, bit by bit
                todo = [p for p in producers if any((by.get(p.name, np.zeros(0)) == MIXED).any()
                                                    for by in trace.reads.values())]
            batch: list[Node] = []
            samples = 0
            for p in todo:
                batch.append(p)
                samples += _samples(p.out_channels, mode)
                if samples >= PROBE_CHUNK or p is todo[-1]:
                    _probe_pass(net, x, base_out, batch, executed, trace, state, mode)
                    batch, samples = [], 0
    finally:
        state["probing"] = False
        for handle in handles:
            handle.remove()
        net.set_train(was_training)
    return trace


def _probe_pass(net, x, base_out, producers: list[Node], executed: list[Node], trace: NetworkTrace,
                state: dict[str, Any], mode: str) -> None:
    """One batched pass probing ``producers`` (``_patterns`` samples each); decode every leaf's input."""
    import mindspore as ms

    patterns: dict[str, list[tuple[int, np.ndarray]]] = {}
    spans: list[tuple[Node, int, int]] = []
    n = 0
    for p in producers:
        d = float(10 * np.abs(p.y).mean() + 1.0)
        shifts = _patterns(p.out_channels, d, mode)
        patterns[p.name] = [(n + i, shift) for i, shift in enumerate(shifts)]
        spans.append((p, n, n + len(shifts)))
        n += len(shifts)
    state.update(probing=True, n=n, patterns=patterns, calls={})
    try:
        out = net(ms.Tensor(np.repeat(x, n, axis=0))).asnumpy()
    finally:
        state["probing"] = False
    for p, start, _ in spans:
        change = np.abs(out[start : start + 1] - base_out).max()
        if change > _NOISE * (np.abs(base_out).max() + 1e-30):
            trace.output_aligned.add(p.name)
    for leaf in executed:
        bx, px = leaf.x, leaf.probe_x
        leaf.probe_x = None
        if bx is None or px is None or px.shape[1:] != bx.shape[1:] or bx.ndim < 2:
            continue
        delta = px - bx
        if channel_axis(leaf.cell, bx.ndim) is None and leaf.found_axis is None:
            _find_axis(leaf, delta, spans, mode)
        axis = leaf.axis(bx.ndim)
        base = _per_channel(bx, axis)[0]
        reach_all = _per_channel(delta[[start for _, start, _ in spans]], axis)
        for j, (p, start, stop) in enumerate(spans):
            if leaf is p or not reach_all[j].any():
                continue
            src = _decode(delta[start:stop], axis, base, p.out_channels, mode)
            if (src != UNREACHED).any():
                trace.reads.setdefault(leaf.name, {})[p.name] = src


def _find_axis(leaf: Node, delta: np.ndarray, spans, mode: str) -> None:
    """A layout-agnostic leaf's channel axis (1 or the last): the one along which the producers
    this pass reached decode to the most distinct channels (along a spatial axis every position
    mixes all of them, which can average to one channel index); 1 on a tie; left unset while no
    code names a channel (a non-linear op between, until the bit-by-bit pass)."""
    named = {}
    for axis in (leaf.x.ndim - 1, 1):
        base = _per_channel(leaf.x, axis)[0]
        named[axis] = sum(len(np.unique(src[src >= 0])) for src in
                          (_decode(delta[start:stop], axis, base, p.out_channels, mode) for p, start, stop in spans))
    best = max(named, key=lambda axis: (named[axis], axis == 1))
    if named[best]:
        leaf.found_axis = best
