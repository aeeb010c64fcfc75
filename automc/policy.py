"""A compression policy: plain, JSON-serialisable data, separate from the code that applies it.

``prune``   coupling-group name -> fraction of its channels removed, in [0, 1)  (AMC-style)
``w_bits``  layer name -> weight bit-width (32 means float)                    (HAQ-style)
``a_bits``  layer name -> activation (input) bit-width (32 means float)
``nas``     elastic-dimension name -> chosen value (width multiplier, depth, kernel size)

Missing entries mean "leave as is". Compressors read only their own field, in the fixed order
NAS -> pruning -> quantization (see ``automc.algorithms``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

FLOAT_BITS = 32


@dataclass(frozen=True)
class Policy:
    prune: Mapping[str, float] = field(default_factory=dict)
    w_bits: Mapping[str, int] = field(default_factory=dict)
    a_bits: Mapping[str, int] = field(default_factory=dict)
    nas: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {
            "prune": dict(self.prune),
            "w_bits": dict(self.w_bits),
            "a_bits": dict(self.a_bits),
            "nas": dict(self.nas),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Mapping[str, Any]]) -> "Policy":
        unknown = set(data) - {"prune", "w_bits", "a_bits", "nas"}
        if unknown:
            raise ValueError(f"unknown policy fields {sorted(unknown)}; expected prune, w_bits, a_bits, nas")
        return cls(
            prune={k: float(v) for k, v in data.get("prune", {}).items()},
            w_bits={k: int(v) for k, v in data.get("w_bits", {}).items()},
            a_bits={k: int(v) for k, v in data.get("a_bits", {}).items()},
            nas=dict(data.get("nas", {})),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Policy":
        return cls.from_dict(json.loads(text))

    def flat_params(self) -> dict[str, Any]:
        """``{"prune.layer1.0.conv1": 0.25, "w_bits.fc": 8, ...}``: the form MLflow params take."""
        return {f"{section}.{key}": value for section, values in self.to_dict().items() for key, value in values.items()}

    @property
    def is_identity(self) -> bool:
        return (
            all(r == 0 for r in self.prune.values())
            and all(b >= FLOAT_BITS for b in self.w_bits.values())
            and all(b >= FLOAT_BITS for b in self.a_bits.values())
            and not self.nas
        )
