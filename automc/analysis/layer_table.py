"""The layer table: one row per op that costs time, plus the coupling groups of prunable channels.

Everything downstream of the network analysis works from this table: the search space (which
decisions exist), the cost models (latency/energy/size without building a network) and the
summaries. ``LayerTable.resolve`` turns one or many policies into per-layer shape arrays of
shape ``(n_policies, n_layers)`` in a few vectorised numpy operations.

Row kinds
---------
``conv``    dense 2-D convolution (``groups`` may be > 1 only when not prunable)
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
from dataclasses import asdict, dataclass, field, fields, replace
from itertools import chain, repeat
from operator import itemgetter
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from automc.policy import FLOAT_BITS, Policy

KINDS = ("conv", "dwconv", "dense", "pool", "add", "concat", "shuffle", "mul", "act")
COMPUTE_KINDS = ("conv", "dwconv", "dense")


def kept_channels(channels: np.ndarray | int, ratio: np.ndarray | float) -> np.ndarray:
    """Channels left after removing ``ratio`` of ``channels``: round to nearest, at least one.

    The single rounding rule shared by the pruner (which builds the network) and the layer
    table (which predicts its shapes), so both always agree.
    """
    kept = np.floor(np.asarray(channels, dtype=np.float64) * (1.0 - np.asarray(ratio, dtype=np.float64)) + 0.5)
    return np.maximum(kept, 1).astype(np.int64)


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
class LayerShapes:
    """Resolved per-layer shapes for a batch of policies: every array is ``(P, L)``."""

    kind: np.ndarray  # (L,) str
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
class LayerTable:
    """Static description of a network's costly ops and prunable channel groups.

    Per-row arrays all have length ``L``. ``in_group``/``out_group`` index ``coupling`` (or are
    -1 when the channel count is fixed); ``in_factor`` is the number of input features per
    channel of ``in_group`` (``h*w`` for a dense layer after a flatten, otherwise 1).
    """

    names: tuple[str, ...]
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
    has_bn: np.ndarray
    has_act: np.ndarray
    in_group: np.ndarray
    out_group: np.ndarray
    in_factor: np.ndarray
    coupling: tuple[CouplingGroup, ...] = ()
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
        in_factor`` (group entries are names of ``coupling`` groups or indices)."""
        rows = list(rows)
        group_index = {g.name: i for i, g in enumerate(coupling)}

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
            coupling=tuple(coupling),
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
        n_p, n_l = len(policies), len(self.names)
        ratios = _matrix([pol.prune for pol in policies], [g.name for g in self.coupling], 0.0)
        if channels is None:
            channels = np.array([g.channels for g in self.coupling], dtype=np.int64)
        kept = kept_channels(np.broadcast_to(channels, ratios.shape), ratios) if self.coupling else np.zeros((n_p, 0), np.int64)

        def grouped(base: np.ndarray, group: np.ndarray, factor: np.ndarray | int = 1) -> np.ndarray:
            out = np.broadcast_to(base, (n_p, n_l)).copy()
            has = group >= 0
            if has.any():
                out[:, has] = kept[:, group[has]] * (factor[has] if isinstance(factor, np.ndarray) else factor)
            return out

        cin = grouped(self.cin, self.in_group, self.in_factor)
        cout = grouped(self.cout, self.out_group)
        groups = np.where((self.kind == "dwconv")[None, :], cin, np.broadcast_to(self.groups, (n_p, n_l)))
        return cin, cout, groups

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
                "has_bias", "has_bn", "has_act", "in_group", "out_group", "in_factor")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (without the NAS ``elastic`` hook); ``from_dict`` reads it back."""
        return {"names": list(self.names), "input_shape": list(self.input_shape),
                "columns": {c: getattr(self, c).tolist() for c in self._COLUMNS},
                "coupling": [asdict(g) for g in self.coupling]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LayerTable":
        cols = data["columns"]
        rows = [{"name": n, **{c: cols[c][i] for c in cls._COLUMNS}} for i, n in enumerate(data["names"])]
        coupling = [CouplingGroup(**{k: tuple(v) if isinstance(v, list) else v for k, v in g.items()})
                    for g in data.get("coupling", [])]
        return cls.from_rows(rows, coupling, data.get("input_shape", ()))

    def with_rows(self, **columns: np.ndarray) -> "LayerTable":
        """A copy with some columns replaced (used by builders and tests)."""
        known = {f.name for f in fields(self)}
        unknown = set(columns) - known
        if unknown:
            raise ValueError(f"unknown LayerTable columns {sorted(unknown)}")
        return replace(self, **columns)
