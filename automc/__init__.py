"""automc: AutoML model compression for MindSpore.

Point it at a network, a data set and a target device; it searches per-layer pruning,
mixed-precision and NAS policies with Optuna (in parallel on Ray), scores every candidate on
accuracy and on hardware cost models, logs everything to MLflow, and exports the winner.

>>> import automc
>>> result = automc.search("experiments/quickstart.yaml")  # doctest: +SKIP
>>> net = result.best_network()                            # a mindspore.nn.Cell  # doctest: +SKIP
"""

from __future__ import annotations

# Importing ``automc.search.pipeline`` here also binds the ``automc.search`` subpackage as an
# attribute of this package before the ``automc.search()`` function below replaces it (Python binds
# a subpackage to its parent when it is first imported, so a later first import would undo it).
from automc._version import __version__
from automc.config import ExperimentConfig, config_from_dict, load_config
from automc.errors import AutomcError, CompressionError, ConfigError, DeployError, TrialFailed
from automc.policy import Policy
from automc.report import report_search
from automc.search.pipeline import load_result as _load_result
from automc.search.pipeline import run_search

__all__ = [
    "AutomcError",
    "CompressionError",
    "ConfigError",
    "DeployError",
    "ExperimentConfig",
    "Policy",
    "TrialFailed",
    "__version__",
    "load_config",
    "load_result",
    "search",
]


def _as_config(config) -> "ExperimentConfig":
    if isinstance(config, ExperimentConfig):
        return config
    if isinstance(config, dict):
        return config_from_dict(config)
    return load_config(config)


def search(config, *, n_trials: int | None = None, resume: bool = True, log=print, progress=None):
    """Run (or resume) the search described by ``config`` (a YAML path, dict or ExperimentConfig).

    Returns a ``SearchResult``: ``.best_network()`` (a ``mindspore.nn.Cell``), ``.pareto_front``,
    ``.trials``, ``.baseline`` and ``.artifacts``. ``progress``: a callable told each change of
    state, e.g. ``automc.search.progress.LiveProgress()`` for a live bar in a terminal. The report
    (``<output_dir>/report/report.html``, also in the search's MLflow run) is written after it.
    """
    result = run_search(_as_config(config), n_trials=n_trials, resume=resume, log=log, progress=progress)
    report_search(result, log=log)
    return result


def load_result(config):
    """The result of an earlier search, read back from its study storage (no training)."""
    return _load_result(_as_config(config))
