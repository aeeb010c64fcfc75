"""The trial loop of a search, and nothing else: ask a policy, project it onto the budget, cost
it, submit it, tell the outcome (Optuna, MLflow, one log line); heartbeats, stale trials,
interrupts and the progress bar. The stages around it: ``baseline`` (before) and ``finish``
(after); ``pipeline.run_search`` runs the three in order.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

from automc._files import storage_fault
from automc.objectives import fmt_metric
from automc.policy import Policy
from automc.search import interrupt
from automc.search.baseline import Prepared
from automc.search.costs import cost_metrics, tracked_cost_metrics
from automc.search.progress import Progress, best_so_far, progress_state
from automc.search.projection import project
from automc.search.strategies.fidelity import Stopped, band_metric
from automc.search.study import Heartbeat, ask_within, counts, fail_stale, release_interrupted

Log = Callable[[str], None]


def run_trials(study, prepared: Prepared, executor, tracker, n_trials: int, log: Log,
               progress: Progress | None = None) -> None:
    """The ask/tell loop: keep ``executor.capacity`` trials in flight until the study holds
    ``n_trials`` finished trials (counting trials other processes run on the same study). Each
    asked policy is projected onto the cost budget and costed before it is submitted; each
    outcome is told to Optuna and MLflow. Ctrl-C or a refused write releases the trials in
    flight (re-queued for the next run) and re-raises."""
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
                progress(progress_state(study, trials, prepared, n_trials))
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
                    progress(progress_state(study, trials, prepared, n_trials))
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
    cfg, space = prepared.context.config.compress, prepared.space
    bits = {b for d in space.decisions if d.section == "w_bits" for b in d.choices if b < 32}
    projected, feasible = project(prepared.context.table, policy, prepared.constraints,
                                  max_ratio=cfg.pruning.max_ratio if cfg.pruning else 0.0, bit_choices=sorted(bits))
    return space.conform(projected), feasible


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
    best = best_so_far(trials, prepared)
    shown = ", ".join(f"{k} {fmt_metric(k, v)}" for k, v in metrics.items() if k in [m.name for m in prepared.objectives])
    line = f"trial {done}/{n_trials} #{trial.number} {state.name.lower()}: {shown or reason}"
    if reason and state == TrialState.FAIL:
        line += f" ({reason})"
    if best:
        line += f" | best so far: {best}"
    log(line)
    return trials
