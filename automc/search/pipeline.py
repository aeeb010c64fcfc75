"""A search from end to end, as three stages: ``baseline.prepare`` (data, cached baseline, layer
table, space, budgets), the trial loop (``runner.run_trials``: the strategy's proposals, then
Optuna ask/tell, with MLflow tracking) and ``finish.finish_study`` (Pareto front, the winner's
final fine-tune and export, the uniform reference). The report is not part of it: the Python API
and the CLI write it from the returned result (``automc.report``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from automc._files import Fault, storage_fault
from automc._version import __version__
from automc.errors import AutomcError, StorageError, mask_secrets
from automc.search.baseline import Prepared, prepare
from automc.search.execution import make_executor
from automc.search.finish import finish_study
from automc.search.progress import Progress
from automc.search.projection import check_reachable
from automc.search.result import SearchResult, TrialRecord
from automc.search.runner import Log, run_trials
from automc.search.selection import pareto_front, select_best
from automc.search.strategies import enqueue_once, make_strategy
from automc.search.study import fail_stale, finished, open_study, storage_url
from automc.search.tracking import Tracker, default_tracking_uri

if TYPE_CHECKING:
    from automc.config import ExperimentConfig


def run_search(
    config: ExperimentConfig,
    *,
    n_trials: int | None = None,
    resume: bool = True,
    log: Log = print,
    progress: Progress | None = None,
) -> SearchResult:
    """Run (or resume) the study until it holds ``n_trials`` finished trials; export the winner.
    ``progress`` (e.g. ``automc.search.progress.LiveProgress()``) is told each change of state.
    When the machine refuses a write (disk full, read-only), the search stops with a
    ``StorageError`` that says what is kept; the same call continues the study."""
    n_trials = n_trials or config.search.n_trials
    prepared = prepare(config, log=log)
    try:
        return _search(config, prepared, n_trials=n_trials, resume=resume, log=log, progress=progress)
    except Exception as exc:
        fault = storage_fault(exc)
        if fault is None:
            raise
        raise _storage_stopped(config, fault) from None


def _storage_stopped(config: ExperimentConfig, fault: Fault) -> StorageError:
    """The one line a search that the machine stopped (disk full, read-only) ends with: what, where,
    what is kept, and that the same command continues."""
    import optuna

    where = fault.path or f"output_dir {str(config.out_path)!r}"
    try:
        kept = f"{finished(optuna.load_study(study_name=config.name, storage=storage_url(config)))} finished trials are kept"
    except Exception:  # the study itself cannot be read: say what is known
        kept = "the finished trials are kept"
    return StorageError(f"{fault.said}: {where}; the search stopped and {kept} in {mask_secrets(storage_url(config))}; "
                        f"{fault.fix} and run the same command again to continue")


def _search(config: ExperimentConfig, prepared: Prepared, *, n_trials: int, resume: bool, log: Log,
            progress: Progress | None) -> SearchResult:
    import optuna

    out = config.out_path
    ctx, space = prepared.context, prepared.space
    # here, not in prepare: reading a finished study back (status, report, export) never refuses;
    # after the baseline is cached, so a rerun with a new budget reuses it
    check_reachable(ctx.table, space, prepared.constraints)
    log(f"layer table: {len(ctx.table)} layers, {len(ctx.table.prunable_groups)} prunable groups; "
        f"search space: {len(space)} decisions")
    if not resume:
        try:
            optuna.delete_study(study_name=config.name, storage=storage_url(config))
            log("--new: deleted the previous study")
        except KeyError:
            pass
    strategy = make_strategy(config, n_objectives=len(prepared.objectives))
    proposals = strategy.propose(prepared, log)
    study = open_study(config, prepared.objectives, strategy.sampler(len(proposals)))
    fail_stale(study, log)
    enqueue_once(study, space, proposals, log)
    cap = strategy.max_trials(proposals)
    if cap is not None and cap < n_trials:
        n_trials = cap
        log(f"{config.search.strategy}: {n_trials} distinct policies to evaluate; the study stops there")

    tracker = Tracker(config.tracking.tracking_uri or default_tracking_uri(out),
                      config.tracking.experiment_name or config.name, out / "mlartifacts")
    tracker.start_search(
        f"search-{time.strftime('%Y%m%d-%H%M%S')}",
        params={"model": config.model.name or config.model.factory, "data": config.data.name,
                "strategy": config.search.strategy, "n_trials": n_trials, "objectives": ",".join(config.objectives),
                "constraints": "; ".join(config.constraints), "storage": mask_secrets(storage_url(config))},
        tags={"automc.version": __version__, "automc.role": "search"},
    )
    tracker.log_metrics(tracker.parent_id, {f"baseline_{k}": v for k, v in prepared.baseline_metrics.items()})
    tracker.log_json(prepared.baseline_metrics, "baseline_metrics.json")
    tracker.log_json(ctx.table.rows(), "layer_table.json")
    if (out / "sensitivity.json").is_file() and proposals:
        tracker.log_artifact(out / "sensitivity.json")

    executor = make_executor(config, ctx, storage_url(config))
    status = "FINISHED"
    try:
        run_trials(study, prepared, executor, tracker, n_trials, log, progress)
    except KeyboardInterrupt:
        status = "KILLED"
        log(f"interrupted: {finished(study)} trials are saved; run the same command again to resume")
        raise
    except Exception:
        status = "FAILED"
        raise
    finally:
        if progress is not None and hasattr(progress, "close"):
            progress.close()
        executor.close()
        if status == "FINISHED":
            tracker.flush()
        else:
            try:
                tracker.end_search(status)
            except Exception:  # e.g. a full disk refuses this write too: the error being raised says why
                pass

    result = collect_result(config, study, prepared)
    tracker.log_metrics(tracker.parent_id, {"finetune_epochs_total": sum(t.metrics.get("finetune_epochs", 0.0)
                                                                         for t in result.trials)})
    result.artifacts.update(finish_study(result, prepared, tracker, log=log))
    tracker.end_search(status)
    result.artifacts["tracking_uri"] = tracker.tracking_uri
    result.run_id = tracker.parent_id or ""
    return result




def collect_result(config: ExperimentConfig, study, prepared: Prepared) -> SearchResult:
    trials = [TrialRecord.from_optuna(t) for t in study.get_trials(deepcopy=False)]
    return SearchResult(
        config=config,
        baseline=prepared.baseline_metrics,
        trials=trials,
        pareto_front=pareto_front(trials, prepared.objectives),
        best=select_best(config, trials, prepared.constraints, prepared.context.baseline_accuracy),
        table=prepared.context.table,
    )


def load_result(config: ExperimentConfig) -> SearchResult:
    """The result of a finished or running search, read back from its study (no training)."""
    import optuna

    prepared = prepare(config, train_baseline=False)
    try:
        study = optuna.load_study(study_name=config.name, storage=storage_url(config))
    except KeyError:
        raise AutomcError(f"no study {config.name!r} in {mask_secrets(storage_url(config))}; run `automc search` first") from None
    return collect_result(config, study, prepared)
