"""The ``automc`` command: search, and what users do around a search.

``init`` a starter YAML, ``search`` (``--dry-run`` first), follow it with ``status`` and ``ui``,
then ``report`` and ``export`` any trial. Every ``AutomcError`` becomes one line on stderr and
exit code 2; nothing already computed is lost (trials live in the study storage, runs in
MLflow). Everything printed passes through ``mask_secrets``: no password reaches the console.
"""

from __future__ import annotations

import atexit
import gc
import logging
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from automc import report
from automc._files import storage_fault
from automc._version import __version__
from automc.config import load_config as _load
from automc.errors import AutomcError, mask_secrets
from automc.hw_cost import USER_DEVICES_ENV, calibrate_device, read_measurements
from automc.search.baseline import prepare
from automc.search.dryrun import dry_run as dry_run_text
from automc.search.dryrun import sensitivity_plan
from automc.search.interrupt import request_stop
from automc.search.pipeline import run_search
from automc.search.progress import live_progress
from automc.search.strategies.sensitivity import load_or_analyse
from automc.search.study import storage_url
from automc.search.tracking import is_server, ui_hint

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="AutoML model compression for MindSpore: search pruning / mixed-precision / NAS policies, "
    "score them on hardware cost models, track them in MLflow, export the winner.\n\n"
    "Typical session: automc init my.yaml; automc search my.yaml --dry-run; automc search my.yaml; "
    "automc status my.yaml; automc ui my.yaml; automc report my.yaml; automc export my.yaml --trial N.",
)

_EXPERIMENT = typer.Argument(..., help="experiment YAML file", show_default=False, metavar="EXPERIMENT")


def _quiet_libraries() -> None:
    os.environ.setdefault("GLOG_v", "3")  # MindSpore's C++ log level: errors only
    for name in ("mlflow", "alembic", "optuna", "ray"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # MLflow logs a store error with its traceback and raises it too: the error line says it once
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    # Ray >= 2.60 warns on every local start that token authentication is on (it is, for the
    # Ray that automc starts on 127.0.0.1): noise on a command's one-line errors
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)


def _out(text: str = "") -> None:
    """Print for people: secrets masked, no rich markup interpretation of ``[...]``."""
    from rich.console import Console

    Console(highlight=False, soft_wrap=True).print(mask_secrets(str(text)), markup=False)


def _stop_cleanly_on_signals() -> None:
    """SIGTERM and SIGHUP stop a search like Ctrl-C (``KeyboardInterrupt``: trials in flight failed
    and re-queued, the parent run closed as KILLED). This is also what makes Ctrl-C work at all:
    MindSpore's runtime installs its own SIGINT handler, which turns SIGINT into SIGTERM."""
    import signal

    def stop(signum, frame):
        request_stop()  # in case MindSpore's compiler swallows the exception (see automc.search.interrupt)
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)


def _version(value: bool) -> None:
    if value:
        print(f"automc {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print the version and exit")) -> None:
    """AutoML model compression for MindSpore."""


@app.command(short_help="Run (or resume) a search; --dry-run checks it first.")
def search(
    experiment: Path = _EXPERIMENT,
    trials: Optional[int] = typer.Option(None, "--trials", "-n", help="finished trials wanted in the study (overrides search.n_trials)"),
    resume: bool = typer.Option(True, "--resume/--new", help="continue the study of the same name, or start it afresh"),
    dry_run: bool = typer.Option(False, "--dry-run", help="validate, build the layer table, print the search space and predicted costs; no training, no storage or cluster connection"),
) -> None:
    """Run (or resume) a compression search."""
    config = _load(experiment)
    if dry_run:
        _out(dry_run_text(config))
        _out(_where(config))
        return
    _stop_cleanly_on_signals()
    result = run_search(config, n_trials=trials, resume=resume, log=_out, progress=live_progress(sys.stdout))
    report.report_search(result, log=_out)
    _out(report.summary_text(result))
    _out(f"\nnext: automc report {experiment}  |  automc export {experiment} --trial N --format mindir,onnx")


