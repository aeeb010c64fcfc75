"""``automc measure``: time a finished search's winner, baseline, uniform reference or any trial on a
device with MindSpore Lite's ``benchmark`` (through a runner: ``local``, ``ssh://``, ``adb://``),
beside the latency its device model predicts, and the speed-up against the baseline measured the
same way. Logged to the trial's MLflow run (``measured_latency_ms``, tag ``measured_device``; the
baseline and the uniform reference to the search's parent run, prefixed), kept in
``export/measured.json``, and with ``append`` added as a row of a calibration CSV (``automc
calibrate``).

A calibration CSV names networks automc builds from a name (a zoo name, ``mindcv:NAME``,
``pkg.module:function``): the baseline is such a network, a pruned winner is not, so only the
baseline's measurement can be appended.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from automc.config import ExperimentConfig
from automc.deploy.runners import make_runner
from automc.errors import AutomcError
from automc.report._mlflow import SearchRuns
from automc.report._store import load
from automc.report.trial_export import pick_trial
from automc.search.baseline import prepare
from automc.search.finish.measure import (Measurement, Timing, baseline_for, default_device, measure_networks,
                                          mlflow_fields, read_measurements, record, speedups, uniform_policy)
from automc.search.tracking import find_trial_run

#: the columns ``append`` writes to a new calibration CSV (``automc.hw_cost.user`` reads them)
CSV_COLUMNS = ("network", "input", "precision", "latency_ms", "threads", "batch", "classes")


@dataclass
class MeasureOutcome:
    measurement: Measurement
    baseline: Measurement | None = None  # measured in the same rounds (with_baseline)
    speedups: list[str] = field(default_factory=list)
    mlflow_runs: list[str] = field(default_factory=list)
    appended: str = ""  # the CSV row written

    def follow_up(self) -> list[str]:
        """What the command prints after the measurement's own line: speed-ups, MLflow, the CSV row."""
        out = list(self.speedups)
        out += [f"logged to MLflow: {run}" for run in self.mlflow_runs]
        if self.appended:
            out.append(f"appended: {self.appended}")
        return out


def calibration_network(config: ExperimentConfig) -> str:
    """The experiment's baseline as a calibration CSV's ``network``: its zoo name, ``mindcv:ARCH``
    or its factory; AutomcError when the model's arguments cannot be written there."""
    model = config.model
    kwargs = dict(model.kwargs)
    kwargs.pop("num_classes", None)
    kwargs.pop("input_shape", None)
    arch = kwargs.pop("arch", None) if model.name == "mindcv" else None
    if kwargs:
        raise AutomcError(f"--append: model.kwargs {sorted(kwargs)} cannot be written in a calibration CSV (its network "
                          "column names a network built without arguments); wrap the network in a "
                          "'pkg.module:function' factory and add its row by hand")
    if model.name == "mindcv":
        return f"mindcv:{arch}"
    return model.name or model.factory


def _check_csv(path: Path) -> list[str]:
    """The columns of the calibration CSV ``path`` (``CSV_COLUMNS`` for a new or empty file)."""
    if not path.is_file() or not path.read_text().strip():
        return list(CSV_COLUMNS)
    header = [h.strip() for h in next(csv.reader(io.StringIO(path.read_text())), [])]
    missing = [c for c in CSV_COLUMNS[:4] if c not in header]
    if missing:
        raise AutomcError(f"--append {path}: its header has no {missing[0]!r} column; a calibration CSV starts with "
                          f"{','.join(CSV_COLUMNS)}")
    return header


def append_row(path: Path, header: list[str], config: ExperimentConfig, m: Measurement, input_shape, classes: int) -> str:
    """Add the baseline's measurement ``m`` as a row of the calibration CSV ``path``; returns the row."""
    network = calibration_network(config)
    default_classes = 1000 if network.startswith("mindcv:") else 10
    if classes != default_classes and "classes" not in header:
        raise AutomcError(f"--append {path}: the network has {classes} classes and the file has no 'classes' column; "
                          "add one (the calibration reads 10, or 1000 for mindcv networks, without it)")
    values = {"network": network, "input": "x".join(str(int(s)) for s in input_shape), "precision": "fp32",
              "latency_ms": f"{m.measured_latency_ms:.6g}", "threads": str(m.threads), "batch": "1",
              "classes": str(classes)}
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerow([values.get(c, "") for c in header])
    new = not path.is_file() or not path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", newline="") as fh:
        if new:
            fh.write(",".join(header) + "\n")
        elif not path.read_text().endswith("\n"):
            fh.write("\n")
        fh.write(text.getvalue())
    return text.getvalue().strip()


