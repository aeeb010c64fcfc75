"""The ``automc`` command: search, and what users do around a search.

Every ``AutomcError`` becomes one line on stderr and exit code 2; nothing already computed is
lost (trials live in the study storage, runs in MLflow).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from automc.errors import AutomcError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="AutoML model compression for MindSpore: search pruning / mixed-precision / NAS policies, "
    "score them on hardware cost models, track them in MLflow, export the winner.",
)


def _quiet_libraries() -> None:
    os.environ.setdefault("GLOG_v", "3")  # MindSpore's C++ log level: errors only
    for name in ("mlflow", "alembic", "optuna", "ray"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _console():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def _load(path: Path):
    from automc.config import load_config

    return load_config(path)


@app.command()
def search(
    experiment: Path = typer.Argument(..., help="experiment YAML file"),
    trials: Optional[int] = typer.Option(None, "--trials", "-n", help="finished trials wanted in the study (overrides search.n_trials)"),
    resume: bool = typer.Option(True, "--resume/--new", help="continue the study of the same name, or start it afresh"),
    dry_run: bool = typer.Option(False, "--dry-run", help="validate, build the layer table, print the search space and predicted costs; no training"),
) -> None:
    """Run (or resume) a compression search."""
    config = _load(experiment)
    console = _console()
    if dry_run:
        from automc.search.dryrun import dry_run as _dry

        console.print(_dry(config))
        return
    from automc.search.runner import run_search
    from automc.search.summary import summary_text

    result = run_search(config, n_trials=trials, resume=resume, log=console.print)
    console.print(summary_text(result))


@app.command()
def status(experiment: Path = typer.Argument(..., help="experiment YAML file")) -> None:
    """Progress of a search: trials by state, best so far, failures."""
    from automc.search.summary import status_text

    _console().print(status_text(_load(experiment)))


@app.command()
def devices() -> None:
    """List the known devices and their key figures."""
    from automc.search.summary import devices_text

    _console().print(devices_text())


@app.command()
def ui(
    experiment: Path = typer.Argument(..., help="experiment YAML file"),
    host: str = typer.Option("127.0.0.1", help="address to listen on (127.0.0.1 keeps it local)"),
    port: int = typer.Option(5000, help="port"),
) -> None:
    """Start the MLflow UI on the experiment's tracking store and print its URL."""
    import subprocess

    from automc.config import mask_secrets
    from automc.search.tracking import default_tracking_uri

    config = _load(experiment)
    uri = config.tracking.tracking_uri or default_tracking_uri(config.out_path)
    if uri.startswith("http"):
        _console().print(f"this experiment logs to an MLflow server: open {mask_secrets(uri)}")
        return
    _console().print(f"MLflow UI for {mask_secrets(uri)} at http://{host}:{port}  (Ctrl-C to stop)")
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)]
    raise typer.Exit(subprocess.call(cmd))


@app.command()
def init(path: Path = typer.Argument(Path("experiment.yaml"), help="where to write the starter YAML")) -> None:
    """Write a commented starter experiment YAML."""
    from importlib.resources import files

    if path.exists():
        raise AutomcError(f"{path} exists already; give another file name")
    path.write_text((files("automc") / "templates" / "experiment.yaml").read_text())
    _console().print(f"wrote {path}; edit it, then: automc search {path} --dry-run")


def main(argv: Optional[List[str]] = None) -> None:
    _quiet_libraries()
    try:
        app(args=argv, standalone_mode=False)
    except AutomcError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: completed trials are saved; run the same command again to resume", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # click's usage errors
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(1)
        raise


if __name__ == "__main__":
    main()
