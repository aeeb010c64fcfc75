"""Search progress for people: a live bar on a terminal, nothing extra elsewhere.

The runner reports a :class:`ProgressState` (``progress_state``) after each change (a trial
started or finished); ``live_progress`` draws it as a rich progress bar (trials done/total,
running, ETA, best so far, the best per device when the experiment names several) when the output
is a terminal. In CI and in files the runner's plain ``trial i/n ...`` lines (with
``best_so_far``) stay the only output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from automc.objectives import fmt_metric
from automc.search.costs import latency_devices
from automc.search.result import TrialRecord
from automc.search.selection import select_best, select_best_by, select_metric
from automc.search.study import counts

Progress = Callable[["ProgressState"], None]


@dataclass(frozen=True)
class ProgressState:
    done: int
    total: int
    running: int
    best: str = ""                                          # "#7 accuracy 88.1%, macs 0.29M"
    per_device: dict[str, str] = field(default_factory=dict)  # device -> "#3 0.121ms"


def best_per_device(config, trials: Sequence[TrialRecord], constraints, baseline_accuracy: float) -> dict[str, str]:
    """Per named device (when there are several), the winner by that device's latency, as text."""
    devices = latency_devices(config)
    if len(devices) < 2:
        return {}
    out = {}
    for device in devices:
        key = f"latency@{device}"
        best = select_best_by(key, config, list(trials), constraints, baseline_accuracy)
        if best is not None and key in best.metrics:
            out[device] = f"#{best.number} {fmt_metric(key, best.metrics[key])}"
    return out


def progress_state(study, optuna_trials, prepared, n_trials: int) -> ProgressState:
    """The state of ``study`` for a progress bar; ``optuna_trials`` as last read (None: read now)."""
    optuna_trials = optuna_trials if optuna_trials is not None else study.get_trials(deepcopy=False)
    done, running = counts(study, optuna_trials)
    records = [TrialRecord.from_optuna(t) for t in optuna_trials]
    return ProgressState(done=done, total=n_trials, running=running, best=best_so_far(records, prepared),
                         per_device=best_per_device(prepared.context.config, records, prepared.constraints,
                                                    prepared.context.baseline_accuracy))


def best_so_far(trials, prepared) -> str:
    """The winner so far, as text; ``trials`` are Optuna trials or ``TrialRecord``s."""
    cfg = prepared.context.config
    trials = [t if isinstance(t, TrialRecord) else TrialRecord.from_optuna(t) for t in trials]
    best = select_best(cfg, trials, prepared.constraints, prepared.context.baseline_accuracy)
    if best is None:
        return ""
    key = select_metric(cfg)
    if key not in best.metrics:  # objectives [accuracy]: show the constrained cost instead
        key = next((c.metric.name for c in prepared.constraints if c.metric.name in best.metrics), None)
    return f"#{best.number} accuracy {best.metrics['accuracy']:.2f}%" + (f", {key} {fmt_metric(key, best.metrics[key])}" if key else "")


class LiveProgress:
    """A rich progress bar (and a line of per-device bests) kept under the log lines, which rich
    prints above it."""

    def __init__(self, console=None):
        from rich.console import Group
        from rich.live import Live
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
        from rich.text import Text

        self._bar = Progress(TextColumn("trials"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("{task.fields[running]} running  ETA"), TimeRemainingColumn(),
                             TextColumn("{task.fields[best]}"), console=console)
        self._devices = Text()
        self._live = Live(Group(self._bar, self._devices), console=console, refresh_per_second=4)
        self._task = None

    def __call__(self, state: ProgressState) -> None:
        best = f"best so far {state.best}" if state.best else ""
        if self._task is None:
            self._live.start()
            self._task = self._bar.add_task("search", total=state.total, completed=state.done,
                                            running=state.running, best=best)
        self._bar.update(self._task, total=state.total, completed=state.done, running=state.running, best=best)
        if state.per_device:
            self._devices.plain = "best per device: " + " | ".join(f"{d} {t}" for d, t in state.per_device.items())

    def close(self) -> None:
        if self._task is not None:
            self._live.stop()
            self._task = None


def live_progress(stream) -> Progress | None:
    """A :class:`LiveProgress` when ``stream`` is a terminal, else None (plain lines only)."""
    isatty = getattr(stream, "isatty", None)
    return LiveProgress() if isatty is not None and isatty() else None
