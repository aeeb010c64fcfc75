"""Read a search back for the commands (status, report, export), with storage errors as one line."""

from __future__ import annotations

from automc.config import ExperimentConfig
from automc.errors import AutomcError, mask_secrets
from automc.search.pipeline import load_result
from automc.search.result import SearchResult
from automc.search.study import storage_url


def load(config: ExperimentConfig) -> SearchResult:
    """``automc.search.pipeline.load_result``, but an unreachable or driver-less study storage
    becomes an ``AutomcError`` naming the (masked) URL instead of a driver traceback."""
    try:
        return load_result(config)
    except AutomcError:
        raise
    except ImportError as exc:
        raise AutomcError(f"cannot open the study storage {mask_secrets(storage_url(config))}: {exc}; "
                          "for PostgreSQL: pip install 'automc[postgres]'") from None
    except Exception as exc:
        if type(exc).__module__.split(".")[0] not in ("sqlalchemy", "psycopg", "psycopg2", "pymysql"):
            raise
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise AutomcError(f"cannot open the study storage {mask_secrets(storage_url(config))}: "
                          f"{mask_secrets(first)}") from None
