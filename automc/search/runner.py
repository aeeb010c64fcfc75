"""The search driver: baseline -> layer table -> Optuna ask/tell over policies -> winner -> export.

One function per stage, so the CLI, the Python API and tests can run any stage on its own:
``prepare`` (data, cached baseline, layer table, search space) and ``run_search`` (the strategy's
proposals, then a thin ask/tell loop, with MLflow tracking). The study and its heartbeats live in
``study.py``, the winner and the Pareto front in ``selection.py``, the strategies (which propose and
observe, never train) in ``strategies/``, the stopping rules in ``fidelity.py``, the export in ``export.py``.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from automc import __version__
from automc._files import Fault, check_writable, storage_fault
from automc.algorithms import build_compressors
from automc.algorithms.pruning import refuse_breaking_groups
from automc.analysis import LayerTable, build_layer_table
from automc.config import ExperimentConfig, mask_secrets
from automc.errors import AutomcError, StorageError
from automc.policy import Policy
from automc.search import interrupt
from automc.search.fidelity import Stopped, band_metric
from automc.search.evaluate import (TrialContext, build_baseline, load_cached, network_weights, save_cached,
                                    settings_from)
from automc.search.objectives import (Constraint, Metric, cost_metrics, parse_constraint, parse_objective,
                                     resolve_constraints)
from automc.search.progress import Progress, ProgressState, best_per_device
from automc.search.projection import check_reachable
from automc.search.result import SearchResult, TrialRecord
from automc.search.selection import pareto_front, select_best, select_metric
from automc.search.study import (Heartbeat, ask_within, counts, fail_stale, finished, open_study,
                                 release_interrupted, storage_url)
from automc.search.space import SearchSpace
from automc.search.strategies import enqueue_once, make_strategy

Log = Callable[[str], None]


@dataclass
class Prepared:
    context: TrialContext
    space: SearchSpace
    objectives: list[Metric]
    constraints: list[Constraint]
    baseline_metrics: dict[str, float]
    baseline_checkpoint: Path


def _stable_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_data(config: ExperimentConfig):
    from automc.data import load_dataset

    d = config.data
    return load_dataset(d.name, seed=config.seed, val_fraction=d.val_fraction, test_fraction=d.test_fraction,
                        resize=d.resize, channels=d.channels, max_samples=d.max_samples, **d.kwargs)


def analyse(config: ExperimentConfig, net, input_shape) -> LayerTable:
    """``net``'s layer table; with channel pruning in the experiment, a group whose pruning breaks
    the network is refused (``refuse_breaking_groups``), so no trial is spent on it."""
    table = build_layer_table(net, input_shape, seed=config.seed)
    if config.compress.pruning is not None:
        table = refuse_breaking_groups(net, table, input_shape)
    return table


def prepare(config: ExperimentConfig, *, train_baseline: bool = True, log: Log = lambda s: None) -> Prepared:
    """Load the data, train (or load the cached) baseline, build the layer table and search space."""
    import mindspore as ms

    from automc.training import accuracy, train

    out = config.out_path
    if train_baseline:  # a search (or sensitivity run) trains here; reading results back runs anywhere
        check_writable(out, "output_dir")  # before any work: one line, exit code 2
        from automc.search.accelerator import use

        used = use(config.execution.accelerator, config.execution.device_id)
        log(f"accelerator: {used}" + (" (auto)" if config.execution.accelerator == "auto" else ""))
    data = load_data(config)
    ms.set_seed(config.seed)
    np.random.seed(config.seed)
    net = build_baseline(config, data.num_classes, data.input_shape)
    key = _stable_hash({"model": config.model.model_dump(), "data": data.fingerprint(),
                        "train": config.train.model_dump(), "seed": config.seed, "automc": __version__})
    ckpt = out / "cache" / f"baseline-{key}.ckpt"
    metrics = load_cached(net, ckpt, log)
    if metrics is not None:
        log(f"baseline: reusing {ckpt} (val accuracy {metrics['accuracy']:.2f}%)")
    elif not train_baseline:
        raise AutomcError(f"no trained baseline at {ckpt}; run `automc search` first")
    else:
        log(f"baseline: training {config.model.name or config.model.factory} for {config.train.epochs} epochs "
            f"on {len(data.train)} {data.name} samples")
        start = time.perf_counter()
        train(net, data.train.x, data.train.y, settings_from(config.train, config.seed))
        metrics = {"accuracy": accuracy(net, data.val.x, data.val.y),
                   "test_accuracy": accuracy(net, data.test.x, data.test.y),
                   "train_seconds": time.perf_counter() - start}
        save_cached(net, ckpt, metrics)
        log(f"baseline: val accuracy {metrics['accuracy']:.2f}%, test accuracy {metrics['test_accuracy']:.2f}%")
    net.set_train(False)
    table = analyse(config, net, data.input_shape)
    if config.compress.nas is not None and config.compress.nas.supernet is not None:
        from automc.search import supernet

        # trials inherit the elastic weights; `accuracy` stays the baseline's as the user trained it
        ckpt, elastic = supernet.load_or_train(config, net, table, data, ckpt, train=train_baseline, log=log)
        metrics = {**metrics, **elastic}
    objectives = [parse_objective(o) for o in config.objectives]
    constraints = [parse_constraint(c) for c in config.constraints]
    cost = cost_metrics(table, Policy(), tracked_cost_metrics(config, objectives, constraints))
    metrics = {**metrics, **{k: float(v[0]) for k, v in cost.items()}}
    metrics.update(table.totals())
    constraints = resolve_constraints(constraints, metrics)  # 'macs <= 25%' -> 25% of the baseline's MACs
    ctx = TrialContext(config=config, baseline_weights=network_weights(net), table=table, data=data,
                       baseline_accuracy=metrics["accuracy"])
    space = SearchSpace(table, build_compressors(config))
    return Prepared(ctx, space, objectives, constraints, metrics, ckpt)


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

    from automc.search.tracking import Tracker, default_tracking_uri

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

    from automc.search.execution import make_executor

    executor = make_executor(config, ctx, storage_url(config))
    status = "FINISHED"
    try:
        _drive(study, prepared, executor, tracker, n_trials, log, progress)
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
    from automc.search.export import finish_study

    result.artifacts.update(finish_study(result, prepared, tracker, log=log))
    tracker.end_search(status)
    result.artifacts["tracking_uri"] = tracker.tracking_uri
    return result


def _drive(study, prepared: Prepared, executor, tracker, n_trials: int, log: Log,
           progress: Progress | None = None) -> None:
    """Ask/tell loop: keep ``executor.capacity`` trials in flight until the study holds
    ``n_trials`` finished trials (counting trials other processes run on the same study)."""
    ctx, space = prepared.context, prepared.space
    in_flight: dict[int, tuple[Any, Policy, dict[str, float], float]] = {}
    heartbeat = Heartbeat(study, ctx.config.search.heartbeat_s)
    started = last_stale_check = time.perf_counter()
    timeout = ctx.config.search.timeout_s
    trials = None  # the study's trials as the last tell read them, to count without a second read
    asking = None  # a trial asked from the study and not yet in flight
    band = band_metric(ctx.config)  # the cost a stopping rule compares trials within
    interrupt.clear()
    try:
        while True:
            if time.perf_counter() - last_stale_check >= heartbeat.interval_s:  # stale trials are seconds old
                fail_stale(study, log)
                last_stale_check, trials = time.perf_counter(), None
            done, running = counts(study, trials)
            trials = None  # the next round reads the study again (other processes run trials too)
            out_of_time = timeout is not None and time.perf_counter() - started > timeout
            while not out_of_time and len(in_flight) < executor.capacity and done + running < n_trials:
                trial = asking = ask_within(study, n_trials, last_place=done + running == n_trials - 1)
                if trial is None:  # another process took the last place
                    break
                heartbeat.add(trial)
                running += 1
                policy = space.suggest(trial)
                if prepared.constraints:
                    policy, feasible = _project(prepared, policy)
                    if not feasible:
                        trial.set_user_attr("projection", "could not meet the cost constraints")
                tracked = tracked_cost_metrics(ctx.config, prepared.objectives, prepared.constraints)
                costs = {k: float(v[0]) for k, v in cost_metrics(ctx.table, policy, tracked).items()}
                in_flight[trial.number] = (trial, policy, costs, time.perf_counter())
                asking = None
                executor.submit(trial.number, policy, trial, band_cost=costs.get(band) if band else None)
            if progress is not None:
                progress(_progress_state(study, trials, prepared, n_trials))
            if not in_flight:
                if done >= n_trials or out_of_time:
                    return
                time.sleep(min(1.0, ctx.config.search.heartbeat_s))  # other processes still run trials
                continue
            finished_now = executor.wait()
            if interrupt.stop_requested():  # a stop the trial's code swallowed: its trial is in flight still
                raise KeyboardInterrupt("stop requested")
            for number, outcome in finished_now:
                if isinstance(outcome, BaseException) and storage_fault(outcome) is not None:
                    raise outcome  # not the policy's fault: its trial is re-queued below, like the others in flight
                trial, policy, costs, t0 = in_flight[number]
                trials = _tell(study, trial, policy, costs, outcome, prepared, tracker, time.perf_counter() - t0,
                               n_trials, log)
                del in_flight[number]  # after the tell: a tell the storage refused leaves it to re-queue
                heartbeat.remove(trial)
                if progress is not None:
                    progress(_progress_state(study, trials, prepared, n_trials))
    except BaseException as exc:  # Ctrl-C or a refused write: the trials in flight, and one asked but not yet submitted
        if not isinstance(exc, KeyboardInterrupt) and storage_fault(exc) is None:
            raise
        interrupted = [trial for trial, *_ in in_flight.values()] + ([asking] if asking is not None else [])
        for trial in interrupted:
            heartbeat.remove(trial)
        try:
            release_interrupted(study, interrupted, log)
        except Exception:  # the storage refuses this too: their heartbeats stop, the next run fails them
            if isinstance(exc, KeyboardInterrupt):
                raise
        raise
    finally:
        heartbeat.stop()


def _project(prepared: Prepared, policy: Policy) -> tuple[Policy, bool]:
    from automc.search.projection import project

    cfg = prepared.context.config.compress
    return project(prepared.context.table, policy, prepared.constraints,
                   max_ratio=cfg.pruning.max_ratio if cfg.pruning else 0.0,
                   bit_choices=[b for b in (cfg.quantization.w_bits if cfg.quantization else []) if b < 32])


def tracked_cost_metrics(config: ExperimentConfig, objectives: list[Metric], constraints: list[Constraint]) -> list[Metric]:
    """Cost metrics computed for every trial: objectives, constraints, and latency and energy on
    each extra device of ``devices`` (so MLflow compares trials per device)."""
    devices = [parse_objective(f"{kind}@{d}") for d in config.devices for kind in ("latency", "energy")]
    metrics = objectives + [c.metric for c in constraints] + devices + [parse_objective("size")]
    return list({m.name: m for m in metrics if not m.needs_training}.values())


#: where a trial ran, as its outcome reports it (``automc.search.accelerator.current``, the Ray node)
WHERE = ("node", "accelerator", "device_id", "mindspore_device", "ray_devices")


def _tell(study, trial, policy, costs, outcome, prepared: Prepared, tracker, seconds, n_trials, log: Log) -> list:
    """Finish ``trial`` in Optuna and MLflow and log a line; returns the study's trials read after it."""
    from optuna.trial import TrialState

    ctx = prepared.context
    metrics = dict(costs)
    reason = ""
    if isinstance(outcome, BaseException):
        state = TrialState.PRUNED if isinstance(outcome, Stopped) else TrialState.FAIL
        reason = f"{type(outcome).__name__}: {outcome}" if state == TrialState.FAIL else f"stopped: {outcome}"
        metrics["finetune_epochs"] = float(getattr(outcome, "epochs_trained", 0.0))
    else:
        state = TrialState.COMPLETE
        metrics["accuracy"] = outcome["accuracy"]
        metrics["finetune_epochs"] = float(outcome.get("epochs", 0.0))
        metrics["accuracy_drop"] = ctx.baseline_accuracy - outcome["accuracy"]
        if not math.isfinite(outcome["accuracy"]):
            state, reason = TrialState.FAIL, "accuracy is NaN"
    violations = {c.text: float(c.violation(metrics[c.metric.name])) for c in prepared.constraints
                  if c.metric.name in metrics}
    for text, violation in violations.items():  # read by the constrained samplers (TPE, NSGA-II, GP)
        trial.set_constraint(text, violation)
    # one storage write for everything TrialRecord reads back
    record = {"policy": policy.to_dict(), "metrics": metrics, "constraint_violations": list(violations.values())}
    if isinstance(outcome, dict):
        record.update(eval_seconds=outcome.get("seconds", 0.0), checkpoint=outcome.get("checkpoint", ""),
                      **{k: outcome[k] for k in WHERE if k in outcome})
    if reason:
        record["fail_reason"] = reason
    trial.set_user_attr("result", record)
    if state == TrialState.COMPLETE:
        study.tell(trial, [metrics[m.name] for m in prepared.objectives])
    else:
        study.tell(trial, state=state)
    tracker.log_trial(trial.number, params={**policy.flat_params(), **{k: record[k] for k in WHERE[1:] if record.get(k)}},
                      metrics=metrics, state=state.name, reason=reason,
                      duration_s=seconds, node=record.get("node", ""),
                      step_metrics={"val_accuracy": outcome.get("epoch_accuracies", [])} if isinstance(outcome, dict) else None)
    trials = study.get_trials(deepcopy=False)
    done = counts(study, trials)[0]
    best = _best_so_far(trials, prepared)
    shown = ", ".join(f"{k} {_fmt(k, v)}" for k, v in metrics.items() if k in [m.name for m in prepared.objectives])
    line = f"trial {done}/{n_trials} #{trial.number} {state.name.lower()}: {shown or reason}"
    if reason and state == TrialState.FAIL:
        line += f" ({reason})"
    if best:
        line += f" | best so far: {best}"
    log(line)
    return trials


