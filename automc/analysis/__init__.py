"""Network analysis: the layer table and the coupling groups of prunable channels."""

from automc.analysis.layer_table import COMPUTE_KINDS, KINDS, CouplingGroup, LayerShapes, LayerTable, kept_channels
from automc.analysis.trace import build_layer_table, coupling_groups, trace_network

__all__ = [
    "COMPUTE_KINDS",
    "KINDS",
    "CouplingGroup",
    "LayerShapes",
    "LayerTable",
    "build_layer_table",
    "coupling_groups",
    "kept_channels",
    "trace_network",
]
