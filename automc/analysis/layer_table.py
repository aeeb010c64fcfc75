"""The layer table: one row per op that costs time, plus the coupling groups of prunable channels.

Everything downstream of the network analysis works from this table: the search space (which
decisions exist), the cost models (latency/energy/size without building a network) and the
summaries. ``LayerTable.resolve`` turns one or many policies into per-layer shape arrays of
shape ``(n_policies, n_layers)`` in a few vectorised numpy operations.

Row kinds
---------
``conv``    2-D convolution (a grouped one keeps its ``groups``; its coupling groups have ``divisions``)
``dwconv``  depthwise convolution: ``cin == cout == groups``; follows its input's channel group
``dense``   fully connected layer (``kh = kw = h = w = 1``)
``pool``    max/avg pooling, global pooling included (no weights)
``add``     element-wise residual add (no weights)
``concat``  channel concatenation (no weights; a copy of every element)
``shuffle`` a channel shuffle or other transpose of a map (no weights; a copy of every element)
``mul``     a map times a per-channel gate (squeeze-and-excite; no weights)
``act``     a smooth activation (hard-swish, sigmoid, swish, GELU) after a conv/dense: one
            element-wise pass over its output where the runtime does not fuse it (no weights)

Batch-norm and clamping activations (ReLU, ReLU6) are not rows: ``has_bn``/``has_act`` mark the
conv/dense they follow, because every deployment runtime we model fuses them (a device that does
not can charge them). A smooth activation also sets ``has_act``, and gets its ``act`` row, which
a device that fuses it (``fuses_complex_activations``) does not charge.
``params`` counts weights and biases of conv/dense rows; batch-norm is folded into the preceding
layer's bias at deployment, so it adds a bias where the layer had none.
"""

from __future__ import annotations

import collections
import functools
from dataclasses import asdict, dataclass, field, fields, replace
from itertools import chain, repeat
from operator import itemgetter
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from automc.policy import FLOAT_BITS, Policy

KINDS = ("conv", "dwconv", "dense", "pool", "add", "concat", "shuffle", "mul", "act")
COMPUTE_KINDS = ("conv", "dwconv", "dense")


def kept_channels(channels: np.ndarray | int, ratio: np.ndarray | float, divisions: np.ndarray | int = 1) -> np.ndarray:
    """Channels left after removing ``ratio`` of ``channels``: round to nearest, at least one;
    with ``divisions`` (a grouped conv's blocks) the same number in each block.

    The single rounding rule shared by the pruner (which builds the network) and the layer
    table (which predicts its shapes), so both always agree.
    """
    divisions = np.asarray(divisions, dtype=np.int64)
    per_block = np.asarray(channels, dtype=np.float64) / divisions
    kept = np.floor(per_block * (1.0 - np.asarray(ratio, dtype=np.float64)) + 0.5)
    return (np.maximum(kept, 1) * divisions).astype(np.int64)


