"""Find a search's MLflow runs again after the search process ended, and log files to them.

A search makes one parent run per ``automc search`` invocation (tag ``automc.version``) and
one child run per trial (tags ``mlflow.parentRunId``, ``automc.trial``), in the experiment named
by ``tracking.experiment_name`` (default: the experiment name).
"""

from __future__ import annotations

from pathlib import Path

from automc.config import ExperimentConfig
from automc.errors import AutomcError, mask_secrets
from automc.search.tracking import default_tracking_uri


def tracking_uri(config: ExperimentConfig) -> str:
    return config.tracking.tracking_uri or default_tracking_uri(config.out_path)


def experiment_name(config: ExperimentConfig) -> str:
    return config.tracking.experiment_name or config.name


#: the experiment page as a person wants it first: the trials (not folded under their search's
#: parent run: a sort or a filter turns MLflow's nesting off), best accuracy first, as charts of
#: every metric they logged (accuracy, macs, latency_at_<device>, ...)
TRIALS_VIEW = {"searchFilter": "attributes.run_name LIKE 'trial-%'", "orderByKey": "metrics.`accuracy`",
               "orderByAsc": "false", "compareRunsMode": "CHART"}


def trials_page(base_url: str, experiment_id: str) -> str:
    """The MLflow UI link that opens on the experiment's trials (its runs page, not MLflow 3's
    GenAI overview), as :data:`TRIALS_VIEW`."""
    from urllib.parse import quote, urlencode

    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs?{urlencode(TRIALS_VIEW, quote_via=quote)}"


def find_experiment_id(config: ExperimentConfig) -> str | None:
    """The id of the experiment's MLflow experiment in a local store, or None when no search has
    logged to it yet or the store is a tracking server (its own front page lists the experiments)."""
    from mlflow.tracking import MlflowClient

    uri = tracking_uri(config)
    if uri.startswith(("http://", "https://", "databricks")):
        return None  # not asked of a remote server: an unreachable one retries for minutes
    try:
        exp = MlflowClient(uri).get_experiment_by_name(experiment_name(config))
    except Exception:  # noqa: BLE001 - a remote server down or needing credentials
        return None
    return exp.experiment_id if exp is not None else None


def serve(cmd: list[str], *, env: dict[str, str] | None = None, grace_s: float = 10.0) -> int:
    """Run a server command (``mlflow ui``) in its own process group until it exits or this
    process gets SIGINT, SIGTERM or SIGHUP; then stop the whole group (the server and its
    workers), SIGKILL after ``grace_s``. ``env``: variables set for the server unless this
    process has them already. Returns the exit code to use."""
    import os
    import signal
    import subprocess

    proc = subprocess.Popen(cmd, start_new_session=True, env={**(env or {}), **os.environ})
    stopping: list[int] = []

    def stop(signum, frame):
        stopping.append(signum)
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        code = proc.wait()
    except BaseException:
        stop(signal.SIGTERM, None)
        raise
    finally:
        if stopping or proc.poll() is None:
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # workers that outlived the server
            except ProcessLookupError:
                pass
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if stopping else code


class SearchRuns:
    """The MLflow experiment of one automc search, read with an explicit client."""

    def __init__(self, config: ExperimentConfig):
        import logging

        from mlflow.tracking import MlflowClient

        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self.uri = tracking_uri(config)
        self.client = MlflowClient(self.uri)
        exp = self.client.get_experiment_by_name(experiment_name(config))
        if exp is None:
            raise AutomcError(f"no MLflow experiment {experiment_name(config)!r} in {mask_secrets(self.uri)}; "
                              "run `automc search` first")
        self.experiment_id = exp.experiment_id

    def parent_runs(self) -> list:
        """The search's parent runs, newest first."""
        runs = self.client.search_runs([self.experiment_id], max_results=1000, order_by=["attributes.start_time DESC"])
        return [r for r in runs if "mlflow.parentRunId" not in r.data.tags and "automc.trial" not in r.data.tags]

    def trial_runs(self) -> list:
        runs = self.client.search_runs([self.experiment_id], "tags.`automc.trial` != ''", max_results=5000,
                                       order_by=["attributes.start_time DESC"])
        return [r for r in runs if "automc.trial" in r.data.tags]

    def parent_for_trial(self, number: int) -> str:
        """The parent run of the search invocation that ran trial ``number`` (else the newest parent)."""
        for run in self.trial_runs():
            if run.data.tags.get("automc.trial") == str(number) and run.data.tags.get("mlflow.parentRunId"):
                return run.data.tags["mlflow.parentRunId"]
        return self.latest_parent()

    def latest_parent(self) -> str:
        parents = self.parent_runs()
        if not parents:
            raise AutomcError(f"no search run in MLflow experiment {self.experiment_id} at {mask_secrets(self.uri)}; "
                              "run `automc search` first")
        return parents[0].info.run_id

    def log_files(self, run_id: str, paths: list[Path], artifact_path: str) -> None:
        for p in paths:
            self.client.log_artifact(run_id, str(p), artifact_path)
