"""The compressor extension point: what decisions a technique offers, and how a policy is applied."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Sequence

from automc.analysis.layer_table import LayerTable
from automc.policy import Policy


@dataclass(frozen=True)
class Decision:
    """One knob of the search space: ``policy.<section>[key]``.

    ``kind="float"`` samples in ``[low, high]`` (with ``step`` if set); ``kind="categorical"``
    picks one of ``choices``. The Optuna parameter name is ``f"{section}.{key}"``.
    """

    section: Literal["prune", "w_bits", "a_bits", "nas"]
    key: str
    kind: Literal["float", "categorical"]
    low: float = 0.0
    high: float = 0.0
    step: float | None = None
    choices: tuple[Any, ...] = ()
    default: Any = None  # the value that means "leave the layer as it is"
    note: str = ""  # what a choice means beyond its value (shown in the dry run and the report)
    mirrors: tuple[str, ...] = ()  # other policy sections the value also sets for ``key`` (one int8-or-float choice)

    @property
    def param_name(self) -> str:
        return f"{self.section}.{self.key}"


class Compressor(abc.ABC):
    """Base class of every compression technique.

    Subclasses set ``name`` (the YAML key) and ``section`` (the policy field they read), list
    their ``decisions`` for a layer table, and ``apply`` a policy to a copy of a network.
    """

    name: ClassVar[str]
    section: ClassVar[str]
    needs_finetune: bool = True  # False for compressors that only calibrate (post-training quantization)

    @abc.abstractmethod
    def decisions(self, table: LayerTable) -> Sequence[Decision]:
        """The knobs this compressor offers on ``table``."""

    @abc.abstractmethod
    def apply(self, network, table: LayerTable, policy: Policy, *, calib_x=None):
        """Return a compressed copy of ``network``; ``network`` itself is not modified.

        ``calib_x`` (training inputs, numpy NCHW) is there for compressors that calibrate.
        """

    def after_apply(self, table: LayerTable, policy: Policy) -> tuple[LayerTable, Policy]:
        """The layer table and policy the next compressors see (default: unchanged); NAS hands
        on the sub-network's table and drops decisions about removed layers."""
        return table, policy

    def to_deploy_form(self, network):
        """The network in the form that is exported (default: unchanged)."""
        return network

    def for_runtime(self, runtime: str) -> "Compressor":
        """This compressor restricted to what ``runtime`` (``export.runtime``) executes; default:
        unchanged. Quantization keeps only the bit-widths with integer kernels there."""
        return self
