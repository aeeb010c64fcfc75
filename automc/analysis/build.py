"""Assemble the layer table from the probe's trace and its coupling groups: one row per op that
costs time (convs, dense layers, pooling; and the functional ops between cells: concats, channel
shuffles, residual adds, squeeze-excite gates, smooth activations), each with its channels in
terms of the coupling groups (``automc.analysis.coupling``)."""

from __future__ import annotations

import collections
from typing import Any, Sequence

import numpy as np

from automc.analysis.coupling import Coupling, couple
from automc.analysis.layer_table import LayerTable
from automc.analysis.probe import CLAMPS, SMOOTH_ACTIVATIONS, NetworkTrace, Node, kind_of, trace_network
from automc.training import use_host_blocking_run


def _remapped(trace: NetworkTrace, producer: str, leaf: str) -> tuple[bool, int]:
    """Whether ``leaf`` reads ``producer``'s channels other than in order (or a flatten of them),
    and at most how many of its input positions one producer channel reaches."""
    src = trace.reads.get(leaf, {}).get(producer)
    if src is None:
        return False, 0
    channels = trace.node(producer).out_channels
    reached = src[src >= 0]
    copies = int(np.bincount(reached, minlength=channels).max()) if len(reached) else 0
    in_order = len(src) % channels == 0 and np.array_equal(src, np.repeat(np.arange(channels), len(src) // channels))
    return not in_order, copies


def residual_joins(coupling: Coupling) -> dict[str, int]:
    """Producers whose output a residual add joins to the group's earlier producers: producer
    name -> group index. Producers fall into one group when their channels meet in the same
    index space; where every layer reads them in order (no concat, slice or shuffle on the way)
    they meet in an element-wise add, one per producer after the first (``ops.add`` and ``+`` in
    ``construct`` are not cells, so the trace sees the adds only through the coupling)."""
    out = {}
    for i, g in enumerate(coupling.groups):
        if len(g.producers) > 1 and not g.maps:
            out.update({p: i for p in g.producers[1:]})
    return out


def _concats_read(trace: NetworkTrace, leaf: Node, seen: set[frozenset[str]],
                  width_of: dict[str, int]) -> tuple[list[frozenset[str]], int]:
    """The channel concats a leaf reads that are not in the table yet (each as its producers),
    and how many tensors meet in an element-wise add at the leaf's input (0: no add).

    Where no concat primitive was recorded, a concat shows as the channels of producers
    reaching the leaf out of order:

    - each producer channel reaching two of the leaf's inputs, as wide as a whole multiple of
      the producer: a ghost module (the producer's channels and its cheap depthwise features
      made from them). Several of them (and a producer read in order, as wide as the input)
      reaching one leaf are summed: GhostNet's residual adds along an identity chain;
    - else the producers' widths adding up to the leaf's input channels: one concat (a slice or
      a shuffle of one producer is none).

    A pool or a consumer after the same concat reads the same producers and gets no second row.
    ``width_of`` is each producer's output channels.
    """
    x = leaf.x
    if x is None or x.ndim != 4:
        return [], 0
    relation = {p: _remapped(trace, p, leaf.name) for p in trace.reads.get(leaf.name, {}) if p in width_of}
    sources = [p for p, (remapped, _) in relation.items() if remapped]
    channels = x.shape[1]
    if all(relation[p][1] >= 2 and channels % width_of[p] == 0 and channels >= 2 * width_of[p] for p in sources):
        direct = any(not remapped and width_of[p] == channels for p, (remapped, _) in relation.items())
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


def _gate_of(kind: str, x, y, pooled: dict[int, tuple]) -> tuple | None:
    """(h, w, terms) of the map a conv's output gates, or None: a conv (or dense layer) mapping a
    per-sample vector of other width back to C values, after a map of C channels was globally
    pooled, is the excite of a squeeze-and-excite block; ``x * gate`` in ``construct`` is no cell."""
    if kind not in ("conv", "dense") or x is None or y is None or y.ndim < 2 or x.ndim < 2:
        return None
    flat_in = int(np.prod(x.shape[2:], dtype=np.int64)) == 1
    flat_out = int(np.prod(y.shape[2:], dtype=np.int64)) == 1
    if not (flat_in and flat_out) or x.shape[1] == y.shape[1]:
        return None
    return pooled.get(int(y.shape[1]))


Terms = tuple[int, tuple[tuple[int, int], ...]]  # (channels in no group, ((group, channels per class), ...))


def _terms(row: dict[str, Any], side: str, terms: Terms | None) -> dict[str, Any]:
    """``row`` with its ``side`` ("in"/"out") channels in terms of the groups (unchanged if none)."""
    if terms and terms[1]:
        row[f"{side}_fixed"], row[f"{side}_terms"] = terms
    return row


def _map_row(name: str, kind: str, channels: int, h: int, w: int, terms: Terms | None = None) -> dict[str, Any]:
    """A weightless row over a ``channels`` x h x w map that keeps its shape (concat, shuffle, add, mul, act)."""
    row = {"name": name, "kind": kind, "cin": channels, "cout": channels, "h_in": h, "w_in": w, "h_out": h, "w_out": w}
    return _terms(_terms(row, "in", terms), "out", terms)


def _made_terms(trace: NetworkTrace, coupling: Coupling, source, op_terms: dict[int, Terms | None]) -> Terms | None:
    """The channels of a tensor the clean pass saw made (a leaf's output or a recorded op's) in
    terms of the groups: a producer's its group's; a channel-wise leaf's (batch-norm, pooling,
    activation, depthwise conv) its input's; an op's as ``_functional_rows`` worked out."""
    if source is None:
        return None
    what, key = source
    if what == "op":
        return op_terms.get(key)
    if key in coupling.writes:
        return 0, (coupling.writes[key],)
    node = trace.node(key)
    return coupling.reads.get(key) if node.in_channels == node.out_channels else None


def _sum_terms(parts: Sequence[tuple[int, Terms | None]]) -> Terms:
    """Terms of a concat of ``(channels, terms)`` parts (a part with no terms is fixed)."""
    fixed, factors = 0, collections.Counter()
    for channels, terms in parts:
        if terms is None:
            fixed += channels
            continue
        fixed += terms[0]
        for g, f in terms[1]:
            factors[g] += f
    return fixed, tuple(factors.items())


def _chw(node: Node) -> tuple[int, int, int]:
    """A node's 4-D output as (channels, h, w), whichever axis holds its channels (a dense layer
    on a channels-last map writes (N, H, W, C))."""
    shape = node.y.shape
    return (shape[3], shape[1], shape[2]) if node.axis(4) == 3 else tuple(shape[1:4])


def _functional_rows(trace: NetworkTrace, coupling: Coupling) -> list[tuple[int, str, int, int, int, Terms | None]]:
    """Rows of the recorded functional ops in execution order: ``(leaf calls before it, kind,
    channels, h, w, terms)``.

    - a concat of 4-D maps along channels: a ``concat`` row over its output, its channels the
      sum of its inputs' (each the leaf output or op output it was made from; where one was made
      by neither, e.g. ``ops.relu`` in ``construct``, as the next leaf reads it);
    - a transpose of a map's elements (a channel shuffle: reshape, transpose, reshape back): a
      ``shuffle`` row over the map it reorders, the latest 4-D tensor (leaf output or concat) of
      as many elements; a transpose of a matrix, or of elements no map holds, is no row.
    """
    # when each 4-D map appeared: leaf k at k; the j-th op, run after leaf order-1, at order - 1 + (j+1)/(n+1)
    maps = [(float(n.order), tuple(n.y.shape), ("node", n.name), _chw(n)) for n in trace.nodes
            if n.y is not None and n.y.ndim == 4]
    op_terms: dict[int, Terms | None] = {}
    out = []
    for j, (order, op, ins, shape, sources) in enumerate(trace.ops):
        when = order - 1 + (j + 1) / (len(trace.ops) + 1)
        if op == "concat" and len(shape) == 4 and len(ins) >= 2 and sum(s[1] for s in ins) == shape[1] \
                and all(len(s) == 4 and s[0] == shape[0] and s[2:] == shape[2:] for s in ins):
            parts = [_made_terms(trace, coupling, src, op_terms) for src in sources]
            reader = trace.nodes[order] if order < len(trace.nodes) else None
            if (None in parts or len(parts) != len(ins)) and reader is not None and reader.in_channels == shape[1]:
                op_terms[j] = coupling.reads.get(reader.name)  # an input made by no cell or recorded op: as its reader reads it
            else:
                op_terms[j] = _sum_terms(list(zip((s[1] for s in ins), parts)))
            out.append((order, "concat", *shape[1:], op_terms[j]))
            maps.append((when, shape, ("op", j), shape[1:]))
        elif op == "transpose" and len(shape) >= 3:
            n = int(np.prod(shape))
            src = max((m for m in maps if m[0] < when and int(np.prod(m[1])) == n), key=lambda m: m[0], default=None)
            if src is not None:
                out.append((order, "shuffle", *src[3], _made_terms(trace, coupling, src[2], op_terms)))
    return out


def _op_rows(before: str, ops: Sequence[tuple[int, str, int, int, int, Terms | None]]) -> list[dict[str, Any]]:
    """Rows of functional ops run before leaf ``before``, named after it (numbered where it has several of a kind)."""
    counts = collections.Counter(kind for _, kind, *_ in ops)
    seen: collections.Counter = collections.Counter()
    rows = []
    for _, kind, c, h, w, terms in ops:
        suffix = f".{seen[kind]}" if counts[kind] > 1 else ""
        seen[kind] += 1
        rows.append(_map_row(f"{before}.{kind}{suffix}", kind, c, h, w, terms))
    return rows


def build_layer_table(net, input_shape: Sequence[int], *, seed: int = 0) -> LayerTable:
    """The layer table of ``net`` for inputs of shape ``input_shape`` (C, H, W). A network that
    declares an elastic NAS space gets it from ``automc.algorithms.nas.attach_declared_space``."""
    use_host_blocking_run()  # MindSpore reads it at the first graph it runs, which may be this trace
    trace = trace_network(net, input_shape, seed=seed)
    coupling = couple(trace)
    rows = _rows(trace, coupling)
    return LayerTable.from_rows(rows, coupling.groups, input_shape=tuple(input_shape))


def _rows(trace: NetworkTrace, coupling: Coupling) -> list[dict[str, Any]]:
    """The table's rows in execution order (module docstring)."""
    joins = residual_joins(coupling)
    rows = []
    executed = trace.nodes
    maps: dict[int, tuple[int, ...]] = {}  # channels -> spatial shape of the latest output with that many
    concats: set[frozenset[str]] = set()  # the producers of each concat already in the table
    functional = _functional_rows(trace, coupling)  # consumed in order, each before the next leaf that runs
    # concats the op hooks saw are rows where they ran; the probe's concats (``_concats_read``)
    # stand in only where no concat primitive was seen (a concat the hooks do not know)
    hooked_concats = any(kind == "concat" for _, kind, *_ in functional)
    width_of = {n.name: n.out_channels for n in executed if n.name in trace.producers}
    pooled: dict[int, tuple[int, int, Terms | None]] = {}  # channels -> (h, w, terms) of a map globally pooled, not yet gated
    for idx, leaf in enumerate(executed):
        kind = kind_of(leaf.cell)
        cell = leaf.cell
        x, y = leaf.x, leaf.y
        reads = coupling.reads.get(leaf.name)
        in_factor = reads[1][0][1] if reads and len(reads[1]) == 1 and reads[0] == 0 else 1
        ops_here = [op for op in functional if op[0] <= leaf.order]
        functional = functional[len(ops_here):]
        rows += _op_rows(leaf.name, ops_here)  # functional ops run just before this leaf
        new_concats, summed = _concats_read(trace, leaf, concats, width_of)
        for i, sources in enumerate(new_concats):  # ops.concat in construct: one row, before the first leaf that reads it
            concats.add(sources)
            suffix = f".{i}" if len(new_concats) > 1 else ""
            if not hooked_concats:
                rows.append(_map_row(f"{leaf.name}.concat{suffix}", "concat", *x.shape[1:4], reads))
            if summed > 1:  # the new ghost module's output joins the running residual sum
                rows.append(_map_row(f"{leaf.name}.add{suffix}", "add", *x.shape[1:4], reads))
        reduced = _global_pool_input(kind, x, y, in_factor, maps)
        if reduced is not None:  # a global pool the cells do not show (a parameterless cell, or ops.mean)
            name = leaf.name if kind == "paramless" else f"{leaf.name}.pool"
            c, (h, w) = x.shape[1], reduced
            row = {"name": name, "kind": "pool", "cin": c, "cout": c, "kh": h, "kw": w, "stride": h,
                   "h_in": h, "w_in": w, "h_out": 1, "w_out": 1}
            rows.append(_terms(_terms(row, "in", reads), "out", reads))  # ops.mean: its reader's input terms
            pooled[c] = (h, w, reads)
        gated = _gate_of(kind, x, y, pooled)
        if y is not None and y.ndim >= 2 and gated is None:  # a gate's output scales the map: it keeps its shape
            maps[y.shape[1]] = tuple(y.shape[2:])
        if kind not in ("conv", "dwconv", "groupconv", "dense", "pool"):
            continue
        row: dict[str, Any] = {"name": leaf.name}
        _terms(row, "in", reads)
        writes = coupling.writes.get(leaf.name)
        out_terms = (0, (writes,)) if writes else None
        nxt = executed[idx + 1] if idx + 1 < len(executed) else None
        if kind == "dense":
            # nn.Dense multiplies the last axis: on (N, H, W, C) maps (ConvNeXt, MLP blocks) it runs
            # once per position, a 1x1 conv over H x W; on (N, L, C) once per token
            positions = tuple(int(d) for d in x.shape[1:-1]) if x is not None and x.ndim > 2 else ()
            h, w = positions if len(positions) == 2 else (int(np.prod(positions, dtype=np.int64)), 1)
            row.update(kind="dense", cin=cell.in_channels, cout=cell.out_channels, has_bias=bool(cell.has_bias),
                       h_in=h, w_in=w, h_out=h, w_out=w)
        elif kind == "pool":
            k = cell.kernel_size if isinstance(cell.kernel_size, int) else cell.kernel_size[-1]
            st = cell.stride if isinstance(cell.stride, int) else cell.stride[-1]
            row.update(kind="pool", cin=x.shape[1], cout=y.shape[1], kh=k, kw=k, stride=st,
                       h_in=x.shape[2], w_in=x.shape[3], h_out=y.shape[2], w_out=y.shape[3])
            out_terms = reads
        else:
            kh, kw = cell.kernel_size
            row.update(
                kind="dwconv" if kind == "dwconv" else "conv",
                cin=cell.in_channels, cout=cell.out_channels, kh=kh, kw=kw, stride=cell.stride[0],
                groups=cell.group, has_bias=bool(cell.has_bias),
                h_in=x.shape[2], w_in=x.shape[3], h_out=y.shape[2], w_out=y.shape[3],
            )
            if kind == "dwconv":
                out_terms = reads
        _terms(row, "out", out_terms)
        if kind != "pool" and nxt is not None and kind_of(nxt.cell) == "bn" and nxt.x is not None \
                and y is not None and nxt.x.shape == y.shape and np.array_equal(nxt.x, y):
            row["has_bn"] = True
            after = executed[idx + 2] if idx + 2 < len(executed) else None
        else:
            after = nxt
        act = type(after.cell).__name__ if after is not None and kind_of(after.cell) == "paramless" \
            and after.x is not None else None
        row["has_act"] = act in CLAMPS or act in SMOOTH_ACTIVATIONS
        rows.append(row)
        if act in SMOOTH_ACTIVATIONS and y is not None:  # one element-wise pass where the runtime does not fuse it
            if kind == "dense":  # channels on the last axis, once per position
                c, h, w = row["cout"], row["h_out"], row["w_out"]
            else:
                c, (h, w) = y.shape[1], (tuple(y.shape[2:]) if y.ndim == 4 else (1, 1))
            rows.append(_map_row(f"{leaf.name}.act", "act", c, h, w, out_terms))
        if gated is not None:  # squeeze-and-excite: the pooled map times this conv's per-channel output
            h, w, terms = gated
            del pooled[y.shape[1]]
            rows.append(_map_row(f"{leaf.name}.mul", "mul", y.shape[1], h, w, terms))
        elif leaf.name in joins and y is not None:  # the residual add joining this producer's output
            rows.append(_map_row(f"{leaf.name}.add", "add", *_chw(leaf), out_terms))
    rows += _op_rows("output", functional)  # after the last leaf
    return rows
