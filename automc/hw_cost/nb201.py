"""NAS-Bench-201 architectures as automc layer tables: the external check of the cost model.

The CIFAR network of NAS-Bench-201 (Dong & Yang, ICLR 2020): stem 3x3 conv 3->16 + BN,
three stages of 5 cells (16/32/64 channels at 32/16/8 pixels), a ResNet basic block between
stages (ReLU-Conv-BN 3x3 stride 2, ReLU-Conv-BN 3x3, shortcut 2x2 avg-pool + 1x1 conv, add),
then BN+ReLU, global average pool and a linear classifier; batch 1, 32x32 input.
A cell has 4 nodes; node j sums ``op(node i)`` for i < j with ops ``none``, ``skip_connect``,
``nor_conv_1x1``/``nor_conv_3x3`` (ReLU-Conv-BN: one ``conv`` row with ``has_act``/``has_bn``)
and ``avg_pool_3x3`` (a ``pool`` row); a node with n inputs gets n-1 ``add`` rows.

``prune_dead`` drops edges whose result never reaches the cell output (what graph compilers
such as TFLite do; a cell whose output does not depend on its input makes the whole
network constant, which such a runtime folds away); ``none_cost`` charges ``none`` edges as an element-wise op plus an add
(what eager PyTorch does: ``x.mul(0)``). Both default to the compiled-graph view.
"""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

import numpy as np

from automc.analysis.layer_table import LayerTable
from automc.errors import ConfigError
from automc.hw_cost.calibration import Sample, calibrate
from automc.hw_cost.registry import load_device

NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
DEFAULT_CSV = Path("/work/shared/data/nb201_measured_latency.csv")


def parse_arch(arch_str: str) -> list[list[tuple[str, int]]]:
    """``|op~0|+|op~0|op~1|+|...|`` -> per node j (1..3) a list of ``(op, source node)``."""
    nodes = []
    for part in arch_str.strip().split("+"):
        edges = [e for e in part.split("|") if e]
        parsed = []
        for e in edges:
            op, _, src = e.partition("~")
            if op not in NB201_OPS or not src.isdigit():
                raise ConfigError(f"bad NAS-Bench-201 edge {e!r} in {arch_str!r}; ops: {', '.join(NB201_OPS)}")
            parsed.append((op, int(src)))
        nodes.append(parsed)
    if len(nodes) != 3 or [len(n) for n in nodes] != [1, 2, 3]:
        raise ConfigError(f"bad NAS-Bench-201 arch string {arch_str!r}: expected 3 nodes with 1, 2, 3 edges")
    return nodes


def is_connected(nodes: list[list[tuple[str, int]]]) -> bool:
    """Whether the cell output (node 3) depends on its input (a path of non-``none`` ops)."""
    reach = {0}
    for j, edges in enumerate(nodes, start=1):
        if any(op != "none" and src in reach for op, src in edges):
            reach.add(j)
    return 3 in reach


def live_edges(nodes: list[list[tuple[str, int]]]) -> list[list[bool]]:
    """Whether each edge's result reaches the output node (node 3)."""
    live_node = {3}
    for j in (3, 2, 1):
        if j in live_node:
            for op, src in nodes[j - 1]:
                if op != "none":
                    live_node.add(src)
    return [[(j in live_node) for _ in nodes[j - 1]] for j in (1, 2, 3)]


def _cell_rows(prefix: str, nodes, c: int, hw: int, prune_dead: bool, none_cost: bool) -> list[dict]:
    rows: list[dict] = []
    live = live_edges(nodes)
    for j, edges in enumerate(nodes, start=1):
        n_inputs = 0
        for e_idx, (op, src) in enumerate(edges):
            if prune_dead and not live[j - 1][e_idx]:
                continue
            name = f"{prefix}.n{j}.e{src}"
            geo = dict(cin=c, cout=c, h_in=hw, w_in=hw, h_out=hw, w_out=hw)
            if op == "none":
                if none_cost:
                    rows.append(dict(name=f"{name}.zero", kind="add", **geo))
                    n_inputs += 1
                continue
            n_inputs += 1
            if op in ("nor_conv_1x1", "nor_conv_3x3"):
                k = 1 if op == "nor_conv_1x1" else 3
                rows.append(dict(name=f"{name}.conv", kind="conv", kh=k, kw=k, has_bn=True, has_act=True, **geo))
            elif op == "avg_pool_3x3":
                rows.append(dict(name=f"{name}.pool", kind="pool", kh=3, kw=3, **geo))
        for a in range(max(n_inputs - 1, 0)):
            rows.append(dict(name=f"{prefix}.n{j}.add{a}", kind="add", cin=c, cout=c, h_in=hw, w_in=hw, h_out=hw, w_out=hw))
    return rows


