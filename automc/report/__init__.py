"""Everything a user looks at after (or during) a search: the report and its plots, the status,
the end-of-search summary, the device list, trial export, measurements on a device (``automc
measure``), and the YAML/device reference generated for the README. It reads what
``automc.search`` left (the study, ``output_dir``, MLflow runs); the search never imports it.

``write_report(result)`` draws the plots (``automc.report.plots``), writes
``<output_dir>/report/report.html`` and logs both to the search's MLflow parent run.
"""

from __future__ import annotations

from automc.report._mlflow import experiment_name, find_experiment_id, serve, tracking_uri, trials_page
from automc.report._store import load
from automc.report._writer import build, report_search, to_text, write_report
from automc.report.measure import MeasureOutcome, Timing, measure_latency
from automc.report.status import status_text
from automc.report.summary import devices_text, summary_text
from automc.report.trial_export import export_trial, parse_formats

__all__ = ["MeasureOutcome", "Timing", "build", "devices_text", "experiment_name", "export_trial", "find_experiment_id", "load",
           "measure_latency", "parse_formats", "report_search", "serve", "status_text", "summary_text", "to_text",
           "tracking_uri", "trials_page", "write_report"]