def _tuples(value: Any) -> Any:
    """JSON's nested lists back as the nested tuples a ``CouplingGroup`` holds."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _matrix(mappings: Sequence[Any], keys: Sequence[str], default: float, dtype: Any = np.float64) -> np.ndarray:
    """``(len(mappings), len(keys))`` values, ``default`` where a mapping lacks a key (fast path of
    ``resolve``: C-level lookups per policy streamed into ``np.fromiter``, no nested lists).
    A strategy's policies usually all set the same keys (every compressible layer, not the adds
    and pools): then the columns of the keys they set are one ``itemgetter`` call per policy,
    twice as fast as a ``get`` per key; policies that set different keys take the ``get`` path."""
    n, k = len(mappings), len(keys)
    if not k:
        return np.zeros((n, 0), dtype=dtype)
    named = set().union(*mappings)
    cols = [j for j, key in enumerate(keys) if key in named]
    if len(cols) > 1:  # (an itemgetter of one key returns the value, not a 1-tuple)
        try:
            rows = list(map(itemgetter(*(keys[j] for j in cols)), mappings))
        except KeyError:  # some policy lacks a key another sets
            pass
        else:
            out = np.full((n, k), default, dtype=dtype)
            out[:, cols] = np.fromiter(chain.from_iterable(rows), dtype=dtype, count=n * len(cols)).reshape(n, len(cols))
            return out
    values = chain.from_iterable(map(m.get, keys, repeat(default)) for m in mappings)
    return np.fromiter(values, dtype=dtype, count=n * k).reshape(n, k)


@dataclass(frozen=True)
class CouplingGroup:
    """Channels that must be pruned together.

    ``producers`` write the channels (their output channels), ``consumers`` read them (their
    input channels; a dense layer after a flatten reads ``in_factor`` features per channel),
    ``followers`` are channel-wise layers with weights indexed by them (batch-norm, depthwise
    convs; activations and pooling have nothing to slice and are not listed). Producers joined by
    a residual add share one group.

    ``channels`` counts the group's *classes*: channels kept or removed together (a producer may
    write several per class, a reader read several). ``maps`` lists the layers whose channels are
    not simply the classes in order, as ``(layer, "out" | "in", runs)`` with runs ``(position,
    first class, classes, positions per class)`` (``automc.analysis.coupling.runs``): a DenseNet
    layer reads an earlier layer's classes at an offset of its concat input. ``divisions`` > 1:
    a grouped conv reads or writes the classes in that many contiguous blocks, each of which
    keeps the same number.
    """

    name: str
    channels: int
    producers: tuple[str, ...]
    consumers: tuple[str, ...] = ()
    followers: tuple[str, ...] = ()
    prunable: bool = True
    reason: str = ""
    #: what keeps the group from being pruned, as kinds (``BLOCKED_BY``), in the order of ``reason``
    blocked_by: tuple[str, ...] = ()
    divisions: int = 1
    maps: tuple[tuple[str, str, tuple[tuple[int, int, int, int], ...]], ...] = ()

    def map_of(self, layer: str, side: str) -> tuple[tuple[int, int, int, int], ...] | None:
        """The runs of ``layer``'s output (``"out"``) or input (``"in"``) channels, or None where they
        are the classes in order."""
        return next((r for name, s, r in self.maps if name == layer and s == side), None)


#: why a coupling group is not prunable: its channels are the network's outputs (a classifier),
#: re-indexed on the way (concat, slice, shuffle), read by a layer with shared weights or a grouped
#: conv, by a layer that cannot be sliced, its producers' widths differ, or pruning it was tried
#: and the network no longer ran (``automc.algorithms.pruning.refuse_breaking_groups``)
BLOCKED_BY = ("output", "re-indexed", "shared weights", "grouped conv", "cannot be sliced", "widths differ",
              "breaks the network")


@dataclass(frozen=True)
class Coverage:
    """The MACs channel pruning reaches (``LayerTable.coverage``). ``output_macs``: layers whose
    output channels are the network's outputs (the classifier), never prunable and left out of
    ``share``; ``ungrouped_macs``: layers whose outputs no group holds; ``blocked``: reason kind ->
    (groups, MACs) of the other groups."""

    prunable_macs: int
    total_macs: int
    output_macs: int
    ungrouped_macs: int
    blocked: dict[str, tuple[int, int]]

    @property
    def share(self) -> float:
        """Prunable MACs over all MACs but the classifier's."""
        return self.prunable_macs / max(self.total_macs - self.output_macs, 1)

    def to_text(self) -> str:
        rest = self.total_macs - self.output_macs
        parts = [f"{kind} {n} group{'s' * (n != 1)} ({m / max(rest, 1):.1%})"
                 for kind, (n, m) in sorted(self.blocked.items(), key=lambda kv: -kv[1][1])]
        if self.ungrouped_macs:
            parts.append(f"in no group ({self.ungrouped_macs / max(rest, 1):.1%})")
        text = f"prunable: {self.share:.1%} of the MACs (the classifier aside) are in layers whose output channels can be pruned"
        return text + (f"; the rest: {', '.join(parts)}" if parts else "")