@app.command(short_help="Per-layer sensitivity of the baseline (what the budget solver minimises).")
def sensitivity(
    experiment: Path = _EXPERIMENT,
    dry_run: bool = typer.Option(False, "--dry-run", help="print the grid that would be scored; no training, nothing written"),
) -> None:
    """Score the baseline with each single change of the search space (every prunable group at a
    grid of ratios, every quantizable layer at each bit-width): validation accuracy and loss after
    batch-norm re-estimation, no fine-tune. Trains (or reuses) the cached baseline; the result is
    cached and reused by `search.strategy: sensitivity` / `solver` and `search.warm_start`."""
    config = _load(experiment)
    if dry_run:
        _out(sensitivity_plan(config))
        return
    result = load_or_analyse(prepare(config, log=_out), log=_out)
    _out(result.to_text())
    _out(f"\nsaved: {config.out_path / 'sensitivity.json'}")


def _where(config) -> str:
    """Where a search would run and write, as the dry-run shows it (nothing is contacted)."""
    ex = config.execution
    storage = storage_url(config)
    runs_on = f"ray at {ex.ray_address or 'a local Ray'}" if ex.backend == "ray" else "this process"
    return (f"\nstudy storage: {storage}\nMLflow tracking: {report.tracking_uri(config)}\n"
            f"trials run on: {runs_on}, {ex.workers} at a time\n(--dry-run contacts none of these)")


@app.command(short_help="Progress, best so far, latest trials, failures.")
def status(experiment: Path = _EXPERIMENT) -> None:
    """Progress of a search: trials by state, best so far (overall and per device), latest trials, failures."""
    _out(report.status_text(_load(experiment), experiment_file=str(experiment)))


@app.command("report", short_help="Pareto table, best per device, per-layer breakdown, plots.")
def report_command(
    experiment: Path = _EXPERIMENT,
    fmt: str = typer.Option("html", "--format", "-f", help="html (plots embedded) or md (plots linked)"),
    log_mlflow: bool = typer.Option(True, "--mlflow/--no-mlflow", help="log the plots and the report to the search's MLflow parent run"),
) -> None:
    """Pareto table, best policy per device, per-layer breakdown and plots; writes <output_dir>/report/report.html."""
    if fmt not in ("html", "md"):
        raise AutomcError(f"--format {fmt!r}: use html or md")
    result = report.load(_load(experiment))
    _out(report.to_text(report.build(result)))
    path = report.write_report(result, fmt=fmt, mlflow=log_mlflow)
    plots = sorted(p.name for p in path.parent.glob("*.png"))
    _out(f"\nplots: {', '.join(plots) or 'none (no completed trial yet)'} in {path.parent}")
    if log_mlflow:
        _out("logged to the search's MLflow parent run: plots/, report/  (automc ui " f"{experiment})")
    _out(f"report: {path}")


@app.command(short_help="Re-export any trial to MindIR/ONNX/.ms with parity checks.")
def export(
    experiment: Path = _EXPERIMENT,
    trial: Optional[int] = typer.Option(None, "--trial", "-t", help="trial number (default: the search's winner)"),
    formats: str = typer.Option("mindir", "--format", "-f", help="comma-separated: mindir, onnx, ms"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="folder (default: <output_dir>/export/trial-NNNN)"),
    log_mlflow: bool = typer.Option(True, "--mlflow/--no-mlflow", help="log the files to the search's MLflow parent run"),
) -> None:
    """Re-export a logged trial from its saved checkpoint, check parity, log the files to MLflow."""
    fmts = report.parse_formats(formats)  # bad formats fail before anything loads
    done = report.export_trial(_load(experiment), trial=trial, formats=fmts, out_dir=out, mlflow=log_mlflow, log=_out)
    for key, path in done.files.items():
        _out(f"{key:>7}: {path}")
    if done.mlflow_run:
        _out(f"logged to MLflow run {done.mlflow_run} under exports/trial-{done.trial:04d}/")
    if done.errors:  # the other formats were written and checked; say which failed, exit 1
        failed = "; ".join(f"{fmt}: {why}" for fmt, why in done.errors.items())
        print(mask_secrets(f"error: {len(done.errors)} of {len(fmts)} formats failed ({failed})"), file=sys.stderr)
        raise typer.Exit(1)


