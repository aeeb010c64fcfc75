"""The search space: the compressors' decisions, sampled by an Optuna trial into a Policy."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from automc.algorithms import Compressor, Decision
from automc.analysis.layer_table import LayerTable
from automc.policy import Policy


def policy_from_values(decisions: Sequence[Decision], values: Mapping[str, Any]) -> Policy:
    """The policy that sets each of ``decisions`` whose ``param_name`` is in ``values`` (an Optuna
    params dict, a solver assignment, a one-change sensitivity entry, a uniform policy)."""
    sections: dict[str, dict[str, Any]] = {"prune": {}, "w_bits": {}, "a_bits": {}, "nas": {}}
    for d in decisions:
        if d.param_name in values:
            for section in (d.section, *d.mirrors):
                sections[section][d.key] = values[d.param_name]
    return Policy.from_dict(sections)


class SearchSpace:
    """All decisions of the enabled compressors, in the fixed order NAS -> pruning -> quantization."""

    def __init__(self, table: LayerTable, compressors: Sequence[Compressor]):
        self.table = table
        self.compressors = list(compressors)
        self.decisions: list[Decision] = [d for c in self.compressors for d in c.decisions(table)]

    def __len__(self) -> int:
        return len(self.decisions)

    def suggest(self, trial) -> Policy:
        """Sample every decision from an Optuna trial (``ask`` or inside ``optimize``)."""
        params = {}
        for d in self.decisions:
            if d.kind == "float":
                value = trial.suggest_float(d.param_name, d.low, d.high, step=d.step)
                params[d.param_name] = round(value, 6)  # 0.35, not 0.35000000000000003
            else:
                params[d.param_name] = trial.suggest_categorical(d.param_name, list(d.choices))
        return self.policy_from_params(params)

    def policy_from_params(self, params: Mapping[str, Any]) -> Policy:
        return policy_from_values(self.decisions, params)

    def conform(self, policy: Policy) -> Policy:
        """``policy`` as the space states it: each decision's mirrored sections set from its value
        (a projection lowers weight bits; where a runtime runs a layer int8 or float, its inputs
        follow)."""
        return self.policy_from_params(self.params_from_policy(policy))

    def params_from_policy(self, policy: Policy) -> dict[str, Any]:
        """Optuna params for ``policy`` (e.g. to ``enqueue_trial`` a projected or hand-made policy)."""
        values = policy.to_dict()
        return {d.param_name: values[d.section].get(d.key, d.default) for d in self.decisions}

    def describe(self) -> str:
        lines = []
        for d in self.decisions:
            rng = f"[{d.low}, {d.high}] step {d.step}" if d.kind == "float" else f"one of {list(d.choices)}"
            lines.append(f"{d.param_name}: {rng}")
        notes = {d.section: d.note for d in self.decisions if d.note}
        lines += [f"{section} {note}" for section, note in notes.items()]
        return "\n".join(lines)
