"""The layer-table side of NAS: shapes of a sub-network without building it (pure numpy).

``ElasticResolver`` is the ``LayerTable.elastic`` hook. It resolves a joint policy in the order
the compressors apply it: the NAS choices first (width -> channels per coupling group, kernel ->
``kh``/``kw``, depth -> ``present``), then the pruning ratios on the resulting channel counts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

import numpy as np

from automc.algorithms.nas._space import ElasticSpace
from automc.analysis.layer_table import CouplingGroup, LayerTable, kept_channels
from automc.errors import CompressionError, ConfigError
from automc.policy import Policy


def nas_channels(channels: np.ndarray | int, width: np.ndarray | float) -> np.ndarray:
    """Channels kept by a width multiplier: ``round(channels * width)``, at least one.

    Written as a pruning ratio ``1 - width`` so that the extractor, which slices with the pruner,
    and the layer table share ``kept_channels``' rounding exactly.
    """
    return kept_channels(channels, 1.0 - np.asarray(width, dtype=np.float64))


@dataclass(frozen=True, eq=False)
class ElasticResolver:
    """An ``ElasticSpace`` bound to a layer table (row and coupling-group indices); picklable."""

    space: ElasticSpace
    table: LayerTable  # the baseline table, without the hook
    width_groups: Mapping[str, tuple[int, ...]]  # width name -> coupling-group indices
    block_rows: Mapping[str, tuple[tuple[int, ...], ...]]  # stage -> rows of each block
    kernel_rows: Mapping[str, tuple[int, ...]]  # kernel name -> rows
    base_kernel: Mapping[str, int]  # kernel name -> baseline kernel size

    # ----------------------------------------------------------------- building
    @classmethod
    def build(cls, space: ElasticSpace, table: LayerTable) -> "ElasticResolver":
        table = replace(table, elastic=None)
        names = table.names
        group_of_producer = {p: i for i, g in enumerate(table.coupling) for p in g.producers}
        width_groups: dict[str, tuple[int, ...]] = {}
        owner: dict[int, str] = {}
        for knob, layers in space.widths.items():
            idx: list[int] = []
            for layer in layers:
                if layer not in group_of_producer:
                    raise CompressionError(
                        f"elastic width {knob!r}: {layer!r} is not a Conv2d/Dense producer of the network's "
                        f"channels; producers: {', '.join(group_of_producer)}")
                gi = group_of_producer[layer]
                group = table.coupling[gi]
                if not group.prunable:
                    raise CompressionError(f"elastic width {knob!r}: the channels of {layer!r} cannot be sliced: {group.reason}")
                if owner.setdefault(gi, knob) != knob:
                    raise CompressionError(
                        f"elastic widths {owner[gi]!r} and {knob!r} both scale the group of {layer!r}; "
                        "list each coupling group in one width only")
                if gi not in idx:
                    idx.append(gi)
            width_groups[knob] = tuple(idx)

        def rows_under(path: str) -> tuple[int, ...]:
            return tuple(i for i, n in enumerate(names) if n == path or n.startswith(path + "."))

        block_rows = {stage: tuple(rows_under(b) for b in blocks) for stage, blocks in space.stages.items()}
        kernel_rows: dict[str, tuple[int, ...]] = {}
        base_kernel: dict[str, int] = {}
        for knob, layers in space.kernels.items():
            rows = []
            for layer in layers:
                if layer not in names or table.kind[names.index(layer)] not in ("conv", "dwconv"):
                    raise CompressionError(f"elastic kernel {knob!r}: {layer!r} is not a Conv2d of the network")
                rows.append(names.index(layer))
            kh, kw = table.kh[rows], table.kw[rows]
            if not (np.all(kh == kw) and np.all(kh == kh[0]) and kh[0] % 2 == 1):
                raise CompressionError(
                    f"elastic kernel {knob!r}: its convolutions must share one square, odd kernel; "
                    f"found {sorted(set(zip(kh.tolist(), kw.tolist())))}")
            kernel_rows[knob], base_kernel[knob] = tuple(rows), int(kh[0])
        return cls(space, table, width_groups, block_rows, kernel_rows, base_kernel)

    # ----------------------------------------------------------------- choices
    def choices(self, *, width: Sequence[float] = (), depth: Sequence[int] = (),
                kernel: Sequence[int] = ()) -> dict[str, tuple[Any, ...]]:
        """Decision key -> allowed values, from the YAML's lists; the unchanged value is always one.

        Keys with a single allowed value (nothing to choose) are left out.
        """
        out: dict[str, tuple[Any, ...]] = {}
        for stage, blocks in self.space.stages.items():
            n, m = len(blocks), self.space.min_depth[stage]
            out[f"{stage}.depth"] = tuple(sorted({int(d) for d in depth if m <= d <= n} | {n}))
        for knob in self.space.widths:
            out[f"{knob}.width"] = tuple(sorted({float(w) for w in width} | {1.0}))
        for knob, k0 in self.base_kernel.items():
            out[f"{knob}.kernel"] = tuple(sorted({int(k) for k in kernel if k <= k0 and k % 2 == 1} | {k0}))
        return {k: v for k, v in out.items() if len(v) > 1}

    def identity(self) -> dict[str, Any]:
        """The NAS choices that leave the network unchanged."""
        out: dict[str, Any] = {f"{s}.depth": len(b) for s, b in self.space.stages.items()}
        out.update({f"{w}.width": 1.0 for w in self.space.widths})
        out.update({f"{k}.kernel": k0 for k, k0 in self.base_kernel.items()})
        return out

    def validate(self, nas: Mapping[str, Any]) -> dict[str, Any]:
        """``nas`` completed with the unchanged values; raises on unknown keys or invalid values."""
        full = self.identity()
        unknown = sorted(set(nas) - set(full))
        if unknown:
            raise CompressionError(f"policy nas names {unknown[0]!r}, which this network does not declare; "
                                   f"valid keys: {', '.join(full)}")
        for key, value in nas.items():
            knob, dim = key.rsplit(".", 1)
            if dim == "width":
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
                    raise ConfigError(f"policy nas[{key!r}] = {value!r}; a width multiplier is in (0, 1]")
                full[key] = float(value)
            elif dim == "depth":
                n, m = len(self.space.stages[knob]), self.space.min_depth[knob]
                if isinstance(value, bool) or int(value) != value or not m <= value <= n:
                    raise ConfigError(f"policy nas[{key!r}] = {value!r}; stage {knob!r} keeps {m} to {n} blocks")
                full[key] = int(value)
            else:
                k0 = self.base_kernel[knob]
                if isinstance(value, bool) or int(value) != value or value % 2 == 0 or not 1 <= value <= k0:
                    raise ConfigError(f"policy nas[{key!r}] = {value!r}; use an odd kernel size from 1 to the "
                                      f"baseline's {k0} (kernels shrink by centre crop)")
                full[key] = int(value)
        return full

    # ----------------------------------------------------------------- resolving
    def group_channels(self, policies: Sequence[Policy]) -> np.ndarray:
        """``(P, G)`` channels of every coupling group after the NAS width choices."""
        base = np.array([g.channels for g in self.table.coupling], dtype=np.int64)
        out = np.broadcast_to(base, (len(policies), len(base))).copy()
        for p, pol in enumerate(policies):
            for knob, groups in self.width_groups.items():
                w = pol.nas.get(f"{knob}.width", 1.0)
                if w != 1.0 and groups:
                    out[p, list(groups)] = nas_channels(base[list(groups)], w)
        return out

    def removed_rows(self, nas: Mapping[str, Any]) -> list[int]:
        rows: list[int] = []
        for stage, blocks in self.block_rows.items():
            for block in blocks[int(nas.get(f"{stage}.depth", len(blocks))):]:
                rows.extend(block)
        return rows

    def __call__(self, arrays: dict[str, np.ndarray], policies: Sequence[Policy]) -> dict[str, np.ndarray]:
        t = self.table
        for pol in policies:
            self.validate(pol.nas)
        out = dict(arrays)
        out["cin"], out["cout"], out["groups"] = t.channel_shapes(policies, self.group_channels(policies))
        kh, kw, present = out["kh"].copy(), out["kw"].copy(), out["present"].copy()
        for p, pol in enumerate(policies):
            for knob, rows in self.kernel_rows.items():
                k = pol.nas.get(f"{knob}.kernel")
                if k is not None:
                    kh[p, list(rows)] = kw[p, list(rows)] = int(k)
            present[p, self.removed_rows(pol.nas)] = False
        out["kh"], out["kw"], out["present"] = kh, kw, present
        return out

    def structure(self, nas: Mapping[str, Any]) -> list[dict[str, str]]:
        """The sub-network ``nas`` per stage, for reports: ``{"stage", "depth", "width",
        "kernel"}`` (blocks kept of all, width multiplier and channels, kernel of each kept block);
        widths and kernels outside every stage (a stem, a head) get rows of their own."""
        full = self.validate(nas)
        channels = self.group_channels([Policy(nas=dict(full))])[0]
        base = np.array([g.channels for g in self.table.coupling])

        def width(knob: str) -> str:
            pairs = dict.fromkeys((int(base[g]), int(channels[g])) for g in self.width_groups[knob])
            return f"{full[f'{knob}.width']:g} ({', '.join(f'{b}->{k}' for b, k in pairs)} channels)"

        def kernel_of(block: str) -> str | None:
            knob = next((k for k, layers in self.space.kernels.items()
                         if any(layer.startswith(block + ".") for layer in layers)), None)
            return None if knob is None else str(full[f"{knob}.kernel"])

        rows, used = [], set()
        for stage, blocks in self.space.stages.items():
            d = full[f"{stage}.depth"]
            kernels = [k for k in (kernel_of(b) for b in blocks[:d]) if k is not None]
            used.update(k for k, layers in self.space.kernels.items() if any(layer.startswith(b + ".")
                                                                             for b in blocks for layer in layers))
            rows.append({"stage": stage, "depth": f"{d}/{len(blocks)}",
                         "width": width(stage) if stage in self.width_groups else "-",
                         "kernel": ",".join(kernels) or "-"})
        for knob in self.width_groups:
            if knob not in self.space.stages:
                rows.append({"stage": knob, "depth": "-", "width": width(knob), "kernel": "-"})
        for knob in self.space.kernels:
            if knob not in used:
                rows.append({"stage": knob, "depth": "-", "width": "-", "kernel": str(full[f"{knob}.kernel"])})
        return rows

    # ----------------------------------------------------------------- the sub-network's table
    def sub_table(self, nas: Mapping[str, Any]) -> LayerTable:
        """The layer table of the extracted sub-network, derived without tracing it.

        Removed rows are dropped; groups lose their removed producers, consumers and followers (a
        group with no producer left is dropped); channel counts and kernels are the chosen ones.
        """
        self.validate(nas)
        t = self.table
        pol = [Policy(nas=dict(nas))]
        base = {"kh": np.broadcast_to(t.kh, (1, len(t))), "kw": np.broadcast_to(t.kw, (1, len(t))),
                "present": np.ones((1, len(t)), dtype=bool)}
        arrays = self(base, pol)
        keep = np.nonzero(arrays["present"][0])[0]
        removed = [b for s, blocks in self.space.stages.items() for b in blocks[int(nas.get(f"{s}.depth", len(blocks))):]]

        def removed_block(path: str) -> str | None:
            return next((b for b in removed if path == b or path.startswith(b + ".")), None)

        def followers(paths: Sequence[str]) -> tuple[str, ...]:
            # a removed block's cells are gone; the nn.Identity in its place has nothing to slice
            return tuple(f for f in paths if removed_block(f) is None)

        channels = self.group_channels(pol)[0]
        new_index: dict[int, int] = {}
        groups: list[CouplingGroup] = []
        for gi, g in enumerate(t.coupling):
            producers = tuple(p for p in g.producers if removed_block(p) is None)
            if not producers:
                continue
            new_index[gi] = len(groups)
            groups.append(replace(g, channels=int(channels[gi]), producers=producers,
                                  consumers=tuple(c for c in g.consumers if removed_block(c) is None),
                                  followers=followers(g.followers)))
        # index -1 (no group) maps to the trailing -1
        remap = np.array([new_index.get(i, -1) for i in range(len(t.coupling))] + [-1], dtype=np.int64)
        columns = {f: getattr(t, f)[keep] for f in ("kind", "stride", "h_in", "w_in", "h_out", "w_out",
                                                     "has_bias", "has_bn", "has_act", "in_factor", "out_factor",
                                                     "in_fixed", "out_fixed")}
        for f in ("cin", "cout", "kh", "kw", "groups"):
            columns[f] = np.asarray(arrays[f][0])[keep].astype(np.int64)
        columns["in_group"] = remap[t.in_group[keep]]
        columns["out_group"] = remap[t.out_group[keep]]
        new_row = {int(r): i for i, r in enumerate(keep)}
        columns["extra"] = tuple((new_row[r], side, int(remap[g]), f) for r, side, g, f in t.extra
                                 if r in new_row and remap[g] >= 0)
        return replace(t, names=tuple(t.names[i] for i in keep), coupling=tuple(groups), elastic=None, **columns)


def resolver_of(table: LayerTable) -> ElasticResolver:
    """The table's elastic resolver, or a ``CompressionError`` that says how to declare one."""
    if not isinstance(table.elastic, ElasticResolver):
        raise CompressionError(
            "this network declares no elastic dimensions; give it a method `elastic_space(self) -> "
            "automc.algorithms.nas.ElasticSpace` (see the automc.algorithms.nas docstring), or attach one "
            "with automc.algorithms.nas.with_elastic_space(table, net, space)")
    return table.elastic
