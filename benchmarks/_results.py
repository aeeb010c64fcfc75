"""Where a benchmark run is kept: ``benchmarks/results/<script>-<YYYY-MM-DD>.txt`` (README quotes it)."""

from __future__ import annotations

import datetime
from pathlib import Path


def save(script: str, lines: list[str], note: str = "") -> Path:
    """Write a run's printed ``lines`` (and what else loaded the machine, ``note``) and say where."""
    path = Path(__file__).parent / "results" / f"{script}-{datetime.date.today().isoformat()}.txt"
    path.write_text("\n".join(lines + ([f"other load: {note}"] if note else [])) + "\n")
    print(f"saved {path}")
    return path
