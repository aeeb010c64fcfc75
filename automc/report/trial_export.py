"""``automc export``: re-export any logged trial from its saved checkpoint, check parity, and log
the files to the MLflow parent run of the search that ran it. Nothing is re-searched or re-trained:
the trial's policy is replayed on the cached baseline and its fine-tuned weights are loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from automc._files import write_text_atomic
from automc.config import ExperimentConfig
from automc.deploy.formats import FORMATS, export_formats
from automc.errors import AutomcError
from automc.report._mlflow import SearchRuns
from automc.report._store import load
from automc.search.baseline import prepare
from automc.search.evaluate import Evaluator
from automc.search.finish.export import CALIBRATION_SAMPLES, deploy_form
from automc.search.result import SearchResult, TrialRecord, trial_network


@dataclass
class TrialExport:
    trial: int
    files: dict[str, Path] = field(default_factory=dict)
    parity: dict[str, str] = field(default_factory=dict)   # format -> parity report line
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)   # format -> why it failed (the others still ran)
    mlflow_run: str = ""


def parse_formats(text: str | Sequence[str]) -> list[str]:
    items = [f.strip().lower() for f in (text.split(",") if isinstance(text, str) else text) if f.strip()]
    bad = [f for f in items if f not in FORMATS]
    if bad or not items:
        raise AutomcError(f"unknown export format {bad[0]!r}; use a comma-separated list of {', '.join(FORMATS)}"
                          if bad else f"give at least one format: {', '.join(FORMATS)}")
    return list(dict.fromkeys(items))


def pick_trial(result: SearchResult, trial: int | None, *, verb: str) -> TrialRecord:
    """Trial ``trial`` of the search (default: its winner); an AutomcError says which trials there are
    when it does not exist, or has no fine-tuned weights (``verb``: what the user wanted to do)."""
    if trial is None:
        if result.best is None:
            raise AutomcError("the search has no winner yet (no completed trial meets the constraints); "
                              "pick one with --trial N (`automc report` lists them)")
        return result.best
    by_number = {t.number: t for t in result.trials}
    if trial not in by_number:
        raise AutomcError(f"no trial #{trial} in study {result.config.name!r}; trials are "
                          f"0..{max(by_number) if by_number else -1} (`automc status` lists them)")
    record = by_number[trial]
    if record.state != "COMPLETE":
        raise AutomcError(f"trial #{trial} is {record.state.lower()}, it has no fine-tuned weights; "
                          f"{verb} a completed trial")
    return record


def export_trial(config: ExperimentConfig, *, trial: int | None = None, formats: Sequence[str] = ("mindir",),
                 out_dir: str | Path | None = None, mlflow: bool = True,
                 log: Callable[[str], None] = lambda s: None) -> TrialExport:
    """Rebuild trial ``trial`` (default: the search's winner), export it to ``formats`` in its
    deployment form, check each file against the in-memory network, and log the files to MLflow."""
    formats = parse_formats(formats)
    result = load(config)
    record = pick_trial(result, trial, verb="export")
    prepared = prepare(config, train_baseline=False)
    evaluator = Evaluator(prepared.context)
    try:
        net = deploy_form(trial_network(config, record, evaluator=evaluator, log=log), evaluator)
    except LookupError as exc:
        raise AutomcError(f"{exc}; was the output folder moved or cleaned?") from None

    data = prepared.context.data
    sample, check_x = data.test.x[:1], data.test.x[:256]
    out = Path(out_dir) if out_dir is not None else config.out_path / "export" / f"trial-{record.number:04d}"
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"trial-{record.number:04d}"
    done = TrialExport(trial=record.number)
    done.files["policy"] = write_text_atomic(out / "policy.json", record.policy.to_json())

    outcomes = export_formats(net, formats, stem, sample, check_x, log=log, test=(data.test.x, data.test.y),
                              calibration=data.train.x[:CALIBRATION_SAMPLES])
    for fmt, outcome in outcomes.items():
        if outcome.int8 is not None:  # an int8 file, run in its runtime: agreement and accuracy, no max |d|
            done.files[fmt] = outcome.path
            done.parity[fmt] = outcome.line()
        elif outcome.ok:
            done.files[fmt] = outcome.path
            done.parity[fmt] = str(outcome.report)
            done.max_abs_diff[fmt] = float(outcome.report.max_abs_diff)
        else:
            done.errors[fmt] = outcome.error

    if mlflow:
        runs = SearchRuns(config)
        done.mlflow_run = runs.parent_for_trial(record.number)
        runs.log_files(done.mlflow_run, list(done.files.values()), f"exports/trial-{record.number:04d}")
        runs.client.set_tag(done.mlflow_run, f"automc.exported.trial-{record.number:04d}",
                            ",".join(f for f in formats if f in done.files))
    return done
