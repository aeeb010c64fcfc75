"""Find a network's layers and its coupled channels by probing it, for any ``nn.Cell``.

MindSpore has no public graph tracer for arbitrary Python ``construct`` code, so the analysis
watches the network run instead (PyNative forward hooks on the leaf cells):

1. one clean forward pass records every leaf cell's input and output;
2. for each *producer* (a dense conv or a dense layer) a few output channels are perturbed, one
   at a time, by adding noise to that channel's filter, and the pass is repeated;
3. a leaf whose input changes in exactly that channel (or, after a flatten, exactly that
   channel's block of features) reads the producer's channel space: a *consumer* (conv/dense)
   or a *follower* (batch-norm, depthwise conv, pooling: channel-wise ops that keep the index).

Producers whose channels reach the same consumer (through a residual add, say) fall into one
coupling group (union-find), exactly the groups that must be pruned together. A group is marked
not prunable, with the reason, when its channels reach the network output, a layer type that
cannot be sliced, a shared (re-used) cell, or are re-indexed on the way (concat, shuffle).

Functional ops in ``construct`` (``ops.concat``, ``ops.transpose``) are no cells: the clean pass
also records the calls of their primitives between leaf cells (``NetworkTrace.ops``), so every
channel concat and every channel shuffle becomes a row of the table, nested ones included.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from automc.analysis.layer_table import CouplingGroup, LayerTable

PROBES_PER_PRODUCER = 2
#: probes per batched pass: bounds memory (every leaf keeps its probe input; ResNet-50 at
#: 224x224 in one pass of all 216 probes needs over 20 GiB)
PROBE_CHUNK = 32
# While tracing, element-wise activation cells act as the identity (in the clean pass and the
# probes alike), so a channel that a ReLU happens to clamp for the random input is still seen.
ACTIVATIONS = frozenset({"ReLU", "ReLU6", "LeakyReLU", "HSwish", "HSigmoid", "Sigmoid", "Tanh", "GELU",
                         "SiLU", "Mish", "ELU", "Hardtanh", "Softsign", "Softplus", "CELU", "SeLU"})
#: activations that are more than a clamp: runtimes that fuse only ReLU/ReLU6 into a conv run them
#: as their own element-wise op (an ``act`` row); ``Swish`` is mindcv's cell for x * sigmoid(x)
SMOOTH_ACTIVATIONS = frozenset({"HSwish", "HSigmoid", "Sigmoid", "Tanh", "GELU", "SiLU", "Swish", "Mish", "ELU",
                                "Softsign", "Softplus", "CELU", "SeLU"})
_CLAMPS = frozenset({"ReLU", "ReLU6"})


@dataclass
class _Leaf:
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


@dataclass
class _Relation:
    """How one leaf relates to one producer's channel space."""

    consumer: bool = False
    follower: bool = False
    in_factor: int = 1
    remapped: bool = False
    #: most of the leaf's input channels one remapped producer channel reached: 2 where a ghost
    #: module carries it both as is and through its cheap depthwise op, 1 through a concat or shuffle
    copies: int = 0


@dataclass
class NetworkTrace:
    """What the probe learned: leaf cells in execution order and their channel relations."""

    leaves: list[_Leaf]
    relations: dict[str, dict[str, _Relation]] = field(default_factory=dict)  # producer -> leaf -> relation
    output_aligned: set[str] = field(default_factory=set)  # producers whose channels reach the output
    #: functional ops called between leaf cells in the clean pass: (leaves run before it, op, input
    #: shapes, output shape), op "concat" or "transpose"
    ops: list[tuple[int, str, tuple[tuple[int, ...], ...], tuple[int, ...]]] = field(default_factory=list)


#: (module, primitive class, op) whose calls the clean pass records: ``ops.concat``/``ops.cat``
#: (a pyboost primitive), ``ops.Concat()``, ``ops.transpose`` and ``Tensor.transpose``
_RECORDED_PRIMITIVES = (("mindspore.ops.auto_generate.pyboost_inner_prim", "_PyboostConcatPrim", "concat"),
                        ("mindspore.ops.auto_generate.gen_ops_prim", "Concat", "concat"),
                        ("mindspore.ops.auto_generate.gen_ops_prim", "Transpose", "transpose"))


