"""The Optuna study on SQL storage: opening it, counting its trials across processes, heartbeats
of running trials, and failing the trials of processes that died."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Callable

from automc.objectives import Metric
from automc.search.sqlite import relax_sync, use_wal

if TYPE_CHECKING:
    from automc.config import ExperimentConfig

Log = Callable[[str], None]


def storage_url(config: ExperimentConfig) -> str:
    return config.search.storage or f"sqlite:///{(config.out_path / 'study.db').resolve()}"


def open_study(config: ExperimentConfig, objectives: list[Metric], sampler=None):
    """The study on SQL storage, with heartbeats so trials of a dead process are found and retried.
    Optuna's pruner stays off: trials are stopped by ``automc.search.strategies.fidelity`` (cost-banded)."""
    import optuna
    from optuna.storages import RDBStorage, RetryFailedTrialCallback

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats
    # the runner drives ask/tell itself and beats the heartbeat of each running trial (Heartbeat)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")

    heartbeat = config.search.heartbeat_s
    use_wal(storage_url(config))
    storage = RDBStorage(
        storage_url(config),
        heartbeat_interval=heartbeat,
        grace_period=3 * heartbeat,
        failed_trial_callback=RetryFailedTrialCallback(max_retry=config.search.retry_failed)
        if config.search.retry_failed else None,
        engine_kwargs={"connect_args": {"timeout": 60}} if storage_url(config).startswith("sqlite") else None,
    )
    relax_sync(storage.engine)
    return optuna.create_study(
        study_name=config.name,
        storage=storage,
        directions=[m.direction for m in objectives],
        sampler=sampler,
        pruner=optuna.pruners.NopPruner(),
        load_if_exists=True,
    )


def ask_within(study, n_trials: int, last_place: bool):
    """``study.ask()``, or None when the study is full. Two processes that both counted one free
    place may ask at the same moment; for the last place (``last_place``) the study is read again
    and the trial with the higher number goes back to WAITING (the next ask anywhere reuses it),
    so a shared study never runs more than ``n_trials``."""
    from optuna.trial import TrialState

    trial = study.ask()
    if not last_place:
        return trial
    taken = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
    ahead = sum(t.number < trial.number and not t.user_attrs.get(INTERRUPTED)
                for t in study.get_trials(deepcopy=False, states=taken))
    if ahead < n_trials:
        return trial
    study._storage.set_trial_state_values(trial._trial_id, TrialState.WAITING)
    return None


def counts(study, trials=None) -> tuple[int, int]:
    """(finished, running) trials of the whole study, whichever process runs them."""
    from optuna.trial import TrialState

    trials = trials if trials is not None else study.get_trials(deepcopy=False)
    finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
                   and not t.user_attrs.get(INTERRUPTED) for t in trials)
    return finished, sum(t.state == TrialState.RUNNING for t in trials)


#: user attr of a trial failed because its search was interrupted (Ctrl-C): re-queued, not counted
INTERRUPTED = "interrupted"


def release_interrupted(study, trials, log: Log) -> None:
    """On Ctrl-C: fail this process's running ``trials`` at once (no waiting for stale heartbeats)
    and re-queue their parameters, so the same command resumes them immediately. They do not count
    as finished trials."""
    from optuna.trial import TrialState

    for trial in trials:
        trial.set_user_attr(INTERRUPTED, True)
        study.tell(trial, state=TrialState.FAIL)
        if trial.params:  # asked but not yet suggested: nothing to re-queue, the sampler proposes anew
            study.enqueue_trial(trial.params, user_attrs={"requeued_from": trial.number,
                                                          **{k: v for k, v in trial.user_attrs.items() if k == "proposal"}})
    if trials:
        log(f"interrupted: trial(s) {', '.join(f'#{t.number}' for t in trials)} failed and re-queued")


def finished(study) -> int:
    return counts(study)[0]


class Heartbeat:
    """Records a heartbeat for this process's running trials, so other processes (and a later
    resume) can tell them from trials whose process died (Optuna's ``fail_stale_trials``)."""

    def __init__(self, study, interval_s: float):
        import threading

        self.storage, self.interval_s = study._storage, interval_s
        self.trial_ids: set[int] = set()
        self._stop, self._wake = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, name="automc-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # every interval after a trial's first beat, which ``add`` records itself
        while not self._stop.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            for trial_id in list(self.trial_ids):
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception:  # a finished trial refuses heartbeats; nothing to do
                    self.trial_ids.discard(trial_id)

    def add(self, trial) -> None:
        """Beat for ``trial`` now, then every interval. Optuna finds stale trials by their last
        heartbeat, so a trial that never had one stays RUNNING for good: a process killed between
        ``ask`` and a first beat left to the thread (seen: SIGKILL right after a tell) made every
        later run of the study wait for it."""
        self.storage.record_heartbeat(trial._trial_id)
        self.trial_ids.add(trial._trial_id)

    def remove(self, trial) -> None:
        self.trial_ids.discard(trial._trial_id)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()


def fail_stale(study, log: Log) -> None:
    """Trials whose process stopped sending heartbeats become FAIL (and are retried if configured)."""
    import optuna

    before = counts(study)[1]
    optuna.storages.fail_stale_trials(study)
    failed = before - counts(study)[1]
    if failed > 0:
        log(f"marked {failed} trial(s) of a stopped process as failed")
