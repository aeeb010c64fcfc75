"""Everything a user looks at after (or during) a search: plots, the report, trial export,
status, and the YAML/device reference generated for the README.

``write_report(result)`` draws the plots (``automc.report.plots``), writes
``<output_dir>/report/report.html`` and logs both to the search's MLflow parent run.
"""

from __future__ import annotations

from automc.report._writer import write_report

__all__ = ["write_report"]