def _reduction_rows(prefix: str, cin: int, cout: int, hw: int) -> list[dict]:
    h2 = hw // 2
    return [
        dict(name=f"{prefix}.conv_a", kind="conv", cin=cin, cout=cout, kh=3, kw=3, stride=2, h_in=hw, w_in=hw, h_out=h2, w_out=h2, has_bn=True, has_act=True),
        dict(name=f"{prefix}.conv_b", kind="conv", cin=cout, cout=cout, kh=3, kw=3, h_in=h2, w_in=h2, h_out=h2, w_out=h2, has_bn=True, has_act=True),
        dict(name=f"{prefix}.down.pool", kind="pool", cin=cin, cout=cin, kh=2, kw=2, stride=2, h_in=hw, w_in=hw, h_out=h2, w_out=h2),
        dict(name=f"{prefix}.down.conv", kind="conv", cin=cin, cout=cout, kh=1, kw=1, h_in=h2, w_in=h2, h_out=h2, w_out=h2),
        dict(name=f"{prefix}.add", kind="add", cin=cout, cout=cout, h_in=h2, w_in=h2, h_out=h2, w_out=h2),
    ]


@lru_cache(maxsize=32768)
def nb201_table(arch_str: str, *, prune_dead: bool = True, none_cost: bool = False) -> LayerTable:
    """The layer table of one NAS-Bench-201 CIFAR network (see module docstring)."""
    nodes = parse_arch(arch_str)
    if prune_dead and not is_connected(nodes):
        # The cell output is constant (no path from its input): a compiling runtime folds
        # the whole network into a constant, leaving only a tiny output op.
        return LayerTable.from_rows(
            [dict(name="classifier", kind="dense", cin=64, cout=10, has_bias=True)], input_shape=(3, 32, 32)
        )
    rows = [dict(name="stem", kind="conv", cin=3, cout=16, kh=3, kw=3, h_in=32, w_in=32, h_out=32, w_out=32, has_bn=True)]
    channels, sizes = (16, 32, 64), (32, 16, 8)
    for stage, (c, hw) in enumerate(zip(channels, sizes)):
        if stage > 0:
            rows += _reduction_rows(f"reduce{stage}", channels[stage - 1], c, sizes[stage - 1])
        for cell in range(5):
            rows += _cell_rows(f"s{stage}.c{cell}", nodes, c, hw, prune_dead, none_cost)
    rows.append(dict(name="gap", kind="pool", cin=64, cout=64, kh=8, kw=8, stride=8, h_in=8, w_in=8, h_out=1, w_out=1))
    rows.append(dict(name="classifier", kind="dense", cin=64, cout=10, has_bias=True))
    return LayerTable.from_rows(rows, input_shape=(3, 32, 32))


def load_nb201_measurements(path: str | Path = DEFAULT_CSV) -> tuple[list[str], dict[str, np.ndarray]]:
    """Arch strings and per-device measured latency (ms) columns of the NB201 latency CSV."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"NB201 latency file {path} does not exist; see /work/shared/data/README.md")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        fields = [f for f in (reader.fieldnames or []) if f not in ("arch_idx", "arch_str")]
    archs = [r["arch_str"] for r in rows]
    cols = {f: np.array([float(r[f]) if r[f] not in ("", "nan") else np.nan for r in rows]) for f in fields}
    return archs, cols


# How each source ran the networks: HW-NAS-Bench's raspi4/pixel3 figures come from compiled
# TFLite graphs (dead branches dropped, constant networks folded); HELP's phones, Xeons and
# GPUs ran eager PyTorch (every edge runs, ``none`` is a real x*0); the eyeriss/fpga figures
# are simulator estimates over every edge.
COMPILED = dict(prune_dead=True, none_cost=False)
EAGER = dict(prune_dead=False, none_cost=True)
SIMULATED = dict(prune_dead=False, none_cost=False)


def measurement_view(column: str) -> dict:
    """``nb201_table`` options matching how the figures of ``column`` were measured."""
    if column in ("raspi4", "pixel3"):
        return COMPILED
    if column in ("eyeriss", "fpga"):
        return SIMULATED
    return EAGER


def fit_nb201_profile(column: str, device: str, *, n_calib: int = 20, seed: int = 0, path: str | Path = DEFAULT_CSV,
                      measurements: tuple[list[str], dict[str, np.ndarray]] | None = None):
    """Calibrate ``device`` (from its datasheet values) on ``n_calib`` random architectures of one
    measured column; returns ``(profile, calibration indices)`` so callers can hold the rest out.
    ``measurements`` is what ``load_nb201_measurements`` returned, when the caller has read it."""
    archs, measured = measurements if measurements is not None else load_nb201_measurements(path)
    y = measured[column]
    valid = np.flatnonzero(np.isfinite(y) & (y > 0))
    calib = np.random.default_rng(seed).choice(valid, size=n_calib, replace=False)
    view = measurement_view(column)
    samples = [Sample(nb201_table(archs[i], **view), float(y[i])) for i in calib]
    source = f"NAS-Bench-201 latencies measured on {column} ({n_calib} architectures, seed {seed}; HW-NAS-Bench/HELP)"
    return calibrate(load_device(device, datasheet=True), samples, source=source), calib
