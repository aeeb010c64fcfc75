"""HAQ-style projection of a bit-width policy onto a resource budget (pure numpy, no network).

When a policy costs more than the budget (model size, predicted latency, BitOPs...), bits are
lowered one step at a time on the layer where the cost saved per unit of expected accuracy loss
is largest, until the policy fits. The expected loss of a layer at ``b`` bits is proxied by the
quantization noise of a uniform quantizer, ``sensitivity * count * 2^(-2b)`` (``count`` = weights
for ``w_bits``, input elements for ``a_bits``; 0 at 32 bits).
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from automc.algorithms.quantization._bits import check_bits
from automc.errors import CompressionError, ConfigError
from automc.policy import FLOAT_BITS, Policy

BudgetFn = Callable[[object, Policy], float]
_FIELDS = ("w_bits", "a_bits")


def uniform_policy(layers: Iterable[str], *, w_bits: int, a_bits: int | None = None) -> Policy:
    """Every layer at ``w_bits`` weights and ``a_bits`` inputs (default: same as ``w_bits``)."""
    layers = list(layers)
    a = w_bits if a_bits is None else a_bits
    return Policy(w_bits={n: w_bits for n in layers}, a_bits={n: a for n in layers})


def weight_size_bytes(table, policy: Policy) -> float:
    """Bytes of the weights at their bit-widths plus fp32 biases (a simple size budget)."""
    shapes = table.resolve(policy)
    return float((shapes.weights * shapes.w_bits / 8.0 + shapes.biases * 4.0).sum())


def _noise(bits: int) -> float:
    return 0.0 if bits >= FLOAT_BITS else float(2.0 ** (-2 * bits))


def project_bits(
    table,
    policy: Policy,
    *,
    budget_fn: BudgetFn,
    budget: float,
    bit_choices: Sequence[int],
    sensitivity: Mapping[str, float] | None = None,
    fields: Sequence[str] = ("w_bits",),
    layers: Iterable[str] | None = None,
) -> Policy:
    """The policy with bits lowered (never raised) until ``budget_fn(table, policy) <= budget``.

    Each step lowers one layer's ``w_bits`` (or ``a_bits``, if in ``fields``) to the next smaller
    value of ``bit_choices``; the step chosen maximises cost saved / increase of
    ``sensitivity[layer] * count * 2^(-2b)``; ties go to the larger saving. Layers missing from the
    policy count as 32 bits. Only ``layers`` (default: every compressible layer of ``table``) change.
    Raises ``CompressionError`` when even the lowest bits cannot meet the budget.
    """
    choices = sorted({check_bits(b, where="bit_choices entry") for b in bit_choices})
    if not choices:
        raise ConfigError("bit_choices is empty; give at least one bit-width, e.g. [2, 4, 6, 8]")
    bad = [f for f in fields if f not in _FIELDS]
    if bad or not fields:
        raise ConfigError(f"fields {list(fields)!r} is invalid; use a non-empty subset of {list(_FIELDS)}")
    names = list(table.compressible if layers is None else layers)
    unknown = [n for n in names if n not in table.names]
    if unknown:
        raise ConfigError(f"layers names {unknown[0]!r}, which is not in the layer table")
    sensitivity = dict(sensitivity or {})
    for n, s in sensitivity.items():
        if not np.isfinite(s) or s < 0:
            raise ConfigError(f"sensitivity[{n!r}] = {s!r} is invalid; use a finite number >= 0")
    current = {f: dict(getattr(policy, f)) for f in _FIELDS}
    for f in _FIELDS:
        for n, b in current[f].items():
            check_bits(b, where=f"policy {f}[{n!r}]")

    shapes = table.resolve(policy)
    idx = {n: i for i, n in enumerate(table.names)}
    counts = {
        "w_bits": {n: float(shapes.weights[0, idx[n]]) for n in names},
        "a_bits": {n: float(shapes.cin[0, idx[n]] * shapes.h_in[0, idx[n]] * shapes.w_in[0, idx[n]]) for n in names},
    }

    def make(cur: dict[str, dict[str, int]]) -> Policy:
        return Policy(prune=policy.prune, w_bits=dict(cur["w_bits"]), a_bits=dict(cur["a_bits"]), nas=policy.nas)

    cost = float(budget_fn(table, policy))
    while cost > budget:
        best = None  # (ratio, saving, field, name, lower, new_cost)
        options = []
        for f in fields:
            for n in names:
                b = int(current[f].get(n, FLOAT_BITS))
                lower = [c for c in choices if c < b]
                if not lower:
                    continue
                new_bits = lower[-1]
                trial = {k: dict(v) for k, v in current.items()}
                trial[f][n] = new_bits
                new_cost = float(budget_fn(table, make(trial)))
                saving = cost - new_cost
                if saving <= 0:
                    continue
                loss = sensitivity.get(n, 1.0) * counts[f][n] * (_noise(new_bits) - _noise(b))
                ratio = saving / loss if loss > 0 else np.inf
                options.append((ratio, saving, f, n, new_bits, new_cost))
        if not options:
            raise CompressionError(
                f"budget {budget:g} cannot be met: the lowest reachable cost is {cost:g} "
                f"with bit choices {choices}; raise the budget or allow fewer bits"
            )
        top = max(o[0] for o in options)
        near = [o for o in options if o[0] >= top * (1 - 1e-9)]
        best = max(near, key=lambda o: o[1])
        _, _, f, n, new_bits, cost = best
        current[f][n] = new_bits
    return make(current)
