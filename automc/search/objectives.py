"""Objective and constraint names of the experiment YAML, and how each is computed.

Names: ``accuracy`` (test-split top-1, %), ``accuracy_drop`` (baseline minus candidate, points),
``macs``, ``params``, ``bitops``, ``size`` (bytes of the deployed weights),
``latency@<device>`` (ms) and ``energy@<device>`` (mJ). Every name but the accuracy ones is
computed from the layer table by the cost models, without building a network, so constraints
are checked before any training. A new device is one more name, nothing else changes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

Kind = Literal["accuracy", "accuracy_drop", "macs", "params", "bitops", "size", "latency", "energy"]
_KINDS: dict[str, tuple[str, str]] = {  # kind -> (direction, unit)
    "accuracy": ("maximize", "%"),
    "accuracy_drop": ("minimize", "points"),
    "macs": ("minimize", ""),
    "params": ("minimize", ""),
    "bitops": ("minimize", ""),
    "size": ("minimize", "bytes"),
    "latency": ("minimize", "ms"),
    "energy": ("minimize", "mJ"),
}
_DEVICE_KINDS = ("latency", "energy")


@dataclass(frozen=True)
class Metric:
    name: str
    kind: Kind
    device: str | None = None

    @property
    def direction(self) -> str:
        return _KINDS[self.kind][0]

    @property
    def unit(self) -> str:
        return _KINDS[self.kind][1]

    @property
    def needs_training(self) -> bool:
        return self.kind in ("accuracy", "accuracy_drop")


def parse_objective(text: str) -> Metric:
    name = text.strip()
    kind, sep, device = name.partition("@")
    if kind not in _KINDS:
        raise ValueError(
            f"unknown objective {text!r}; valid: {', '.join(k for k in _KINDS if k not in _DEVICE_KINDS)}, "
            "latency@<device>, energy@<device> (`automc devices` lists devices)"
        )
    if (kind in _DEVICE_KINDS) != bool(sep and device):
        raise ValueError(f"objective {text!r}: {kind} needs a device, as '{kind}@arm-a76'" if kind in _DEVICE_KINDS
                         else f"objective {text!r}: {kind} takes no device")
    return Metric(name=name, kind=kind, device=device or None)  # type: ignore[arg-type]


_UNITS = {
    "latency": {"ms": 1.0, "us": 1e-3, "s": 1e3, "": 1.0},
    "energy": {"mj": 1.0, "uj": 1e-3, "j": 1e3, "": 1.0},
    "size": {"b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "kib": 1024, "mib": 1024**2, "gib": 1024**3, "": 1},
    "count": {"": 1, "k": 1e3, "m": 1e6, "g": 1e9},
    "points": {"": 1.0, "%": 1.0},
}


@dataclass(frozen=True)
class Constraint:
    """``metric op value``, with ``value`` in the metric's base unit (ms, mJ, bytes, count, %)."""

    metric: Metric
    op: Literal["<=", ">="]
    value: float
    text: str

    def violation(self, observed: np.ndarray | float) -> np.ndarray:
        """How far past the bound (>0 = violated, Optuna's convention)."""
        observed = np.asarray(observed, dtype=float)
        return observed - self.value if self.op == "<=" else self.value - observed

    def satisfied(self, observed: np.ndarray | float) -> np.ndarray:
        return self.violation(observed) <= 0


_CONSTRAINT = re.compile(r"^\s*(?P<metric>[A-Za-z_]+(?:@[A-Za-z0-9_.\-/]+)?)\s*(?P<op><=|>=)\s*(?P<num>[0-9.eE+-]+)\s*(?P<unit>[A-Za-z%]*)\s*$")


def parse_constraint(text: str) -> Constraint:
    m = _CONSTRAINT.match(text)
    if not m:
        raise ValueError(f"constraint {text!r} must look like 'latency@arm-a76 <= 20ms', 'size <= 2MB' or 'accuracy_drop <= 1.0'")
    metric = parse_objective(m["metric"])
    try:
        number = float(m["num"])
    except ValueError:
        raise ValueError(f"constraint {text!r}: {m['num']!r} is not a number") from None
    table = _UNITS.get(metric.kind) or (_UNITS["count"] if metric.kind in ("macs", "params", "bitops") else _UNITS["points"])
    unit = m["unit"].lower()
    if unit not in table:
        raise ValueError(f"constraint {text!r}: unit {m['unit']!r} is not one of {', '.join(u for u in table if u) or 'none'}")
    return Constraint(metric=metric, op=m["op"], value=number * table[unit], text=text.strip())  # type: ignore[arg-type]


def cost_metrics(table, policies, metrics: Sequence[Metric]) -> dict[str, np.ndarray]:
    """Every non-accuracy metric of ``metrics`` for each policy, as ``(P,)`` arrays (no network built)."""
    from automc.policy import Policy

    if isinstance(policies, Policy):
        policies = [policies]
    from automc import hw_cost

    out: dict[str, np.ndarray] = {}
    shapes = None
    estimates: dict[str, object] = {}
    for metric in metrics:
        if metric.needs_training or metric.name in out:
            continue
        if metric.kind in ("macs", "params", "bitops", "size"):
            shapes = shapes if shapes is not None else table.resolve(policies)
            per_layer = hw_cost.layer_size_bytes(shapes) if metric.kind == "size" else getattr(shapes, metric.kind)
            out[metric.name] = per_layer.sum(axis=1).astype(float)
            continue
        if metric.device not in estimates:
            estimates[metric.device] = hw_cost.estimate(table, list(policies), metric.device)
        est = estimates[metric.device]
        out[metric.name] = np.asarray(est.latency_ms if metric.kind == "latency" else est.energy_mj, dtype=float)
    return out
