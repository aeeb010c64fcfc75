"""Measure exported networks on a device: the winner, the baseline, the uniform reference (or any
trial) rebuilt, exported to MindIR, converted to ``.ms`` and timed by MindSpore Lite's ``benchmark``
through a runner (``automc.deploy.runners``), beside the latency the device model predicts.

Every measurement goes to ``export/measured.json`` (the newest of each network, runner and thread
count, and the baselines measured together with them), which the search's summary, the report and
``automc measure`` read. A speed-up is measured against the baseline timed by the same runner with
the same threads, in the same rounds when it was: the median of the rounds' ratios.

Lite 2.0's runtime here runs float ``.ms`` only, so a quantized policy is measured as its float
structure (pruning and NAS applied, bit-widths left out) and predicted for that same structure.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from automc import hw_cost
from automc._files import folder_lock, write_text_atomic
from automc.deploy import convert_to_ms, export_mindir
from automc.deploy.runners import Runner, make_runner
from automc.errors import AutomcError
from automc.policy import Policy
from automc.search.costs import latency_devices
from automc.search.evaluate import Evaluator
from automc.search.finish.export import deploy_form
from automc.search.finish.reference import read_reference
from automc.search.result import SearchResult, final_checkpoint, trial_network
from automc.search.tracking import find_trial_run

FILE = "measured.json"
#: within this share of each other, a measured and a predicted speed-up "agree" (what the README claims)
SPEEDUP_TOLERANCE = 0.15


@dataclass(frozen=True)
class Timing:
    """How a network is timed: ``repeat`` runs of ``benchmark`` (separate processes; with several
    networks, in rounds that visit each network once, in alternating order), each ``warmup`` untimed
    and ``loops`` timed inferences with ``threads`` threads; ``loops=None``: as many as take
    :data:`AUTO_RUN_S` (a first short run estimates the latency). The measured latency is the median
    of the runs' averages (a run that shared its core with another process does not move it); speed-ups
    compare each run's fastest inference, round by round (see :func:`measured_speedup`)."""

    threads: int = 1
    loops: int | None = None
    warmup: int = 20
    repeat: int = 5

    def __post_init__(self):
        if min(self.threads, self.repeat, self.loops or 1) < 1 or self.warmup < 0:
            raise AutomcError(f"threads, loops and repeat must be >= 1 and warmup >= 0 (got threads {self.threads}, "
                              f"loops {self.loops}, repeat {self.repeat}, warmup {self.warmup})")

    def loops_for(self, runner: Runner, ms_file: Path) -> int:
        """``loops``, or as many as fill :data:`AUTO_RUN_S` (at least 10, at most 100,000)."""
        if self.loops is not None:
            return self.loops
        pilot = runner.run(ms_file, threads=self.threads, loops=10, warmup=self.warmup)
        return int(min(100_000, max(10, math.ceil(AUTO_RUN_S * 1e3 / max(pilot.min_ms, 1e-6)))))


#: seconds of timed inference per benchmark run when ``Timing.loops`` is None (auto): long enough that
#: the scheduler's slices (4 ms) and a shared machine's bursts average out within a run
AUTO_RUN_S = 0.25