def measure_latency(config: ExperimentConfig, *, on: str, trial: int | None = None, baseline: bool = False,
            uniform: bool = False, device: str | None = None, timing: Timing = Timing(),
            with_baseline: bool = True, benchmark: str | None = None, append: str | Path | None = None,
            mlflow: bool = True, log: Callable[[str], None] = lambda s: None) -> MeasureOutcome:
    """Time one network of a finished search on the runner ``on`` (see ``automc.deploy.runners``);
    ``with_baseline``: the baseline too, in the same rounds, for a speed-up measured side by side."""
    if sum((trial is not None, baseline, uniform)) > 1:
        raise AutomcError("give one of --trial N, --baseline, --uniform (none: the winner)")
    runner = make_runner(on, benchmark=benchmark)
    device = default_device(config, on, device)
    csv_path = Path(append).expanduser() if append is not None else None
    header = _check_csv(csv_path) if csv_path is not None else []
    if csv_path is not None:
        if not baseline:
            raise AutomcError(f"--append {csv_path}: only the baseline can be appended (--baseline): a calibration CSV "
                              "names networks automc builds from a name (zoo, mindcv:NAME, pkg.module:function), and "
                              "a pruned network has none")
        calibration_network(config)

    result = load(config)
    if baseline:
        network = "baseline"
    elif uniform:
        uniform_policy(result)  # there is one, before anything is rebuilt
        network = "uniform"
    else:
        record_ = pick_trial(result, trial, verb="measure")
        network = "winner" if result.best is not None and record_.number == result.best.number else \
            f"trial-{record_.number:04d}"
    runner.check()  # reach the device before anything is rebuilt
    prepared = prepare(config, train_baseline=False)
    networks = [network, "baseline"] if with_baseline and network != "baseline" else [network]
    measured = measure_networks(result, prepared, networks, runner, device=device, timing=timing, log=log)
    record(config.out_path, measured)
    m = measured[0]
    done = MeasureOutcome(measurement=m, baseline=measured[1] if len(measured) > 1 else None,
                          speedups=speedups([m], read_measurements(config.out_path)))
    if mlflow:
        every = read_measurements(config.out_path)
        done.mlflow_runs = [line for one in measured for line in _log_mlflow(config, one, baseline_for(one, every))]
    if csv_path is not None:
        data = prepared.context.data
        done.appended = append_row(csv_path, header, config, m, data.input_shape, data.num_classes)
    return done


def _log_mlflow(config: ExperimentConfig, m: Measurement, base: Measurement | None) -> list[str]:
    """Log ``m`` to its trial's run (and the parent run of the search that ran it, prefixed); the
    baseline and the uniform reference to the newest parent run, prefixed. Returns what was logged where."""
    runs = SearchRuns(config)
    logged = []
    targets = []
    if m.trial is not None:
        run_id = find_trial_run(runs.client, runs.experiment_id, m.trial)
        if run_id is not None:
            targets.append((run_id, "", f"trial {m.trial}'s run {run_id}"))
        parent = runs.parent_for_trial(m.trial)
    else:
        parent = runs.latest_parent()
    prefix = "best_" if m.network == "winner" else f"{m.network.replace('-', '_')}_"
    targets.append((parent, prefix, f"the search's run {parent}"))
    for run_id, pre, what in targets:
        metrics, tags = mlflow_fields(m, prefix=pre, base=base)
        for key, value in metrics.items():
            runs.client.log_metric(run_id, key, value)
        for key, value in tags.items():
            runs.client.set_tag(run_id, key, value)
        logged.append(f"{what} ({', '.join(metrics)})")
    return logged