@dataclass(frozen=True)
class _Geometry:
    """The per-layer columns ``LayerTable`` and ``LayerShapes`` share: ``(L,)`` arrays in the
    table, ``(P, L)`` in resolved shapes (``kind`` is ``(L,)`` str in both)."""

    kind: np.ndarray
    cin: np.ndarray
    cout: np.ndarray
    kh: np.ndarray
    kw: np.ndarray
    stride: np.ndarray
    groups: np.ndarray
    h_in: np.ndarray
    w_in: np.ndarray
    h_out: np.ndarray
    w_out: np.ndarray
    has_bias: np.ndarray


@dataclass(frozen=True)
class LayerShapes(_Geometry):
    """Resolved per-layer shapes for a batch of policies: every array but ``kind`` is ``(P, L)``;
    ``has_bias`` includes the bias a folded batch-norm adds."""

    w_bits: np.ndarray
    a_bits: np.ndarray
    present: np.ndarray  # bool: False where a NAS depth choice removed the layer

    @property
    def n_policies(self) -> int:
        return self.cin.shape[0]

    @property
    def weights(self) -> np.ndarray:
        """Weight elements per layer (no bias)."""
        is_compute = np.isin(self.kind, COMPUTE_KINDS)
        w = self.cout * (self.cin // np.maximum(self.groups, 1)) * self.kh * self.kw
        return np.where(is_compute & self.present, w, 0)

    @property
    def biases(self) -> np.ndarray:
        is_compute = np.isin(self.kind, COMPUTE_KINDS)
        return np.where(is_compute & self.present & self.has_bias, self.cout, 0)

    @property
    def params(self) -> np.ndarray:
        return self.weights + self.biases

    @property
    def macs(self) -> np.ndarray:
        """Multiply-accumulates per layer for one input sample."""
        is_compute = np.isin(self.kind, COMPUTE_KINDS)
        return np.where(is_compute, self.weights * self.h_out * self.w_out, 0)

    @property
    def bitops(self) -> np.ndarray:
        """MACs weighted by ``w_bits * a_bits`` (the BitOPs of HAQ/DJPQ)."""
        return self.macs * self.w_bits * self.a_bits


@dataclass(frozen=True)
class LayerTable(_Geometry):
    """Static description of a network's costly ops and prunable channel groups.

    Per-row arrays all have length ``L``. ``in_group``/``out_group`` index ``coupling`` (or are
    -1 when the channel count is fixed); ``in_factor`` is the number of input features per
    channel of ``in_group`` (``h*w`` for a dense layer after a flatten, otherwise 1),
    ``out_factor`` the output channels per channel of ``out_group``. A row whose channels come
    from several groups (a layer reading a concat) has ``extra`` terms ``(row, "in" | "out",
    group, factor)``, and ``in_fixed``/``out_fixed`` channels no group holds: its input is
    ``in_fixed + sum(kept[group] * factor)`` over its terms.
    """

    names: tuple[str, ...]
    has_bn: np.ndarray
    has_act: np.ndarray
    in_group: np.ndarray
    out_group: np.ndarray
    in_factor: np.ndarray
    out_factor: np.ndarray
    in_fixed: np.ndarray
    out_fixed: np.ndarray
    coupling: tuple[CouplingGroup, ...] = ()
    extra: tuple[tuple[int, str, int, int], ...] = ()
    input_shape: tuple[int, ...] = ()
    # Hook for NAS: maps (shape arrays dict, policies) -> shape arrays dict; set by elastic networks.
    elastic: Callable[[dict[str, np.ndarray], Sequence[Policy]], dict[str, np.ndarray]] | None = field(
        default=None, compare=False, repr=False
    )

    # ----------------------------------------------------------------- building
    @classmethod
    def from_rows(
        cls,
        rows: Iterable[dict[str, Any]],
        coupling: Sequence[CouplingGroup] = (),
        input_shape: Sequence[int] = (),
    ) -> "LayerTable":
        """Build from dict rows with keys ``name, kind, cin, cout`` and optional ``kh, kw, stride,
        groups, h_in, w_in, h_out, w_out, has_bias, has_bn, has_act, in_group, out_group,
        in_factor, out_factor, in_fixed, out_fixed`` (group entries are names of ``coupling``
        groups or indices), or ``in_terms``/``out_terms``: ``[(group, factor), ...]`` for a row
        whose channels several groups make up."""
        rows = list(rows)
        group_index = {g.name: i for i, g in enumerate(coupling)}
        extra = []
        for i, r in enumerate(rows):
            for side in ("in", "out"):
                terms = [(group_index[g] if isinstance(g, str) else int(g), int(f)) for g, f in r.get(f"{side}_terms", ())]
                if terms:
                    r = rows[i] = {**r, f"{side}_group": terms[0][0], f"{side}_factor": terms[0][1]}
                    extra += [(i, side, g, f) for g, f in terms[1:]]

        def col(key: str, default: Any, dtype: Any) -> np.ndarray:
            return np.array([r.get(key, default) for r in rows], dtype=dtype)

        def group_col(key: str) -> np.ndarray:
            out = []
            for r in rows:
                g = r.get(key, -1)
                out.append(group_index[g] if isinstance(g, str) else int(g))
            return np.array(out, dtype=np.int64)

        kind = col("kind", "conv", object).astype(str)
        bad = sorted(set(kind) - set(KINDS))
        if bad:
            raise ValueError(f"unknown layer kinds {bad}; valid kinds: {', '.join(KINDS)}")
        return cls(
            names=tuple(r["name"] for r in rows),
            kind=kind,
            cin=col("cin", 0, np.int64),
            cout=col("cout", 0, np.int64),
            kh=col("kh", 1, np.int64),
            kw=col("kw", 1, np.int64),
            stride=col("stride", 1, np.int64),
            groups=col("groups", 1, np.int64),
            h_in=col("h_in", 1, np.int64),
            w_in=col("w_in", 1, np.int64),
            h_out=col("h_out", 1, np.int64),
            w_out=col("w_out", 1, np.int64),
            has_bias=col("has_bias", False, bool),
            has_bn=col("has_bn", False, bool),
            has_act=col("has_act", False, bool),
            in_group=group_col("in_group"),
            out_group=group_col("out_group"),
            in_factor=col("in_factor", 1, np.int64),
            out_factor=col("out_factor", 1, np.int64),
            in_fixed=col("in_fixed", 0, np.int64),
            out_fixed=col("out_fixed", 0, np.int64),
            coupling=tuple(coupling),
            extra=tuple(extra),
            input_shape=tuple(input_shape),
        )

    # ----------------------------------------------------------------- access
    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"no layer {name!r} in the layer table") from None

    @property
    def compressible(self) -> tuple[str, ...]:
        """Layers that carry weights (conv, dwconv, dense): the ones that get bit-widths."""
        return tuple(n for n, k in zip(self.names, self.kind) if k in COMPUTE_KINDS)

    @property
    def prunable_groups(self) -> tuple[CouplingGroup, ...]:
        return tuple(g for g in self.coupling if g.prunable)

    def group(self, name: str) -> CouplingGroup:
        for g in self.coupling:
            if g.name == name:
                return g
        raise KeyError(f"no coupling group {name!r}; groups: {', '.join(g.name for g in self.coupling)}")

    def rows(self) -> list[dict[str, Any]]:
        """One plain dict per row, with MACs and params (for reports and MLflow artifacts)."""
        base = self.resolve(Policy())
        out = []
        for i, name in enumerate(self.names):
            row = {"name": name}
            for f in ("kind", "cin", "cout", "kh", "kw", "stride", "groups", "h_in", "w_in", "h_out", "w_out"):
                v = getattr(self, f)[i]
                row[f] = v.item() if hasattr(v, "item") else v
            row["macs"] = int(base.macs[0, i])
            row["params"] = int(base.params[0, i])
            row["in_group"] = self.coupling[self.in_group[i]].name if self.in_group[i] >= 0 else ""
            row["out_group"] = self.coupling[self.out_group[i]].name if self.out_group[i] >= 0 else ""
            out.append(row)
        return out

    def totals(self, policy: Policy | None = None) -> dict[str, int]:
        shapes = self.resolve(policy or Policy())
        return {"macs": int(shapes.macs.sum()), "params": int(shapes.params.sum())}

    def coverage(self) -> "Coverage":
        """How much of the compute channel pruning can reach: the MACs of layers whose output
        channels are in a prunable group, and what keeps the rest (by each group's first reason;
        a group feeding the network output is the classifier, counted apart)."""
        macs = self.resolve(Policy()).macs[0]
        by_group = collections.Counter()
        for i, g in enumerate(self.out_group):
            by_group[int(g)] += int(macs[i])
        blocked: dict[str, list[int]] = {}
        output = 0
        for gi, group in enumerate(self.coupling):
            if group.prunable:
                continue
            if "output" in group.blocked_by:  # the classifier: its outputs are the classes
                output += by_group[gi]
                continue
            kind = group.blocked_by[0] if group.blocked_by else "cannot be sliced"
            entry = blocked.setdefault(kind, [0, 0])
            entry[0] += 1
            entry[1] += by_group[gi]
        prunable = sum(by_group[gi] for gi, g in enumerate(self.coupling) if g.prunable)
        return Coverage(prunable_macs=prunable, total_macs=int(macs.sum()), output_macs=output,
                        ungrouped_macs=by_group[-1], blocked={k: (n, m) for k, (n, m) in blocked.items()})

    def to_text(self) -> str:
        """A fixed-width table for the console."""
        rows = self.rows()
        cols = ["name", "kind", "cin", "cout", "kh", "stride", "groups", "h_out", "macs", "params", "out_group"]
        widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
        lines = ["  ".join(c.ljust(widths[c]) for c in cols)]
        lines += ["  ".join(str(r[c]).ljust(widths[c]) for c in cols) for r in rows]
        return "\n".join(lines)

    # ----------------------------------------------------------------- policies
    def channel_shapes(self, policies: Sequence[Policy], channels: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(cin, cout, groups)`` as ``(P, L)`` arrays after each policy's pruning ratios.

        ``channels`` (``(G,)`` or ``(P, G)``) overrides the groups' channel counts before pruning,
        as a NAS width choice does; the one rounding rule is ``kept_channels``.
        """
        n_p = len(policies)
        ratios = _matrix([pol.prune for pol in policies], [g.name for g in self.coupling], 0.0)
        if channels is None:
            channels = np.array([g.channels for g in self.coupling], dtype=np.int64)
        divisions = np.array([g.divisions for g in self.coupling], dtype=np.int64)
        kept = (kept_channels(np.broadcast_to(channels, ratios.shape), ratios, divisions) if self.coupling
                else np.zeros((n_p, 0), np.int64)).astype(np.float64)
        (in_fixed, in_coef), (out_fixed, out_coef) = self._terms
        cin = np.rint(in_fixed + kept @ in_coef).astype(np.int64)
        cout = np.rint(out_fixed + kept @ out_coef).astype(np.int64)
        groups = np.where((self.kind == "dwconv")[None, :], cin, np.broadcast_to(self.groups, cin.shape))
        return cin, cout, groups

    @functools.cached_property
    def _terms(self) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """Per side: ``(fixed (L,), coefficients (G, L))`` with channels = fixed + kept @ coefficients."""
        n_g, n_l = len(self.coupling), len(self.names)
        out = []
        for side, base, group, factor, fixed in (("in", self.cin, self.in_group, self.in_factor, self.in_fixed),
                                                 ("out", self.cout, self.out_group, self.out_factor, self.out_fixed)):
            has = group >= 0
            coef = np.zeros((n_g, n_l))
            coef[group[has], np.nonzero(has)[0]] = factor[has]
            for row, s, g, f in self.extra:
                if s == side:
                    coef[g, row] += f
            out.append((np.where(has, fixed, base).astype(np.float64), coef))
        return out[0], out[1]

    def groups_of(self, row: int, side: str | None = None) -> tuple[int, ...]:
        """Every group whose pruning changes row ``row``'s channels: its input's (``side="in"``),
        its output's (``"out"``) or either (None)."""
        (_, in_coef), (_, out_coef) = self._terms
        coef = {"in": in_coef, "out": out_coef, None: in_coef + out_coef}[side]
        return tuple(np.nonzero(coef[:, row])[0].tolist())

    def rows_of(self, group: int) -> np.ndarray:
        """``(L,)`` bool: the rows whose channels (input or output) group ``group`` changes."""
        (_, in_coef), (_, out_coef) = self._terms
        return (in_coef[group] + out_coef[group]) > 0

    def resolve(self, policies: Policy | Sequence[Policy]) -> LayerShapes:
        """Shapes of every layer under each policy, as ``(P, L)`` arrays."""
        if isinstance(policies, Policy):
            policies = [policies]
        n_p, n_l = len(policies), len(self.names)

        cin, cout, groups = self.channel_shapes(policies)

        w_bits = _matrix([pol.w_bits for pol in policies], self.names, FLOAT_BITS, np.int64)
        a_bits = _matrix([pol.a_bits for pol in policies], self.names, FLOAT_BITS, np.int64)

        # columns no policy changes are read-only broadcast views (stride 0 over policies)
        arrays = {
            "kind": self.kind,
            "cin": cin,
            "cout": cout,
            "kh": np.broadcast_to(self.kh, (n_p, n_l)),
            "kw": np.broadcast_to(self.kw, (n_p, n_l)),
            "stride": np.broadcast_to(self.stride, (n_p, n_l)),
            "groups": groups,
            "h_in": np.broadcast_to(self.h_in, (n_p, n_l)),
            "w_in": np.broadcast_to(self.w_in, (n_p, n_l)),
            "h_out": np.broadcast_to(self.h_out, (n_p, n_l)),
            "w_out": np.broadcast_to(self.w_out, (n_p, n_l)),
            "has_bias": np.broadcast_to(self.has_bias | self.has_bn, (n_p, n_l)),
            "w_bits": w_bits,
            "a_bits": a_bits,
            "present": np.broadcast_to(True, (n_p, n_l)),
        }
        if self.elastic is not None and any(p.nas for p in policies):
            arrays = self.elastic(arrays, policies)
        return LayerShapes(**arrays)

    _COLUMNS = ("kind", "cin", "cout", "kh", "kw", "stride", "groups", "h_in", "w_in", "h_out", "w_out",
                "has_bias", "has_bn", "has_act", "in_group", "out_group", "in_factor", "out_factor", "in_fixed",
                "out_fixed")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (without the NAS ``elastic`` hook); ``from_dict`` reads it back."""
        return {"names": list(self.names), "input_shape": list(self.input_shape),
                "columns": {c: getattr(self, c).tolist() for c in self._COLUMNS},
                "coupling": [asdict(g) for g in self.coupling], "extra": [list(e) for e in self.extra]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LayerTable":
        cols = data["columns"]
        rows = [{"name": n, **{c: cols[c][i] for c in cls._COLUMNS if c in cols}} for i, n in enumerate(data["names"])]
        coupling = [CouplingGroup(**{k: _tuples(v) for k, v in g.items()}) for g in data.get("coupling", [])]
        table = cls.from_rows(rows, coupling, data.get("input_shape", ()))
        return replace(table, extra=tuple(tuple(e) for e in data.get("extra", ())))

    def with_rows(self, **columns: np.ndarray) -> "LayerTable":
        """A copy with some columns replaced (used by builders and tests)."""
        known = {f.name for f in fields(self)}
        unknown = set(columns) - known
        if unknown:
            raise ValueError(f"unknown LayerTable columns {sorted(unknown)}")
        return replace(self, **columns)