@dataclass(frozen=True)
class Measurement:
    """One network timed on one device, and the latency its device model predicts."""

    network: str  # winner, baseline, uniform or trial-NNNN
    trial: int | None  # the trial it is (the winner's number), None for the baseline and the uniform reference
    runner: str
    device: str  # the device model the prediction comes from
    threads: int
    loops: int
    measured_latency_ms: float  # the median of the runs' AvgRunTime
    min_ms: float  # the fastest inference of all runs
    max_ms: float  # the slowest
    predicted_latency_ms: float
    runs_ms: tuple[float, ...] = ()  # each run's AvgRunTime
    runs_min_ms: tuple[float, ...] = ()  # each run's MinRunTime: its fastest inference
    float_structure: bool = False  # a quantized policy measured (and predicted) as its float structure
    ms_file: str = ""
    measured_at: str = ""  # one stamp per session: networks measured together in the same rounds share it

    @classmethod
    def from_dict(cls, row: dict) -> "Measurement":
        """A record of ``measured.json`` or ``summary.json`` (lists back to tuples)."""
        return cls(**{**row, "runs_ms": tuple(row.get("runs_ms", ())), "runs_min_ms": tuple(row.get("runs_min_ms", ()))})

    @property
    def ratio(self) -> float:
        """Measured over predicted latency."""
        return self.measured_latency_ms / self.predicted_latency_ms

    def line(self) -> str:
        what = self.network + (f" (trial {self.trial})" if self.trial is not None and self.network == "winner" else "")
        note = "; float structure of a quantized policy" if self.float_structure else ""
        return (f"{what}: measured {self.measured_latency_ms:.4g} ms (median of {len(self.runs_ms)} runs of "
                f"{self.loops}, min {self.min_ms:.4g}, {self.threads} thread{'s' * (self.threads != 1)}) on "
                f"{self.runner}; predicted "
                f"{self.predicted_latency_ms:.4g} ms on {self.device} (measured/predicted {self.ratio:.2f}){note}")


def default_device(config, runner_url: str, device: str | None) -> str:
    """The device model a measurement is compared with: ``device``, else ``host-cpu`` for the local
    runner, else the experiment's first latency device."""
    if device:
        hw_cost.get_device(device)  # unknown -> ConfigError listing the names
        return device
    if runner_url == "local":
        return "host-cpu"
    devices = latency_devices(config)
    if not devices:
        raise AutomcError(f"runner {runner_url}: give --device NAME, the device model to compare the measurement "
                          "with (`automc devices` lists them, or a device YAML); the experiment names no latency device")
    return devices[0]


def float_policy(policy: Policy) -> Policy:
    """The policy without its bit-widths: what Lite 2.0's float runtime runs."""
    return Policy(prune=policy.prune, nas=policy.nas)


def _quantized(policy: Policy) -> bool:
    return any(b < 32 for b in (*policy.w_bits.values(), *policy.a_bits.values()))


def uniform_policy(result: SearchResult) -> Policy:
    """The uniform reference's policy (``export/uniform_reference.json``); AutomcError when there is none."""
    ref = read_reference(result.out_dir)
    if ref is None or ref.get("policy") is None:
        raise AutomcError(f"no uniform reference in {result.out_dir / 'export'} "
                          f"({'no uniform policy met the budget' if ref else 'export.compare_uniform was off'}); "
                          "measure the winner or the baseline instead")
    return Policy.from_dict(ref["policy"])


def rebuild(result: SearchResult, evaluator: Evaluator, network: str, *,
            log: Callable[[str], None] = print) -> tuple[object, Policy, int | None, bool]:
    """(network in its deployment form, its policy, its trial number or None, measured as the float
    structure) of ``network``: winner, baseline, uniform or trial-NNNN."""
    config = result.config
    if network == "baseline":
        return evaluator.baseline, Policy(), None, False
    if network == "uniform":
        policy = uniform_policy(result)
        record = None
    else:
        record = result.best if network == "winner" else next(
            (t for t in result.trials if f"trial-{t.number:04d}" == network), None)
        if record is None:
            raise AutomcError(f"no {network} in study {config.name!r}")
        policy = record.policy
    number = record.number if record is not None else None
    if _quantized(policy):
        return evaluator.compress(float_policy(policy)), float_policy(policy), number, True
    if network == "uniform":  # its fine-tuned weights are kept only after a final fine-tune; the latency is the same
        final = config.out_path / "export" / "uniform_final.ckpt"
        net = _with_weights(evaluator.compress(policy), final) if final.is_file() else evaluator.compress(policy)
        net.set_train(False)
        return deploy_form(net, evaluator), policy, None, False
    final = final_checkpoint(config, record) if network == "winner" else None
    try:
        net = (_with_weights(evaluator.compress(policy), final) if final is not None
               else trial_network(config, record, evaluator=evaluator, log=log))
    except LookupError as exc:
        raise AutomcError(f"{exc}; was the output folder moved or cleaned?") from None
    return deploy_form(net, evaluator), policy, number, False


