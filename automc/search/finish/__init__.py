"""The finish stage of a search: the Pareto front, the winner's export (``export``), the uniform
reference at the same budget (``reference``), the measurements on a device (``measure``) and the
text summary (``summary``)."""

from __future__ import annotations

from typing import Callable

from automc._files import folder_lock
from automc.search.finish.export import export_best, log_pareto_front
from automc.search.finish.measure import measure_exports
from automc.search.finish.reference import FILE, uniform_reference
from automc.search.result import SearchResult

__all__ = ["finish_study"]


def finish_study(result: SearchResult, prepared, tracker, *, log: Callable[[str], None] = print) -> dict[str, str]:
    """After the search loop: the Pareto front, the winner's export, the uniform reference and
    (``export.measure``) their latency measured on a device, holding the export folder's lock
    (processes sharing the study take turns; each is done once per finished study)."""
    config = result.config
    out = config.out_path / "export"
    artifacts: dict[str, str] = {}
    with folder_lock(out):
        artifacts["pareto_front"] = str(log_pareto_front(result, tracker))
        if result.best is not None:
            artifacts.update(export_best(result, prepared, tracker, log=log))
            if config.export.compare_uniform:
                reference = uniform_reference(result, prepared, log=log)
                if reference is not None:
                    artifacts["uniform_reference"] = str(out / FILE)
                    tracker.log_artifact(out / FILE, "best")
                    tracker.log_metrics(tracker.parent_id, {f"uniform_{k}": v for k, v in reference.items()
                                                            if k.endswith("accuracy")})
            if config.export.measure is not None:
                artifacts.update(measure_exports(result, prepared, tracker, log=log))
    return artifacts
