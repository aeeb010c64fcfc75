"""``ElasticSpace``: how a network declares its elastic dimensions (plain data, no MindSpore)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from automc.errors import CompressionError


def _tuples(mapping: Mapping[str, Sequence[str]] | None, what: str) -> dict[str, tuple[str, ...]]:
    out = {}
    for name, paths in (mapping or {}).items():
        if not isinstance(name, str) or not name or "." in name:
            raise CompressionError(f"elastic {what} name {name!r} must be a non-empty string without dots (e.g. 'stage1')")
        if isinstance(paths, str):
            paths = (paths,)
        paths = tuple(paths)
        if not paths or not all(isinstance(p, str) and p for p in paths):
            raise CompressionError(f"elastic {what} {name!r} must list one or more cell paths, got {paths!r}")
        out[name] = paths
    return out


@dataclass(frozen=True)
class ElasticSpace:
    """The elastic dimensions of a network, as cell paths (``net.cells_and_names()`` names).

    ``stages``     stage name -> its block cells, in execution order. A depth choice ``d`` keeps the
                   first ``d`` blocks; the others become ``nn.Identity``, so every block that can be
                   dropped must map its input to an output of the same shape (a residual block with
                   identity shortcut, or a plain cin == cout block).
    ``min_depth``  stage name -> blocks always kept (default 1).
    ``widths``     width name -> producer layers (Conv2d/Dense); every coupling group that holds one
                   of them keeps ``round(channels * multiplier)`` channels (at least one).
    ``kernels``    kernel name -> convolutions (normally depthwise) whose kernel shrinks together,
                   by centre crop of the baseline kernel; they must be square, odd and "same"-padded.

    Decision keys are ``<stage>.depth``, ``<width name>.width`` and ``<kernel name>.kernel``.
    """

    stages: Mapping[str, Sequence[str]] = field(default_factory=dict)
    min_depth: Mapping[str, int] = field(default_factory=dict)
    widths: Mapping[str, Sequence[str]] = field(default_factory=dict)
    kernels: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "stages", _tuples(self.stages, "stage"))
        object.__setattr__(self, "widths", _tuples(self.widths, "width"))
        object.__setattr__(self, "kernels", _tuples(self.kernels, "kernel"))
        min_depth = {}
        for stage, blocks in self.stages.items():
            m = (self.min_depth or {}).get(stage, 1)
            if isinstance(m, bool) or not isinstance(m, int) or not 0 <= m <= len(blocks):
                raise CompressionError(f"elastic stage {stage!r}: min_depth {m!r} must be an integer in 0..{len(blocks)}")
            min_depth[stage] = m
        unknown = sorted(set(self.min_depth or {}) - set(self.stages))
        if unknown:
            raise CompressionError(f"min_depth names unknown stages {unknown}; stages: {', '.join(self.stages)}")
        object.__setattr__(self, "min_depth", min_depth)

    @property
    def keys(self) -> tuple[str, ...]:
        """Every decision key this space can take (before the choices filter out fixed ones)."""
        return (tuple(f"{s}.depth" for s in self.stages) + tuple(f"{w}.width" for w in self.widths)
                + tuple(f"{k}.kernel" for k in self.kernels))