def _with_weights(net, checkpoint: Path):
    """``net`` with the weights of ``checkpoint`` (a final fine-tune), in inference mode."""
    import mindspore as ms  # defers MindSpore

    ms.load_param_into_net(net, ms.load_checkpoint(str(checkpoint)), strict_load=True)
    net.set_train(False)
    return net


def measure_networks(result: SearchResult, prepared, networks: Sequence[str], runner: Runner, *, device: str,
                     timing: Timing = Timing(), log: Callable[[str], None] = print) -> list[Measurement]:
    """Rebuild, export and convert each of ``networks``, then time them with ``runner`` in
    ``timing.repeat`` rounds; return them (one line each to ``log``; :func:`record` keeps them)."""
    config = result.config
    out = config.out_path / "export" / "measure"
    out.mkdir(parents=True, exist_ok=True)
    evaluator = Evaluator(prepared.context)
    sample = prepared.context.data.test.x[:1]
    built = []
    for network in networks:
        net, policy, number, as_float = rebuild(result, evaluator, network, log=log)
        mindir = export_mindir(net, sample, out / f"{network}.mindir")
        ms_file = convert_to_ms(mindir, out / f"{network}.ms")
        built.append((network, policy, number, as_float, ms_file))
    loops = {network: timing.loops_for(runner, ms_file) for network, *_, ms_file in built}
    runs: dict[str, list] = {network: [] for network in networks}
    stamp = datetime.datetime.now().isoformat(timespec="milliseconds")
    for r in range(timing.repeat):  # each round visits every network, in alternating order
        for network, *_, ms_file in (built if r % 2 == 0 else built[::-1]):
            runs[network].append(runner.run(ms_file, threads=timing.threads, loops=loops[network],
                                            warmup=timing.warmup))
    done = []
    for network, policy, number, as_float, ms_file in built:
        averages = tuple(r.avg_ms for r in runs[network])
        m = Measurement(network=network, trial=number, runner=runner.url, device=device, threads=timing.threads,
                        loops=loops[network], measured_latency_ms=float(np.median(averages)),
                        min_ms=min(r.min_ms for r in runs[network]), max_ms=max(r.max_ms for r in runs[network]),
                        predicted_latency_ms=float(hw_cost.estimate(prepared.context.table, policy, device).latency_ms[0]),
                        runs_ms=averages, runs_min_ms=tuple(r.min_ms for r in runs[network]),
                        float_structure=as_float, ms_file=str(ms_file), measured_at=stamp)
        log("measure: " + m.line())
        done.append(m)
    return done


def record(out_path: Path, measurements: Sequence[Measurement], *, lock: bool = True) -> Path:
    """Add ``measurements`` to ``export/measured.json``, replacing older ones of the same network,
    runner and threads; a baseline measured together with a measurement that stays is kept too
    (its speed-up pairs their runs). ``lock=False``: the caller holds ``folder_lock(<out>/export)``."""
    folder = Path(out_path) / "export"
    with folder_lock(folder) if lock else contextlib.nullcontext():
        old = read_measurements(out_path)
        newer = {(n.network, n.runner, n.threads) for n in measurements}
        kept = [m for m in old if m.network != "baseline" and (m.network, m.runner, m.threads) not in newer]
        sessions = {m.measured_at for m in [*kept, *measurements] if m.network != "baseline"}
        newest = {(m.runner, m.threads): m for m in sorted(old, key=lambda m: m.measured_at) if m.network == "baseline"}
        kept += [b for b in old if b.network == "baseline" and (b.measured_at in sessions or (
            ("baseline", b.runner, b.threads) not in newer and newest[(b.runner, b.threads)] is b))]
        rows = [asdict(m) for m in sorted(kept, key=lambda m: m.measured_at) + list(measurements)]
        return write_text_atomic(folder / FILE, json.dumps(rows, indent=2))