def _fmt(name: str, value: float) -> str:
    if name.startswith("accuracy"):
        return f"{value:.2f}%"
    if name.startswith("latency"):
        return f"{value:.3f}ms"
    if name == "size":
        return f"{value / 1e3:.1f}KB"
    if name in ("macs", "params", "bitops"):
        return f"{value / 1e6:.3f}M"
    return f"{value:.4g}"


def _progress_state(study, optuna_trials, prepared: Prepared, n_trials: int) -> ProgressState:
    optuna_trials = optuna_trials if optuna_trials is not None else study.get_trials(deepcopy=False)
    done, running = counts(study, optuna_trials)
    records = [TrialRecord.from_optuna(t) for t in optuna_trials]
    return ProgressState(done=done, total=n_trials, running=running, best=_best_so_far(records, prepared),
                         per_device=best_per_device(prepared.context.config, records, prepared.constraints,
                                                    prepared.context.baseline_accuracy))


def _best_so_far(trials, prepared: Prepared) -> str:
    """The winner so far, as text; ``trials`` are Optuna trials or ``TrialRecord``s."""
    cfg = prepared.context.config
    trials = [t if isinstance(t, TrialRecord) else TrialRecord.from_optuna(t) for t in trials]
    best = select_best(cfg, trials, prepared.constraints, prepared.context.baseline_accuracy)
    if best is None:
        return ""
    key = select_metric(cfg)
    if key not in best.metrics:  # objectives [accuracy]: show the constrained cost instead
        key = next((c.metric.name for c in prepared.constraints if c.metric.name in best.metrics), None)
    return f"#{best.number} accuracy {best.metrics['accuracy']:.2f}%" + (f", {key} {_fmt(key, best.metrics[key])}" if key else "")


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
