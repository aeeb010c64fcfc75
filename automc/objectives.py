"""Objective and constraint names of the experiment YAML, and how each is computed.

Names: ``accuracy`` (test-split top-1, %), ``accuracy_drop`` (baseline minus candidate, points),
``macs``, ``params``, ``bitops``, ``size`` (bytes of the deployed weights),
``latency@<device>`` (ms) and ``energy@<device>`` (mJ). Every name but the accuracy ones is
computed from the layer table by the cost models, without building a network, so constraints
are checked before any training. A new device is one more name, nothing else changes.

In a constraint on a cost metric, ``%`` is a share of the baseline network's value
(``macs <= 25%``); ``resolve_constraints`` turns it into an absolute bound once the baseline's
costs are known. For ``accuracy`` and ``accuracy_drop``, ``%`` stays points.

``fmt_metric`` writes any of them for people, the same in the log, the progress bar and the report.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Literal, Sequence

import numpy as np

from automc.errors import AutomcError, ConfigError

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
        raise ConfigError(
            f"unknown objective {text!r}; valid: {', '.join(k for k in _KINDS if k not in _DEVICE_KINDS)}, "
            "latency@<device>, energy@<device> (`automc devices` lists devices)"
        )
    if (kind in _DEVICE_KINDS) != bool(sep and device):
        raise ConfigError(f"objective {text!r}: {kind} needs a device, as '{kind}@arm-a76'" if kind in _DEVICE_KINDS
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
    """``metric op value``, with ``value`` in the metric's base unit (ms, mJ, bytes, count, %), or,
    when ``relative``, a fraction of the baseline's value (``macs <= 25%`` -> 0.25)."""

    metric: Metric
    op: Literal["<=", ">="]
    value: float
    text: str
    relative: bool = False

    def absolute(self, baseline_value: float) -> "Constraint":
        """This constraint with ``value`` in the metric's unit, given the baseline's value of it."""
        if not self.relative:
            return self
        return replace(self, value=self.value * float(baseline_value), relative=False)

    def violation(self, observed: np.ndarray | float) -> np.ndarray:
        """How far past the bound (>0 = violated, Optuna's convention)."""
        if self.relative:
            raise ValueError(f"constraint {self.text!r} is relative to the baseline; resolve_constraints() it first")
        observed = np.asarray(observed, dtype=float)
        return observed - self.value if self.op == "<=" else self.value - observed

    def satisfied(self, observed: np.ndarray | float) -> np.ndarray:
        return self.violation(observed) <= 0


_CONSTRAINT = re.compile(r"^\s*(?P<metric>[A-Za-z_]+(?:@[A-Za-z0-9_.\-/]+)?)\s*(?P<op><=|>=)\s*(?P<num>[0-9.eE+-]+)\s*(?P<unit>[A-Za-z%]*)\s*$")


def parse_constraint(text: str) -> Constraint:
    m = _CONSTRAINT.match(text)
    if not m:
        raise ConfigError(f"constraint {text!r} must look like 'latency@arm-a76 <= 20ms', 'size <= 2MB', "
                         "'macs <= 25%' (share of the baseline) or 'accuracy_drop <= 1.0'")
    metric = parse_objective(m["metric"])
    try:
        number = float(m["num"])
    except ValueError:
        raise ConfigError(f"constraint {text!r}: {m['num']!r} is not a number") from None
    table = _UNITS.get(metric.kind) or (_UNITS["count"] if metric.kind in ("macs", "params", "bitops") else _UNITS["points"])
    unit = m["unit"].lower()
    relative = unit == "%" and not metric.needs_training  # cost metric: % is a share of the baseline
    if unit not in table and not relative:
        units = [u for u in table if u] + ([] if metric.needs_training else ["% (share of the baseline)"])
        raise ConfigError(f"constraint {text!r}: unit {m['unit']!r} is not one of {', '.join(units)}")
    if relative:
        return Constraint(metric=metric, op=m["op"], value=number / 100, text=text.strip(), relative=True)  # type: ignore[arg-type]
    return Constraint(metric=metric, op=m["op"], value=number * table[unit], text=text.strip())  # type: ignore[arg-type]


def resolve_constraints(constraints: Sequence[Constraint], baseline_metrics: dict[str, float]) -> list[Constraint]:
    """Absolute constraints: each relative one (``macs <= 25%``) becomes ``fraction * baseline``,
    keeping its ``text`` (Optuna's constraint keys stay the YAML text); absolute ones pass through."""
    out = []
    for c in constraints:
        if c.relative and c.metric.name not in baseline_metrics:
            raise AutomcError(f"constraint {c.text!r} is relative to the baseline, but the baseline has no "
                              f"{c.metric.name} value; write an absolute bound (e.g. with a unit) instead")
        out.append(c.absolute(baseline_metrics[c.metric.name]) if c.relative else c)
    return out


def fmt_metric(name: str, value: float | None) -> str:
    """A metric for people: 98.9%, 0.142M, 12.3KB, 0.041ms, 0.2mJ."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if name.startswith("accuracy") or name == "test_accuracy":
        return f"{value:.2f}%"
    if name.startswith("latency"):
        return f"{value:.4g}ms"
    if name.startswith("energy"):
        return f"{value:.4g}mJ"
    if name in ("size", "file_bytes"):
        return f"{value / 1e3:.1f}KB" if value < 1e6 else f"{value / 1e6:.2f}MB"
    if name in ("macs", "params", "bitops"):
        for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
            if abs(value) >= div:
                return f"{value / div:.3g}{unit}"
        return f"{value:.0f}"
    return f"{value:.4g}"