def _record_primitives(record) -> list[tuple[type, Any]]:
    """Wrap the recorded primitives' ``__call__`` so each call reports ``record(op, args, output)``;
    returns what ``_restore_primitives`` puts back. A primitive this MindSpore does not have is
    skipped (its concats are then found by the probe)."""
    import importlib

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


def _kind_of(cell) -> str:
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
    if isinstance(cell, (nn.MaxPool2d, nn.AvgPool2d)):
        return "pool"
    if len(list(cell.get_parameters(expand=False))) == 0:
        return "paramless"
    return "other"


def _changed(base: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Indices along axis 1 where ``new`` differs from ``base`` beyond float noise."""
    if base.ndim < 2 or base.shape != new.shape:
        return np.array([], dtype=np.int64)
    diff = np.abs(new - base)
    axes = tuple(i for i in range(base.ndim) if i != 1)
    per_channel = diff.max(axis=axes)
    tol = 1e-5 * (np.abs(base).max() + 1e-6)
    return np.nonzero(per_channel > tol)[0]


def _relate(trace: NetworkTrace, executed: list[_Leaf], probes: list, base_out: np.ndarray, out: np.ndarray) -> None:
    """Record what one batched probe pass reached (sample ``b`` carries probe ``probes[b]``)."""
    mixing = {"conv", "dense", "groupconv", "other"}
    for b, (p, _, _) in enumerate(probes):
        if len(_changed(base_out, out[b : b + 1])):
            trace.output_aligned.add(p.name)
    for leaf in executed:
        bx, px = leaf.x, leaf.probe_x
        if bx is None or px is None or px.shape[1:] != bx.shape[1:]:
            continue
        for b, (p, k, _) in enumerate(probes):
            if leaf is p:
                continue
            changed_in = _changed(bx, px[b : b + 1])
            if len(changed_in) == 0:
                continue
            n_out = p.y.shape[1]
            flat = bx.ndim == 2 and bx.shape[1] != n_out and bx.shape[1] % n_out == 0
            factor = bx.shape[1] // n_out if flat else 1
            r = trace.relations[p.name].setdefault(leaf.name, _Relation())
            same_width = flat or bx.shape[1] == n_out  # else a concat/slice sits in between
            if same_width and changed_in.tolist() == list(range(k * factor, (k + 1) * factor)):
                if _kind_of(leaf.cell) in mixing:
                    r.consumer, r.in_factor = True, factor
                else:
                    r.follower = True
            else:
                r.remapped = True
                r.copies = max(r.copies, len(changed_in))


def trace_network(net, input_shape: Sequence[int], *, seed: int = 0) -> NetworkTrace:
    """Run the probe described in the module docstring; ``net`` is left unchanged.

    While probing, every channel-mixing leaf (conv, dense, unknown cells with parameters)
    replays its clean output, so a perturbation travels only through channel-wise ops: whatever
    it reaches reads the producer's channel space. Probes run in batched passes of
    ``PROBE_CHUNK``, one sample per (producer, channel) probe; in inference mode samples do
    not interact.
    """
    import mindspore as ms

    if ms.get_context("mode") != ms.PYNATIVE_MODE:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1, *input_shape)).astype(np.float32)

    leaves: dict[int, _Leaf] = {}
    for name, cell in net.cells_and_names():
        if name and not cell.name_cells():
            leaves[id(cell)] = _Leaf(name, cell)
    weightless = {k for k, leaf in leaves.items() if not list(leaf.cell.get_parameters(expand=False))}
    later_calls: dict[tuple[int, int], _Leaf] = {}  # (cell, k): the k-th call of a parameterless cell, k >= 1
    mixing = {"conv", "dense", "groupconv", "other"}
    state: dict[str, Any] = {"probing": False, "order": 0, "by_leaf": {}, "n": 0, "calls": {}}

    def node_of(cell) -> _Leaf:
        """The node this call of ``cell`` runs as (calls are counted per forward pass, which
        runs the same calls in the same order every time)."""
        k = state["calls"].get(id(cell), 0)
        state["calls"][id(cell)] = k + 1
        if k == 0 or id(cell) not in weightless:  # a cell with parameters is one node: shared weights
            return leaves[id(cell)]
        if (id(cell), k) not in later_calls:
            later_calls[(id(cell), k)] = _Leaf(f"{leaves[id(cell)].name}:{k}", cell)
        return later_calls[(id(cell), k)]

    ops_seen: list = []

    def record(op, args, out):  # the primitives are patched for the clean pass only
        if hasattr(out, "shape"):
            ops_seen.append((state["order"], op, _shapes(args), tuple(int(d) for d in out.shape)))

    def pre_hook(cell, inputs):
        state["mark"] = len(ops_seen)  # primitives a leaf cell calls inside itself are its own business

    def hook(cell, inputs, output):
        del ops_seen[state.get("mark", len(ops_seen)):]
        leaf = node_of(cell)
        x_np = inputs[0].asnumpy() if inputs and hasattr(inputs[0], "asnumpy") else None
        if state["probing"]:
            leaf.probe_x = x_np
        else:
            leaf.x = x_np
            leaf.calls += 1
            leaf.order = state["order"]
            state["order"] += 1
            leaf.y = output.asnumpy() if hasattr(output, "asnumpy") else None
            if type(cell).__name__ in ACTIVATIONS:
                return inputs[0]
            if leaf.y is not None and _kind_of(cell) in ("conv", "dense", "groupconv"):
                # untrained weights with identity activations grow the maps block after block
                # (1e20 deep in GhostNet): a probe's change then drowns in float32 rounding. Each
                # layer's output at unit mean magnitude keeps every channel's change visible.
                leaf.y = leaf.y / np.float32(np.abs(leaf.y).mean() + 1e-12)
                return ms.Tensor(leaf.y)
            return None
        if type(cell).__name__ in ACTIVATIONS:
            return inputs[0]
        if leaf.y is None or _kind_of(cell) not in mixing:
            return None
        replay = np.repeat(leaf.y, state["n"], axis=0)
        scale = 10 * np.abs(leaf.y).mean() + 1.0
        for b, k, sign in state["by_leaf"].get(leaf.name, ()):
            replay[b, k] += sign * np.abs(rng.standard_normal(replay[b, k].shape)).astype(np.float32) * scale
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
        executed = sorted((l for l in nodes if l.calls > 0), key=lambda l: l.order)
        producers = [l for l in executed if _kind_of(l.cell) in ("conv", "dense") and l.y is not None]
        probes = [(p, int(k), sign) for p in producers
                  for k in rng.choice(p.y.shape[1], size=min(PROBES_PER_PRODUCER, p.y.shape[1]), replace=False)
                  for sign in (1.0, -1.0)]
        trace = NetworkTrace(leaves=executed, ops=ops_seen)
        trace.relations = {p.name: {} for p in producers}
        if not probes:
            return trace
        for start in range(0, len(probes), PROBE_CHUNK):
            chunk = probes[start : start + PROBE_CHUNK]
            state["by_leaf"] = {}
            for b, (p, k, sign) in enumerate(chunk):
                state["by_leaf"].setdefault(p.name, []).append((b, k, sign))
            state["probing"], state["n"], state["calls"] = True, len(chunk), {}
            out = net(ms.Tensor(np.repeat(x, len(chunk), axis=0))).asnumpy()
            state["probing"] = False
            _relate(trace, executed, chunk, base_out, out)
            for leaf in executed:
                leaf.probe_x = None
    finally:
        state["probing"] = False
        for handle in handles:
            handle.remove()
        net.set_train(was_training)
    return trace


class _UnionFind:
    def __init__(self):
        self.parent: dict[str, str] = {}

    def find(self, a: str) -> str:
        self.parent.setdefault(a, a)
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: str, b: str) -> None:
        self.parent[self.find(a)] = self.find(b)


def coupling_groups(trace: NetworkTrace) -> list[CouplingGroup]:
    """Group producers that share a consumer or follower; decide prunability with a reason."""
    leaf_by_name = {l.name: l for l in trace.leaves}
    order = {l.name: l.order for l in trace.leaves}
    uf = _UnionFind()
    for producer, rel in trace.relations.items():
        uf.find(producer)
        for leaf_name, r in rel.items():
            if r.consumer or r.follower:
                uf.union(producer, "in:" + leaf_name)

    members: dict[str, list[str]] = {}
    for producer in trace.relations:
        members.setdefault(uf.find(producer), []).append(producer)

    groups = []
    for producers in members.values():
        producers.sort(key=order.get)
        consumers, followers = set(), set()
        reasons: list[tuple[str, str]] = []  # (kind, text); kinds: BLOCKED_BY
        for p in producers:
            for leaf_name, r in trace.relations[p].items():
                if r.remapped:
                    reasons.append(("re-indexed", f"channels of {p} are re-indexed or mixed by a non-layer op before "
                                                  f"{leaf_name} (concat/slice/shuffle)"))
                if r.consumer:
                    consumers.add(leaf_name)
                elif r.follower and _kind_of(leaf_by_name[leaf_name].cell) not in ("paramless", "pool"):
                    followers.add(leaf_name)  # activations and pooling have nothing to slice
            if p in trace.output_aligned:
                reasons.append(("output", f"{p} feeds the network output"))
        channels = {leaf_by_name[p].cell.weight.shape[0] for p in producers}
        if len(channels) != 1:
            reasons.append(("widths differ", f"producers disagree on channel count {sorted(channels)}"))
        for name in sorted(consumers | followers | set(producers)):
            leaf = leaf_by_name[name]
            kind = _kind_of(leaf.cell)
            if leaf.calls > 1:
                reasons.append(("shared weights", f"{name} is called {leaf.calls} times (shared weights)"))
            if kind in ("groupconv", "other"):
                reasons.append(("grouped conv" if kind == "groupconv" else "cannot be sliced",
                                f"{name} ({type(leaf.cell).__name__}) cannot be sliced by channel"))
        groups.append(
            CouplingGroup(
                name=producers[0],
                channels=max(channels),
                producers=tuple(producers),
                consumers=tuple(sorted(consumers, key=order.get)),
                followers=tuple(sorted(followers, key=order.get)),
                prunable=not reasons,
                reason="; ".join(dict.fromkeys(text for _, text in reasons)),
                blocked_by=tuple(dict.fromkeys(kind for kind, _ in reasons)),
            )
        )
    groups.sort(key=lambda g: order[g.producers[0]])
    return groups


def residual_joins(trace: NetworkTrace, groups: Sequence[CouplingGroup]) -> dict[str, int]:
    """Producers whose output a residual add joins to the group's earlier producers: producer
    name -> group index. Producers fall into one group when their channels meet in the same
    index space; with no re-indexing on the way (concat, shuffle) they meet in an element-wise
    add, one per producer after the first (``ops.add`` and ``+`` in ``construct`` are not
    cells, so the trace sees the adds only through the coupling)."""
    out = {}
    for i, g in enumerate(groups):
        remapped = any(r.remapped for p in g.producers for r in trace.relations[p].values())
        if len(g.producers) > 1 and not remapped and "disagree" not in g.reason:
            out.update({p: i for p in g.producers[1:]})
    return out


def _concats_read(trace: NetworkTrace, leaf: _Leaf, seen: set[frozenset[str]],
                  width_of: dict[str, int]) -> tuple[list[frozenset[str]], int]:
    """The channel concats a leaf reads that are not in the table yet (each as its producers),
    and how many tensors meet in an element-wise add at the leaf's input (0: no add).

    ``ops.concat`` in ``construct`` is no cell: the probe sees it as the channels of producers
    reaching the leaf at other indices (``remapped``):

    - each producer channel reaching two of the leaf's inputs, as wide as a whole multiple of
      the producer: a ghost module (the producer's channels and its cheap depthwise features
      made from them). Several of them (and a producer read at its own indices, as wide as the
      input) reaching one leaf are summed: GhostNet's residual adds along an identity chain;
    - else the producers' widths adding up to the leaf's input channels: one concat (a slice or
      a shuffle of one producer is none).

    A pool or a consumer after the same concat reads the same producers and gets no second row.
    ``width_of`` is each producer's output channels.
    """
    x = leaf.x
    if x is None or x.ndim != 4:
        return [], 0
    sources = [p for p in width_of if leaf.name in trace.relations[p] and trace.relations[p][leaf.name].remapped]
    channels = x.shape[1]
    if all(trace.relations[p][leaf.name].copies >= 2 and channels % width_of[p] == 0 and channels >= 2 * width_of[p]
           for p in sources):  # ghost modules (or none)
        direct = any((rel[leaf.name].consumer or rel[leaf.name].follower) and width_of.get(p) == channels
                     for p, rel in trace.relations.items() if leaf.name in rel and p not in sources)
        new = [frozenset({p}) for p in sources if frozenset({p}) not in seen]
        return new, (len(sources) + direct if new else 0)
    if len(sources) < 2 or frozenset(sources) in seen or sum(width_of[p] for p in sources) != channels:
        return [], 0
    return [frozenset(sources)], 0


def _global_pool_input(kind: str, x, y, in_factor: int, maps: dict[int, tuple[int, ...]]) -> tuple[int, int] | None:
    """The (h, w) a leaf's input was globally pooled from, where no cell of the table shows it:

    - a parameterless cell (``GlobalAvgPool``, mindcv's ``GlobalAvgPooling``) that maps
      (N, C, h, w) to (N, C) or (N, C, 1, 1);
    - a conv or dense layer reading C values per sample (not a flattened map: ``in_factor`` 1)
      while the latest output with C channels is an h x w map: ``ops.mean`` (or any functional
      reduction) in ``construct`` sits in between.
    """
    if x is None or x.ndim < 2:
        return None
    if kind == "paramless":
        if x.ndim == 4 and x.shape[2] * x.shape[3] > 1 and y is not None and y.ndim >= 2 \
                and y.shape[1] == x.shape[1] and int(np.prod(y.shape[2:], dtype=np.int64)) == 1:
            return int(x.shape[2]), int(x.shape[3])
        return None
    if kind not in ("conv", "dense") or in_factor != 1 or int(np.prod(x.shape[2:], dtype=np.int64)) != 1:
        return None
    spatial = maps.get(x.shape[1], ())
    if len(spatial) == 2 and spatial[0] * spatial[1] > 1:
        return int(spatial[0]), int(spatial[1])
    return None


def _gate_of(kind: str, x, y, pooled: dict[int, tuple[int, int, int]]) -> tuple[int, int, int] | None:
    """(h, w, group) of the map a conv's output gates, or None: a conv (or dense layer) mapping a
    per-sample vector of other width back to C values, after a map of C channels was globally
    pooled, is the excite of a squeeze-and-excite block; ``x * gate`` in ``construct`` is no cell."""
    if kind not in ("conv", "dense") or x is None or y is None or y.ndim < 2 or x.ndim < 2:
        return None
    flat_in = int(np.prod(x.shape[2:], dtype=np.int64)) == 1
    flat_out = int(np.prod(y.shape[2:], dtype=np.int64)) == 1
    if not (flat_in and flat_out) or x.shape[1] == y.shape[1]:
        return None
    return pooled.get(int(y.shape[1]))


def _map_row(name: str, kind: str, channels: int, h: int, w: int, group: int = -1) -> dict[str, Any]:
    """A weightless row over a ``channels`` x h x w map that keeps its shape (concat, shuffle, add, mul, act)."""
    return {"name": name, "kind": kind, "cin": channels, "cout": channels, "h_in": h, "w_in": w,
            "h_out": h, "w_out": w, "in_group": group, "out_group": group}


def _functional_rows(trace: NetworkTrace) -> list[tuple[int, str, int, int, int]]:
    """Rows of the recorded functional ops in execution order: ``(leaf calls before it, kind,
    channels, h, w)``.

    - a concat of 4-D maps along channels: a ``concat`` row over its output;
    - a transpose of a map's elements (a channel shuffle: reshape, transpose, reshape back): a
      ``shuffle`` row over the map it reorders, the latest 4-D tensor (leaf output or concat) of
      as many elements; a transpose of a matrix, or of elements no map holds, is no row.
    """
    # when each 4-D map appeared: leaf k at k; the j-th op, run after leaf order-1, at order - 1 + (j+1)/(n+1)
    maps = [(float(l.order), tuple(l.y.shape)) for l in trace.leaves if l.y is not None and l.y.ndim == 4]
    out = []
    for j, (order, op, ins, shape) in enumerate(trace.ops):
        when = order - 1 + (j + 1) / (len(trace.ops) + 1)
        if op == "concat" and len(shape) == 4 and len(ins) >= 2 and sum(s[1] for s in ins) == shape[1] \
                and all(len(s) == 4 and s[0] == shape[0] and s[2:] == shape[2:] for s in ins):
            out.append((order, "concat", *shape[1:]))
            maps.append((when, shape))
        elif op == "transpose" and len(shape) >= 3:
            n = int(np.prod(shape))
            src = max(((t, s) for t, s in maps if t < when and int(np.prod(s)) == n), key=lambda m: m[0], default=None)
            if src is not None:
                out.append((order, "shuffle", *src[1][1:]))
    return out


def _op_rows(before: str, ops: Sequence[tuple[int, str, int, int, int]]) -> list[dict[str, Any]]:
    """Rows of functional ops run before leaf ``before``, named after it (numbered where it has several of a kind)."""
    counts = collections.Counter(kind for _, kind, *_ in ops)
    seen: collections.Counter = collections.Counter()
    rows = []
    for _, kind, c, h, w in ops:
        suffix = f".{seen[kind]}" if counts[kind] > 1 else ""
        seen[kind] += 1
        rows.append(_map_row(f"{before}.{kind}{suffix}", kind, c, h, w))
    return rows


def build_layer_table(net, input_shape: Sequence[int], *, seed: int = 0) -> LayerTable:
    """The layer table of ``net`` for inputs of shape ``input_shape`` (C, H, W).

    A network with an ``elastic_space()`` method (see ``automc.algorithms.nas``) gets its NAS
    resolver attached as ``table.elastic``.
    """
    from automc.training import use_host_blocking_run

    use_host_blocking_run()  # MindSpore reads it at the first graph it runs, which may be this trace
    trace = trace_network(net, input_shape, seed=seed)
    groups = coupling_groups(trace)
    group_of_producer = {p: i for i, g in enumerate(groups) for p in g.producers}
    group_of_input: dict[str, tuple[int, int]] = {}
    for i, g in enumerate(groups):
        for p in g.producers:
            for leaf_name, r in trace.relations[p].items():
                if r.consumer or r.follower:
                    group_of_input[leaf_name] = (i, r.in_factor if r.consumer else 1)

    joins = residual_joins(trace, groups)
    rows = []
    executed = trace.leaves
    maps: dict[int, tuple[int, ...]] = {}  # channels -> spatial shape of the latest output with that many
    concats: set[frozenset[str]] = set()  # the producers of each concat already in the table
    functional = _functional_rows(trace)  # consumed in order, each before the next leaf that runs
    # concats the op hooks saw are rows where they ran; the probe's concats (``_concats_read``)
    # stand in only where no concat primitive was seen (a concat the hooks do not know)
    hooked_concats = any(kind == "concat" for _, kind, *_ in functional)
    width_of = {l.name: l.y.shape[1] for l in executed if l.name in trace.relations and l.y is not None}
    pooled: dict[int, tuple[int, int, int]] = {}  # channels -> (h, w, group) of a map globally pooled, not yet gated
    for idx, leaf in enumerate(executed):
        kind = _kind_of(leaf.cell)
        cell = leaf.cell
        x, y = leaf.x, leaf.y
        in_group, in_factor = group_of_input.get(leaf.name, (-1, 1))
        ops_here = [op for op in functional if op[0] <= leaf.order]
        functional = functional[len(ops_here):]
        rows += _op_rows(leaf.name, ops_here)  # functional ops run just before this leaf
        new_concats, summed = _concats_read(trace, leaf, concats, width_of)
        for i, sources in enumerate(new_concats):  # ops.concat in construct: one row, before the first leaf that reads it
            concats.add(sources)
            suffix = f".{i}" if len(new_concats) > 1 else ""
            if not hooked_concats:
                rows.append(_map_row(f"{leaf.name}.concat{suffix}", "concat", *x.shape[1:4]))
            if summed > 1:  # the new ghost module's output joins the running residual sum
                rows.append(_map_row(f"{leaf.name}.add{suffix}", "add", *x.shape[1:4], in_group))
        reduced = _global_pool_input(kind, x, y, in_factor, maps)
        if reduced is not None:  # a global pool the cells do not show (a parameterless cell, or ops.mean)
            name = leaf.name if kind == "paramless" else f"{leaf.name}.pool"
            c, (h, w) = x.shape[1], reduced
            rows.append({"name": name, "kind": "pool", "cin": c, "cout": c, "kh": h, "kw": w, "stride": h,
                         "h_in": h, "w_in": w, "h_out": 1, "w_out": 1, "in_group": in_group, "out_group": in_group})
            pooled[c] = (h, w, in_group)
        gated = _gate_of(kind, x, y, pooled)
        if y is not None and y.ndim >= 2 and gated is None:  # a gate's output scales the map: it keeps its shape
            maps[y.shape[1]] = tuple(y.shape[2:])
        if kind not in ("conv", "dwconv", "groupconv", "dense", "pool"):
            continue
        row: dict[str, Any] = {"name": leaf.name, "in_group": in_group, "in_factor": in_factor}
        nxt = executed[idx + 1] if idx + 1 < len(executed) else None
        if kind == "dense":
            # nn.Dense multiplies the last axis: on (N, H, W, C) maps (ConvNeXt, MLP blocks) it runs
            # once per position, a 1x1 conv over H x W; on (N, L, C) once per token
            positions = tuple(int(d) for d in x.shape[1:-1]) if x is not None and x.ndim > 2 else ()
            h, w = positions if len(positions) == 2 else (int(np.prod(positions, dtype=np.int64)), 1)
            row.update(kind="dense", cin=cell.in_channels, cout=cell.out_channels, has_bias=bool(cell.has_bias),
                       h_in=h, w_in=w, h_out=h, w_out=w, out_group=group_of_producer.get(leaf.name, -1))
        elif kind == "pool":
            k = cell.kernel_size if isinstance(cell.kernel_size, int) else cell.kernel_size[-1]
            s = cell.stride if isinstance(cell.stride, int) else cell.stride[-1]
            row.update(kind="pool", cin=x.shape[1], cout=y.shape[1], kh=k, kw=k, stride=s, out_group=in_group,
                       h_in=x.shape[2], w_in=x.shape[3], h_out=y.shape[2], w_out=y.shape[3])
        else:
            kh, kw = cell.kernel_size
            row.update(
                kind="dwconv" if kind == "dwconv" else "conv",
                cin=cell.in_channels, cout=cell.out_channels, kh=kh, kw=kw, stride=cell.stride[0],
                groups=cell.group, has_bias=bool(cell.has_bias),
                h_in=x.shape[2], w_in=x.shape[3], h_out=y.shape[2], w_out=y.shape[3],
                out_group=in_group if kind == "dwconv" else group_of_producer.get(leaf.name, -1),
            )
        if kind != "pool" and nxt is not None and _kind_of(nxt.cell) == "bn" and nxt.x is not None \
                and y is not None and nxt.x.shape == y.shape and np.array_equal(nxt.x, y):
            row["has_bn"] = True
            after = executed[idx + 2] if idx + 2 < len(executed) else None
        else:
            after = nxt
        act = type(after.cell).__name__ if after is not None and _kind_of(after.cell) == "paramless" \
            and after.x is not None else None
        row["has_act"] = act in _CLAMPS or act in SMOOTH_ACTIVATIONS
        rows.append(row)
        if act in SMOOTH_ACTIVATIONS and y is not None:  # one element-wise pass where the runtime does not fuse it
            if kind == "dense":  # channels on the last axis, once per position
                c, h, w = row["cout"], row["h_out"], row["w_out"]
            else:
                c, (h, w) = y.shape[1], (tuple(y.shape[2:]) if y.ndim == 4 else (1, 1))
            rows.append(_map_row(f"{leaf.name}.act", "act", c, h, w, row["out_group"]))
        if gated is not None:  # squeeze-and-excite: the pooled map times this conv's per-channel output
            h, w, g = gated
            del pooled[y.shape[1]]
            rows.append(_map_row(f"{leaf.name}.mul", "mul", y.shape[1], h, w, g))
        elif leaf.name in joins and y is not None:  # the residual add joining this producer's output
            rows.append(_map_row(f"{leaf.name}.add", "add", *y.shape[1:4], joins[leaf.name]))
    rows += _op_rows("output", functional)  # after the last leaf
    table = LayerTable.from_rows(rows, groups, input_shape=tuple(input_shape))
    declared = getattr(net, "elastic_space", None)
    if declared is not None:  # NAS: the network declares elastic width/depth/kernel
        from automc.algorithms.nas import with_elastic_space

        table = with_elastic_space(table, net, declared() if callable(declared) else declared)
    return table
