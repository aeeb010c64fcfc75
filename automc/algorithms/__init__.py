"""Compression techniques behind one small interface (``Compressor``), keyed by their YAML names.

A trial applies them in a fixed order: ``nas`` (choose the sub-network), then ``pruning``
(remove channels), then ``quantization`` (bit-widths of what is left). The layer table resolves
a joint policy in the same order, so cost models see the combined effect.

``find_cell`` / ``replace_cell``: the cell surgery by dotted name that compressors and the deploy
form share.
"""

from __future__ import annotations

from automc.algorithms._base import Compressor, Decision
from automc.algorithms._surgery import find_cell, replace_cell
from automc.registry import Registry

COMPRESSORS: Registry = Registry("compressor")
COMPRESSORS.register("nas", "automc.algorithms.nas:ElasticNAS")
COMPRESSORS.register("pruning", "automc.algorithms.pruning:ChannelPruning")
COMPRESSORS.register("quantization", "automc.algorithms.quantization:MixedPrecisionQuantization")
ORDER = ("nas", "pruning", "quantization")

__all__ = ["COMPRESSORS", "ORDER", "Compressor", "Decision", "build_compressors", "find_cell", "replace_cell"]


def build_compressors(config) -> list[Compressor]:
    """The compressors enabled in ``config.compress``, in ``ORDER``, built from their sections and
    restricted to what ``config.export.runtime`` executes."""
    out = []
    for name in ORDER:
        section = getattr(config.compress, name)
        if section is not None:
            out.append(COMPRESSORS.get(name)(**section.model_dump()).for_runtime(config.export.runtime))
    return out