@app.command(short_help="Time the winner (--baseline, --uniform, --trial N) on a device with Lite's benchmark.")
def measure(
    experiment: Path = _EXPERIMENT,
    on: str = typer.Option(..., "--on", help="runner: local (this machine), ssh://user@host[:port]/dir, adb://SERIAL"),
    trial: Optional[int] = typer.Option(None, "--trial", "-t", help="trial number (default: the search's winner)"),
    baseline: bool = typer.Option(False, "--baseline", help="measure the baseline"),
    uniform: bool = typer.Option(False, "--uniform", help="measure the uniform reference (export.compare_uniform)"),
    device: Optional[str] = typer.Option(None, "--device", help="device model to compare with (default: host-cpu for local, else the experiment's first latency device)"),
    threads: int = typer.Option(1, "--threads", help="benchmark threads (--numThreads)"),
    loops: Optional[int] = typer.Option(None, "--loops", help="timed inferences per benchmark run (--loopCount; default: as many as take 0.25 s)"),
    warmup: int = typer.Option(20, "--warmup", help="untimed inferences first (--warmUpLoopCount)"),
    repeat: int = typer.Option(5, "--repeat", help="benchmark runs; the measured latency is the median of their averages"),
    with_baseline: bool = typer.Option(True, "--with-baseline/--alone", help="time the baseline in the same rounds, for a speed-up measured side by side"),
    benchmark: Optional[str] = typer.Option(None, "--benchmark", help="path of the benchmark binary on the device (ssh: required; adb: default /data/local/tmp/benchmark; local: automc's own)"),
    append: Optional[Path] = typer.Option(None, "--append", help="add the measurement as a row of this calibration CSV (automc calibrate; --baseline only)"),
    log_mlflow: bool = typer.Option(True, "--mlflow/--no-mlflow", help="log the measurement to the trial's MLflow run"),
) -> None:
    """Rebuild a network of a finished search, convert it to .ms, time it with MindSpore Lite's
    benchmark on a device (the baseline too, in the same rounds, unless --alone), and print it beside
    the latency the device model predicts, with the speed-up against the baseline."""
    timing = report.Timing(threads=threads, loops=loops, warmup=warmup, repeat=repeat)
    done = report.measure_latency(_load(experiment), on=on, trial=trial, baseline=baseline, uniform=uniform,
                                  device=device, timing=timing, with_baseline=with_baseline, benchmark=benchmark,
                                  append=append, mlflow=log_mlflow, log=_out)
    for line in done.follow_up():
        _out(line)


@app.command(short_help="Known devices and their key figures.")
def devices(
    files: Optional[List[Path]] = typer.Argument(None, help="device YAMLs of your own to list too", metavar="DEVICE.yaml"),
) -> None:
    """List the known devices and their key figures (sources: automc/hw_cost/devices/<device>.yaml):
    the built-in ones, those in the folders $AUTOMC_DEVICES names, and the device YAMLs given."""
    _out(report.devices_text([str(f) for f in files or []]))


@app.command(short_help="Fit a device to latencies you measured; writes a device YAML.")
def calibrate(
    base: str = typer.Argument(..., help="the device closest to yours (`automc devices`), or a device YAML",
                               show_default=False, metavar="BASE_DEVICE"),
    measurements: Path = typer.Argument(..., help="CSV: network,input,precision,latency_ms (optional: threads,"
                                        "batch,classes,profile)", show_default=False, metavar="MEASUREMENTS.csv"),
    out: Path = typer.Option(..., "--out", "-o", help="the device YAML to write", show_default=False),
    name: Optional[str] = typer.Option(None, "--name", help="the device's name, as in latency@NAME (default: the "
                                       "--out file name without .yaml)"),
) -> None:
    """Fit BASE_DEVICE's cost model to latencies measured on your device and write a device YAML
    that works wherever a device name does. One row scales every time term (the row is then
    reproduced exactly); more rows (networks of different shapes) also move the op classes'
    efficiencies relative to each other; a `profile` (saved `benchmark --timeProfiling=true`
    output) informs each op class. With 3 or more rows it prints the leave-one-out error too."""
    rows = read_measurements(measurements)
    device = calibrate_device(base, rows, name=name or out.stem, source=str(measurements))
    left_out = device.leave_one_out()
    path = device.save(out, left_out)
    _out(device.to_text(left_out))
    new = device.spec.name
    _out(f"\nwrote {path} (device {new!r}). Use it as a device name is used: `devices: [{path}]` in an experiment "
         f"(then `latency@{new} <= ...` in its constraints), automc.hw_cost.load_device({str(path)!r}), "
         f"`automc devices {path}`, or {USER_DEVICES_ENV}={path.resolve().parent} to know it by name everywhere.")


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


