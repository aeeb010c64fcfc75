"""What MindSpore Lite's ``benchmark`` tool prints, read back; and the command line that runs it.

Every runner (this machine, ssh, adb) runs a ``benchmark``-compatible binary and parses one format:
the summary line Lite's ``BenchmarkUnifiedApi::MarkPerformance`` prints after its timed loops,

    Model = lenet.ms, NumThreads = 1, MinRunTime = 0.104000 ms, MaxRuntime = 0.179000 ms, AvgRunTime = 0.116000 ms

and, with ``--timeProfiling=true``, the two tables before it (``BenchmarkBase::PrintResult``: one
row per operator, then one per operator type; columns separated by padding and tabs)::

    -------------------------------------------------------------------------
    opName                      avg(ms)     percent     calledTimes     opTotalTime
    conv1-Conv2d/Conv2D-op12    0.051200    0.440000    10              0.512000
    -------------------------------------------------------------------------
    opType                      avg(ms)     percent     calledTimes     opTotalTime
    Conv2DFusion                0.090100    0.770000    20              0.901000

``avg(ms)`` is the operator's time per inference (its total over the timed loops divided by the
loop count), ``calledTimes`` its calls over those loops. Older Lite releases and the docs spell a
few words differently (``numThreads``, ``MaxRunTime``, ``calledTimess``, ``Modle``); all are read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath

from automc.errors import DeployError

_NUMBER = r"([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)"
_SUMMARY = re.compile(
    r"Mod(?:el|le)\s*=\s*(?P<model>.*?),\s*NumThreads\s*=\s*(?P<threads>\d+),\s*"
    rf"MinRunTime\s*=\s*{_NUMBER}\s*ms,\s*MaxRunTime\s*=\s*{_NUMBER}\s*ms,\s*AvgRunTime\s*=\s*{_NUMBER}\s*ms",
    re.IGNORECASE,
)
_TABLE_HEAD = re.compile(r"^\s*(opName|opType)\s+avg\(ms\)\s+percent\s+calledTimes*\s+opTotalTime\s*$", re.IGNORECASE)
_TABLE_ROW = re.compile(rf"^(?P<key>.*?)\s+{_NUMBER}\s+{_NUMBER}\s+(?P<calls>\d+)\s+{_NUMBER}\s*$")


@dataclass(frozen=True)
class OpTime:
    """One row of ``--timeProfiling``'s tables: an operator (``name`` set, ``type`` empty: Lite's
    per-operator table does not say the type) or an operator type (``type`` set, ``name`` empty).
    ``avg_ms`` is its time per inference, ``calls`` its calls over all timed loops."""

    name: str
    type: str
    avg_ms: float
    calls: int


@dataclass(frozen=True)
class BenchmarkRun:
    """One run of ``benchmark`` on one model: its latency per inference over the timed loops, and
    with ``--timeProfiling`` the per-operator and per-type rows (see :class:`OpTime`)."""

    model: str
    threads: int
    min_ms: float
    max_ms: float
    avg_ms: float
    ops: tuple[OpTime, ...] = ()

    def by_name(self) -> dict[str, OpTime]:
        """Operator name -> its row (empty without ``--timeProfiling``)."""
        return {op.name: op for op in self.ops if op.name}

    def by_type(self) -> dict[str, OpTime]:
        """Operator type -> its row (empty without ``--timeProfiling``)."""
        return {op.type: op for op in self.ops if op.type and not op.name}


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:200] if lines else "(no output)"


def parse_benchmark_output(text: str) -> BenchmarkRun:
    """Read what ``benchmark`` printed (stdout, or stdout and stderr together) into a BenchmarkRun.

    Raises DeployError naming what is missing, with the output's last line: a run that failed
    prints Lite's error last, not the summary.
    """
    found = list(_SUMMARY.finditer(text))
    if not found:
        raise DeployError(
            "the benchmark output has no summary line 'Model = ..., NumThreads = ..., MinRunTime = ... ms, "
            f"MaxRuntime = ... ms, AvgRunTime = ... ms'; its last line: {_last_line(text)!r}"
        )
    m = found[-1]
    ops: list[OpTime] = []
    table = None
    for line in text.splitlines():
        head = _TABLE_HEAD.match(line)
        if head:
            table = head.group(1).lower()
            continue
        if table is None:
            continue
        row = _TABLE_ROW.match(line.rstrip())
        if row is None:
            table = None  # a separator, a blank line or the summary ends the table
            continue
        key = row.group("key").strip()
        if not key:
            raise DeployError(f"a --timeProfiling row of the benchmark output has no {table}: {line.strip()!r}")
        avg_ms = float(row.group(2))
        calls = int(row.group("calls"))
        ops.append(OpTime(key, "", avg_ms, calls) if table == "opname" else OpTime("", key, avg_ms, calls))
    min_ms, max_ms, avg_ms = (float(m.group(i)) for i in (3, 4, 5))
    return BenchmarkRun(model=m.group("model").strip(), threads=int(m.group("threads")), min_ms=min_ms,
                        max_ms=max_ms, avg_ms=avg_ms, ops=tuple(ops))


def benchmark_command(
    binary: str | PurePath,
    model: str | PurePath,
    *,
    threads: int,
    loops: int,
    warmup: int,
    time_profiling: bool = False,
) -> list[str]:
    """The ``benchmark`` command line (Lite's flags) that times ``model`` on the CPU: ``warmup``
    untimed inferences, then ``loops`` timed ones with ``threads`` threads."""
    if threads < 1 or loops < 1 or warmup < 0:
        raise DeployError(f"benchmark needs threads >= 1, loops >= 1 and warmup >= 0 (got {threads}, {loops}, {warmup})")
    return [
        str(binary), f"--modelFile={model}", f"--numThreads={threads}", f"--loopCount={loops}",
        f"--warmUpLoopCount={warmup}", f"--timeProfiling={'true' if time_profiling else 'false'}",
    ]
