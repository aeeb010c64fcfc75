"""What a search returns, rebuilt at any time from the study storage and the output folder."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from automc._files import read_or_set_aside
from automc.policy import Policy
from automc.search.baseline import prepare
from automc.search.evaluate import Evaluator
from automc.search.execution import run_trial

if TYPE_CHECKING:
    from automc.config import ExperimentConfig

FINAL_CHECKPOINT = "best_final.ckpt"  # in <out>/export: the winner after export.final_finetune


def _notice(line: str) -> None:
    print(line, file=sys.stderr)


@dataclass(frozen=True)
class TrialRecord:
    """One finished trial: the policy that was evaluated and every metric it got."""

    number: int
    state: str  # COMPLETE, PRUNED, FAIL, RUNNING
    policy: Policy | None
    metrics: dict[str, float]
    duration_s: float = 0.0
    fail_reason: str = ""
    checkpoint: str = ""
    eval_seconds: float = 0.0  # compress + fine-tune + evaluate, inside the worker
    proposal: dict[str, Any] = field(default_factory=dict)  # who proposed it (solver, uniform); empty: the sampler
    node: str = ""  # where it ran: the Ray node id, or "local"
    accelerator: str = ""  # cpu, gpu or ascend
    device_id: str = ""  # the physical device (as Ray assigned it); "" on CPU

    @classmethod
    def from_optuna(cls, t) -> "TrialRecord":
        attrs = t.user_attrs
        # written by the runner when the trial finished; older studies kept each field as its own attr
        result = attrs.get("result", attrs)
        policy = result.get("policy", attrs.get("policy"))  # evaluated (projected); older studies: JSON text
        if isinstance(policy, str):
            policy = json.loads(policy)
        policy = Policy.from_dict(policy) if policy is not None else None
        duration = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start else 0.0
        return cls(number=t.number, state=t.state.name, policy=policy, metrics=dict(result.get("metrics", {})),
                   duration_s=duration, fail_reason=result.get("fail_reason", ""), checkpoint=result.get("checkpoint", ""),
                   eval_seconds=float(result.get("eval_seconds", 0.0)), proposal=dict(attrs.get("proposal", {})),
                   node=result.get("node", ""), accelerator=result.get("accelerator", ""),
                   device_id=str(result.get("device_id", "")))


@dataclass
class SearchResult:
    """Baseline metrics, every trial, the Pareto front and the selected winner of one search."""

    config: ExperimentConfig
    baseline: dict[str, float]
    trials: list[TrialRecord]
    pareto_front: list[TrialRecord]
    best: TrialRecord | None
    artifacts: dict[str, str] = field(default_factory=dict)
    table: Any = field(default=None, repr=False)
    run_id: str = ""  # the MLflow parent run of the search that returned this result ("" when read back)

    @property
    def out_dir(self) -> Path:
        return self.config.out_path

    def best_network(self, log: Callable[[str], None] = _notice):
        """The winner as a ``mindspore.nn.Cell`` in inference mode: with the weights of its final
        fine-tune (``export/best_final.ckpt``, when ``export.final_finetune`` ran for this winner),
        else with its trial's fine-tuned weights."""
        if self.best is None:
            raise LookupError("the search has no completed trial yet")
        final = final_checkpoint(self.config, self.best)
        if final is not None:
            import mindspore as ms

            evaluator = _evaluator(self.config)
            weights = read_or_set_aside(final, lambda p: ms.load_checkpoint(str(p)), "the winner's final fine-tune",
                                        log, then="this network has the trial's own weights; the next `automc "
                                        "search` fine-tunes the winner again")
            if weights is not None:
                return _loaded(evaluator.compress(self.best.policy), weights)
        return trial_network(self.config, self.best, log=log)

    def summary_rows(self) -> list[dict[str, Any]]:
        return [{"trial": t.number, "state": t.state, **t.metrics} for t in self.trials]


def _evaluator(config: ExperimentConfig):
    return Evaluator(prepare(config, train_baseline=False).context)


def _loaded(net, weights):
    import mindspore as ms

    ms.load_param_into_net(net, weights, strict_load=True)
    net.set_train(False)
    return net


def trial_network(config: ExperimentConfig, trial: TrialRecord, *, evaluator=None,
                  log: Callable[[str], None] = _notice):
    """Rebuild a trial's network: its policy on the cached baseline, then its saved weights. A
    checkpoint that cannot be read (truncated) is set aside and rebuilt: the trial's policy
    fine-tuned again with the trial's own seed, as the search did."""
    import mindspore as ms

    if not trial.checkpoint or not Path(trial.checkpoint).is_file():
        raise LookupError(f"trial {trial.number} has no saved weights ({trial.checkpoint or 'none recorded'})")
    evaluator = evaluator or _evaluator(config)
    path = Path(trial.checkpoint)
    weights = read_or_set_aside(path, lambda p: ms.load_checkpoint(str(p)), f"trial {trial.number}'s checkpoint", log)
    if weights is None:
        epochs = config.finetune.epochs
        log(f"trial {trial.number}: fine-tuning its policy again ({epochs:g} epoch{'s' * (epochs != 1)}, seed "
            f"{config.seed + trial.number}) to rebuild {path.name}")
        run_trial(evaluator, trial.number, trial.policy, path.parent)
        weights = ms.load_checkpoint(str(path))
    return _loaded(evaluator.compress(trial.policy), weights)


def final_checkpoint(config: ExperimentConfig, trial: TrialRecord) -> Path | None:
    """``export/best_final.ckpt`` if it holds ``trial``'s final fine-tune: ``export/summary.json``
    names ``trial`` as the winner it fine-tuned, and the file is not older than the trial's own
    checkpoint (a study re-run with ``--new`` rewrites that); else None."""
    export = config.out_path / "export"
    path = export / FINAL_CHECKPOINT
    try:
        best = json.loads((export / "summary.json").read_text()).get("best", {})
    except (OSError, ValueError):
        return None
    if best.get("trial") != trial.number or "final_finetune_epochs" not in best or not path.is_file():
        return None
    own = Path(trial.checkpoint) if trial.checkpoint else None
    if own is not None and own.is_file() and own.stat().st_mtime > path.stat().st_mtime:
        return None
    return path