@app.command(short_help="Start the MLflow UI (127.0.0.1) on the experiment's runs.")
def ui(
    experiment: Path = _EXPERIMENT,
    host: str = typer.Option("127.0.0.1", help="address to listen on; 127.0.0.1 keeps it on this machine"),
    port: int = typer.Option(5000, help="port"),
) -> None:
    """Start the MLflow UI on the experiment's tracking store and print the link to its trials.
    SIGINT, SIGTERM or SIGHUP stop the server and its workers."""
    config = _load(experiment)
    uri = report.tracking_uri(config)
    exp_id = report.find_experiment_id(config)
    if is_server(uri):
        _out(f"this experiment logs to an MLflow server: {ui_hint(uri)}, experiment {report.experiment_name(config)!r}")
        return
    if not _is_loopback(host):
        _out(f"warning: listening on {host}: anyone who can reach this machine can read (and delete) these runs")
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    _out(f"MLflow UI for {uri}")
    if exp_id is None:
        _out(f"open {url}/#/experiments  (no search has logged to experiment {report.experiment_name(config)!r} yet; "
             "Ctrl-C to stop)")
    else:
        _out(f"open {report.trials_page(url, exp_id)}")
        _out(f"  (the trials of experiment {report.experiment_name(config)!r}, as charts of their metrics; the table "
             "view is one click left; Ctrl-C to stop)")
    artifacts = (config.out_path / "mlartifacts").resolve()
    # one local reader: one server worker, and none of MLflow 3's GenAI job runners (each of these
    # processes imports the whole MLflow server: ~5 s of CPU apiece before the page answers)
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--default-artifact-root",
           artifacts.as_uri(), "--host", host, "--port", str(port), "--workers", "1"]
    sys.stdout.flush()
    raise typer.Exit(report.serve(cmd, env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}))


@app.command(short_help="Write a commented starter experiment YAML.")
def init(path: Path = typer.Argument(Path("experiment.yaml"), help="where to write the starter YAML")) -> None:
    """Write a fully commented starter experiment YAML (runs as is: LeNet on digits)."""
    from importlib.resources import files

    if path.exists():
        raise AutomcError(f"{path} exists already; give another file name")
    text = (files("automc") / "templates" / "experiment.yaml").read_text()
    name = path.stem if path.stem.replace("-", "").replace("_", "").replace(".", "").isalnum() else "my-experiment"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.replace("name: my-experiment", f"name: {name}", 1))
    _out(f"wrote {path}; edit it, then: automc search {path} --dry-run")


def main(argv: Optional[List[str]] = None) -> None:
    _quiet_libraries()
    # the last exit handler (they run last in, first out: MLflow's and Ray's, registered later, run
    # before it) freezes what is left, so the interpreter's shutdown does not collect garbage over
    # every object of MindSpore, MLflow and the search: 2.4-3.7 s after each search, measured here
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)
    try:
        code = app(args=argv, standalone_mode=False)  # click returns typer.Exit's code here
    except AutomcError as exc:
        print(f"error: {mask_secrets(str(exc))}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted: completed trials are saved; run the same command again to resume", file=sys.stderr)
        sys.exit(130)
    except typer.TyperException as exc:  # click's usage errors (typer's public root of them)
        show = getattr(exc, "show", None)
        if show is not None:
            show()  # usage line, "Try 'automc COMMAND --help'", the error; or the help for `automc` alone
        else:
            print(f"error: {exc.format_message()}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:
        fault = storage_fault(exc)
        if fault is not None:  # the machine refused a write: what and where, not a traceback
            where = f": {fault.path}" if fault.path else ""
            print(mask_secrets(f"error: {fault.said}{where} ({type(exc).__name__}); {fault.fix} and run the same "
                               "command again"), file=sys.stderr)
            sys.exit(1)
        import traceback

        print(mask_secrets(traceback.format_exc()), file=sys.stderr, end="")  # a bug: full trace, no secrets
        sys.exit(1)
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