def read_measurements(out_path: Path) -> list[Measurement]:
    """Every measurement recorded for the experiment (``[]`` when none)."""
    path = Path(out_path) / "export" / FILE
    try:
        rows = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return [Measurement.from_dict(row) for row in rows if isinstance(row, dict)]


def latest(measured: Sequence[Measurement]) -> list[Measurement]:
    """The newest measurement of each network, runner and thread count (``measured.json`` also keeps
    older baselines that newer measurements were paired with)."""
    out: dict[tuple, Measurement] = {}
    for m in sorted(measured, key=lambda m: m.measured_at):
        out[(m.network, m.runner, m.threads)] = m
    return list(out.values())


def _together(m: Measurement, base: Measurement) -> bool:
    return bool(m.measured_at) and m.measured_at == base.measured_at and len(m.runs_ms) == len(base.runs_ms) > 0


def measured_speedup(m: Measurement, base: Measurement, *, on: str = "fastest") -> float:
    """``base``'s latency over ``m``'s. ``on="fastest"``: each run's fastest inference (what the network
    costs when it has the core: another process on a shared machine inflates a run's average by an
    amount that differs from run to run); ``"average"``: the runs' averages. Measured together (the
    same session, rounds side by side): the median of the rounds' ratios, so a slower spell of the
    machine, which both runs of a round share, cancels; else the ratio over the whole sessions."""
    mine, theirs = (m.runs_min_ms, base.runs_min_ms) if on == "fastest" else (m.runs_ms, base.runs_ms)
    if _together(m, base) and len(mine) == len(theirs) > 0:
        return float(np.median(np.asarray(theirs) / np.asarray(mine)))
    if on == "fastest":
        return base.min_ms / m.min_ms
    return base.measured_latency_ms / m.measured_latency_ms


def baseline_for(m: Measurement, all_measured: Sequence[Measurement]) -> Measurement | None:
    """The baseline ``m`` compares with: measured by the same runner, threads and device model; the one
    measured together with ``m`` if there is one, else the newest."""
    same = [b for b in all_measured if b.network == "baseline" and (b.runner, b.threads, b.device)
            == (m.runner, m.threads, m.device)]
    return next((b for b in same if b.measured_at == m.measured_at), same[-1] if same else None)


def speedups(measurements: Sequence[Measurement], all_measured: Sequence[Measurement]) -> list[str]:
    """For each of ``measurements`` but the baseline: its speed-up against the baseline measured by the
    same runner and threads (from ``all_measured``; measured together with it when it was), measured
    beside predicted."""
    lines = []
    for m in measurements:
        if m.network == "baseline":
            continue
        base = baseline_for(m, all_measured)
        if base is None:
            lines.append(f"{m.network}: no baseline measured on {m.runner} with {m.threads} thread(s) yet; "
                         "measure it too (--baseline) for the speed-up")
            continue
        measured = measured_speedup(m, base)
        predicted = base.predicted_latency_ms / m.predicted_latency_ms
        off = measured / predicted - 1
        verdict = "within" if abs(off) <= SPEEDUP_TOLERANCE else "NOT within"
        how = ("fastest inference of each run, round by round" if _together(m, base)
               else f"fastest inferences; baseline measured {base.measured_at}")
        lines.append(f"{m.network} vs baseline: measured speed-up {measured:.2f}x ({how}; on the runs' averages "
                     f"{measured_speedup(m, base, on='average'):.2f}x), predicted {predicted:.2f}x on {m.device} "
                     f"({off:+.1%}: {verdict} +-{SPEEDUP_TOLERANCE:.0%})")
    return lines


