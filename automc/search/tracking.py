"""MLflow tracking: one parent run per search, one child run per trial.

Uses ``MlflowClient`` with explicit run ids (no global "active run"), so trials finishing on Ray
workers in any order are logged to the right place. The default store is a SQLite file in the
experiment's output folder, with artifacts beside it, so no server is needed.

Trial runs are written by one background thread, in order, while the next trial trains (three
store calls per trial: create, one batch of params, metrics and per-epoch values, terminate);
``flush()`` waits for them, and every other call flushes first.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping

from automc._files import cache_root
from automc.errors import mask_secrets
from automc.search.sqlite import sqlite_path, use_wal

MAX_PARAM_LEN = 500


def metric_key(name: str) -> str:
    """MLflow metric names may not contain '@': ``latency@arm-a76`` is logged as ``latency_at_arm-a76``."""
    return name.replace("@", "_at_")


def default_tracking_uri(out_dir: Path) -> str:
    return f"sqlite:///{(out_dir / 'mlflow.db').resolve()}"


def is_server(tracking_uri: str) -> bool:
    """A tracking server (or Databricks) serves its own UI; other URIs are stores ``mlflow ui`` opens."""
    return tracking_uri.lower().startswith(("http://", "https://", "databricks"))


def ui_hint(tracking_uri: str) -> str:
    """How to open the MLflow UI on the runs logged to ``tracking_uri`` (secrets masked)."""
    uri = mask_secrets(tracking_uri)
    if tracking_uri.lower().startswith("databricks"):
        return "open the experiment in your Databricks workspace"
    if is_server(tracking_uri):
        return f"open {uri} (the tracking server serves the UI)"
    return f"automc ui <experiment.yaml>   (or: mlflow ui --backend-store-uri {uri})"


def find_trial_run(client, experiment_id: str, number: int) -> str | None:
    """The newest MLflow run of trial ``number`` in the experiment, or None."""
    runs = client.search_runs([experiment_id], f"tags.`automc.trial` = '{int(number)}'", max_results=1,
                              order_by=["attributes.start_time DESC"])
    return runs[0].info.run_id if runs else None


def seed_sqlite_store(tracking_uri: str) -> None:
    """Start a new SQLite MLflow store as a copy of an empty one this MLflow version already
    created: creating one runs each of MLflow's schema migrations, once per machine (kept in
    ``cache_root()/mlflow``) instead of once per experiment. Other stores are left alone."""
    import os
    import shutil

    import mlflow

    path = sqlite_path(tracking_uri)
    if path is None or path.exists():
        return
    template = cache_root() / "mlflow" / f"empty-{mlflow.__version__}.db"
    if not template.is_file():
        from mlflow.tracking import MlflowClient

        try:
            template.parent.mkdir(parents=True, exist_ok=True)
        except OSError:  # no writable cache here: MLflow creates the store itself
            return
        tmp = template.with_name(f".{template.name}.{os.getpid()}.tmp")
        MlflowClient(f"sqlite:///{tmp}").search_experiments()  # creates and migrates the store
        os.replace(tmp, template)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    shutil.copyfile(template, tmp)
    try:
        os.link(tmp, path)  # never over a store another process created meanwhile
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


class Tracker:
    def __init__(self, tracking_uri: str, experiment_name: str, artifact_dir: Path):
        import logging

        import mlflow
        from mlflow.tracking import MlflowClient

        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)

        seed_sqlite_store(tracking_uri)
        use_wal(tracking_uri)
        self.tracking_uri = tracking_uri
        mlflow.set_tracking_uri(tracking_uri)
        self.client = MlflowClient(tracking_uri)
        exp = self.client.get_experiment_by_name(experiment_name)
        if exp is None:
            artifact_dir.mkdir(parents=True, exist_ok=True)
            self.experiment_id = self.client.create_experiment(
                experiment_name, artifact_location=artifact_dir.resolve().as_uri(),
                # MLflow 3 opens GenAI pages for experiments of unknown kind; ours is model development
                tags={"mlflow.experimentKind": "custom_model_development"},
            )
        else:
            self.experiment_id = exp.experiment_id
        self.parent_id: str | None = None
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="automc-mlflow")
        self._pending: list[Future] = []

    # ------------------------------------------------------------------ runs
    def start_search(self, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str] | None = None) -> str:
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=dict(tags or {}))
        self.parent_id = run.info.run_id
        self.log_params(self.parent_id, params)
        return self.parent_id

    def log_trial(
        self,
        number: int,
        *,
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        state: str,
        reason: str = "",
        duration_s: float = 0.0,
        step_metrics: Mapping[str, list[float]] | None = None,
        node: str = "",
    ) -> None:
        """Queue one trial's child run (tag ``automc.node``: the Ray node id it ran on, or
        ``local``); an error of an earlier queued run is raised here."""
        for future in [f for f in self._pending if f.done()]:
            self._pending.remove(future)
            future.result()
        self._pending.append(self._writer.submit(
            self._log_trial, number, dict(params), dict(metrics), state, reason, duration_s, dict(step_metrics or {}),
            node))

    def _log_trial(self, number, params, metrics, state, reason, duration_s, step_metrics, node) -> None:
        tags = {"mlflow.parentRunId": self.parent_id or "", "automc.trial": str(number), "automc.state": state}
        if node:
            tags["automc.node"] = node
        if reason:
            tags["automc.fail_reason"] = reason[:5000]
        run_id = self.client.create_run(self.experiment_id, run_name=f"trial-{number:04d}", tags=tags).info.run_id
        clean = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}
        clean["duration_s"] = float(duration_s)
        self._log_batch(run_id, params, clean, step_metrics)
        self.client.set_terminated(run_id, status="FINISHED" if state in ("COMPLETE", "PRUNED") else "FAILED")

    def flush(self) -> None:
        """Wait until every queued trial run is written (raises the first error)."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def end_search(self, status: str = "FINISHED") -> None:
        self.flush()
        if self.parent_id is not None:
            self.client.set_terminated(self.parent_id, status=status)

    # ------------------------------------------------------------------ values
    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        self.flush()
        self._log_batch(run_id, params, {})

    def log_metrics(self, run_id: str, metrics: Mapping[str, float]) -> None:
        self.flush()
        self._log_batch(run_id, {}, metrics)

    def _log_batch(self, run_id: str, params: Mapping[str, Any], metrics: Mapping[str, float],
                   step_metrics: Mapping[str, list[float]] | None = None) -> None:
        """Params, metrics (at step 0) and per-step histories in as few ``log_batch`` calls as
        MLflow's limits allow (100 params and 1000 values per call)."""
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        ps = [Param(str(k)[:250], mask_secrets(str(v))[:MAX_PARAM_LEN]) for k, v in params.items()]
        ms = [Metric(metric_key(k), float(v), now, 0) for k, v in metrics.items()]
        ms += [Metric(metric_key(k), float(v), now, step) for k, values in (step_metrics or {}).items()
               for step, v in enumerate(values)]
        while ps or ms:
            batch_p, ps = ps[:100], ps[100:]
            batch_m, ms = ms[: 1000 - len(batch_p)], ms[1000 - len(batch_p):]
            self.client.log_batch(run_id, params=batch_p, metrics=batch_m)

    def log_artifact(self, path: Path, artifact_path: str | None = None, run_id: str | None = None) -> None:
        self.flush()
        self.client.log_artifact(run_id or self.parent_id, str(path), artifact_path)

    def log_json(self, obj: Any, name: str, run_id: str | None = None) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / name
            p.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
            self.log_artifact(p, run_id=run_id)
