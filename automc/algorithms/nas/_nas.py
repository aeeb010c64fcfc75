"""``ElasticNAS``: the compressor that picks a sub-network (elastic width, depth, kernel)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from automc.algorithms._base import Compressor, Decision
from automc.algorithms.nas._extract import extract, sub_policy
from automc.algorithms.nas._resolver import resolver_of
from automc.algorithms.pruning import IMPORTANCE
from automc.analysis.layer_table import LayerTable
from automc.errors import ConfigError
from automc.policy import Policy


class ElasticNAS(Compressor):
    """Once-for-All-style choices per stage/block: width multiplier, depth, kernel size.

    ``width``, ``depth`` and ``kernel`` are the YAML's choice lists (``compress.nas``); each
    declared knob offers the values that fit it, plus its unchanged value. ``supernet`` is the
    YAML's elastic-training section, applied to the baseline before the search.
    """

    name = "nas"
    section = "nas"

    def __init__(self, *, width: Sequence[float] = (0.5, 0.75, 1.0), depth: Sequence[int] = (),
                 kernel: Sequence[int] = (), importance: str = "l1", supernet: Mapping[str, Any] | None = None):
        for w in width:
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 < w <= 1:
                raise ConfigError(f"nas.width has {w!r}; width multipliers are in (0, 1]")
        for d in depth:
            if isinstance(d, bool) or not isinstance(d, int) or d < 0:
                raise ConfigError(f"nas.depth has {d!r}; a depth is a number of blocks kept (>= 0)")
        for k in kernel:
            if isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0:
                raise ConfigError(f"nas.kernel has {k!r}; kernel sizes are odd positive integers (3, 5, 7)")
        IMPORTANCE.get(importance)
        self.width, self.depth, self.kernel = tuple(width), tuple(depth), tuple(kernel)
        self.importance = importance
        self.supernet = supernet  # elastic training settings (automc.search.baseline trains it before the search)

    def choices(self, table: LayerTable) -> dict[str, tuple[Any, ...]]:
        """Decision key -> allowed values on ``table``."""
        return resolver_of(table).choices(width=self.width, depth=self.depth, kernel=self.kernel)

    def decisions(self, table: LayerTable) -> list[Decision]:
        identity = resolver_of(table).identity()
        return [Decision("nas", key, "categorical", choices=values, default=identity[key])
                for key, values in self.choices(table).items()]

    def apply(self, network, table: LayerTable, policy: Policy, *, calib_x=None):
        return extract(network, table, policy.nas, importance=self.importance)

    def after_apply(self, table: LayerTable, policy: Policy) -> tuple[LayerTable, Policy]:
        """The table and policy the next compressors must see (the sub-network's); see ``sub_policy``."""
        return sub_policy(table, policy)