def mlflow_fields(m: Measurement, prefix: str = "", base: Measurement | None = None
                  ) -> tuple[dict[str, float], dict[str, str]]:
    """(metrics, tags) of a measurement for MLflow: ``measured_latency_ms``, ``predicted_latency_ms``
    (on ``measured_device``), with ``base`` ``measured_speedup`` and ``predicted_speedup``, ... each
    with ``prefix``."""
    metrics = {f"{prefix}measured_latency_ms": m.measured_latency_ms, f"{prefix}measured_min_latency_ms": m.min_ms,
               f"{prefix}predicted_latency_ms": m.predicted_latency_ms}
    if base is not None and m.network != "baseline":
        metrics[f"{prefix}measured_speedup"] = measured_speedup(m, base)
        metrics[f"{prefix}predicted_speedup"] = base.predicted_latency_ms / m.predicted_latency_ms
    tags = {f"{prefix}measured_device": m.device, f"{prefix}measured_runner": m.runner,
            f"{prefix}measured_threads": str(m.threads)}
    return metrics, tags


def summary_fields(measurements: Sequence[Measurement]) -> dict[str, dict]:
    """``summary.json``'s ``measured`` section: network -> its record."""
    return {m.network: asdict(m) for m in measurements}


def measure_exports(result: SearchResult, prepared, tracker, *, log: Callable[[str], None] = print) -> dict[str, str]:
    """``export.measure`` after the export (call it holding ``folder_lock(<out>/export)``): time the
    networks it names, add them to ``summary.json`` (``measured``) and ``measured.json``, log them to
    MLflow (the winner's trial run: ``measured_latency_ms``, ...; the search's parent run: the same
    with ``best_``, ``baseline_``, ``uniform_``). A failure (a runner that cannot connect) is logged
    and recorded as ``measure_error``; the search's results stay."""
    config = result.config
    cfg = config.export.measure
    out = config.out_path / "export"
    summary_path = out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
    networks = list(cfg.networks)
    if "uniform" in networks and (read_reference(config.out_path) or {}).get("policy") is None:
        log("measure: no uniform reference to measure (no uniform policy met the budget)")
        networks.remove("uniform")
    try:
        runner = make_runner(cfg.runner, benchmark=cfg.benchmark)
        device = default_device(config, cfg.runner, cfg.device)
        previous = (summary or {}).get("measured", {})
        same = [previous.get(n, {}) for n in networks]
        timing = Timing(threads=cfg.threads, loops=cfg.loops, warmup=cfg.warmup, repeat=cfg.repeat)
        if networks and all(p.get("runner") == runner.url and p.get("threads") == cfg.threads and p.get("device") == device
                            and cfg.loops in (None, p.get("loops")) and len(p.get("runs_ms", ())) == cfg.repeat
                            for p in same):
            measurements = [Measurement.from_dict(p) for p in same]
            log(f"measure: already measured on {runner.url} for this export ({summary_path})")
        else:
            runner.check()
            measurements = measure_networks(result, prepared, networks, runner, device=device, timing=timing, log=log)
            record(config.out_path, measurements, lock=False)
    except AutomcError as exc:
        reason = str(exc).splitlines()[0]
        log(f"measure: FAILED: {reason}; the search's results are kept, `automc measure <experiment.yaml> --on "
            f"{cfg.runner}` measures again")
        if summary is not None:
            write_text_atomic(summary_path, json.dumps({**summary, "measure_error": reason}, indent=2, default=str))
        return {"measure_error": reason}
    if summary is not None:
        summary.pop("measure_error", None)
        write_text_atomic(summary_path, json.dumps({**summary, "measured": summary_fields(measurements)}, indent=2,
                                                   default=str))
    for line in speedups(measurements, measurements):
        log("measure: " + line)
    for m in measurements:
        base = baseline_for(m, measurements)
        metrics, tags = mlflow_fields(m, prefix="best_" if m.network == "winner" else f"{m.network}_", base=base)
        tracker.log_metrics(tracker.parent_id, metrics)
        for key, value in tags.items():
            tracker.client.set_tag(tracker.parent_id, key, value)
        run_id = find_trial_run(tracker.client, tracker.experiment_id, m.trial) if m.trial is not None else None
        if run_id is not None:
            metrics, tags = mlflow_fields(m, base=base)
            tracker.log_metrics(run_id, metrics)
            for key, value in tags.items():
                tracker.client.set_tag(run_id, key, value)
    return {"measured": str(out / FILE)}
