"""Network analysis: the layer table and the coupling groups of prunable channels."""

from automc.analysis.layer_table import (BLOCKED_BY, COMPUTE_KINDS, KINDS, CouplingGroup, Coverage, LayerShapes,
                                         LayerTable, kept_channels)
from automc.analysis.build import build_layer_table
from automc.analysis.coupling import Coupling, couple
from automc.analysis.probe import NetworkTrace, trace_network

__all__ = [
    "BLOCKED_BY",
    "COMPUTE_KINDS",
    "KINDS",
    "CouplingGroup",
    "Coverage",
    "LayerShapes",
    "LayerTable",
    "build_layer_table",
    "Coupling",
    "couple",
    "NetworkTrace",
    "kept_channels",
    "trace_network",
]
