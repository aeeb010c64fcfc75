"""A user's own device: latencies measured on it, fitted into a device YAML (``automc calibrate``).

The measurements are a CSV, one row per measured network::

    network,input,precision,latency_ms,threads,batch,profile
    mindcv:resnet18,3x224x224,fp32,61.3,1,1,
    mindcv:mobilenet_v2_100,3x224x224,fp32,19.8,1,1,profiles/mbv2.txt
    resnet20,3x32x32,int8,0.9,1,1,

``network`` is a zoo name (``lenet``, ``resnet20``, ...), ``mindcv:NAME`` (no weights) or
``pkg.module:function``; ``input`` is CxHxW; ``precision`` fp32, fp16 or int8 (int8: every layer at
8-bit weights and activations, as the published set's INT8 rows are costed); ``latency_ms`` one
inference of one batch. Optional: ``threads`` (one count per file: a device is one thread count),
``batch`` (the latency is divided by it: batch-1 rows predict batch-1 latency best), ``classes``
(the classifier's outputs; default 1000 for mindcv networks, 10 for the others) and ``profile``
(a saved ``benchmark --timeProfiling=true`` output, relative to the CSV's folder: its per-type
table informs each op class, see ``LITE_OP_CLASSES``).

``calibrate_device(base, rows)`` builds each network's layer table (mindcv networks at a size the
published tables hold are read from them: no trace), fits the base device to the rows
(``automc.hw_cost.scaling``) and returns a ``CalibratedDevice``; ``save`` writes a device YAML that
keeps the rows, the fitted factors and the in-sample (and leave-one-out) error.
"""

from __future__ import annotations

import csv
import datetime
import functools
import hashlib
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from automc import analysis, models
from automc._files import cache_root, write_text_atomic
from automc._version import __version__
from automc.analysis import LayerTable, build_layer_table
from automc.deploy import BenchmarkRun, parse_benchmark_output
from automc.errors import AutomcError, ConfigError, first_line
from automc.hw_cost.published import (MAX_EFFICIENCY, MAX_EFFICIENCY_NPU, MAX_MEMORY_EFFICIENCY, NETWORKS,
                                      conversion_floor_gelems, load_tables, precision_policy)
from automc.hw_cost.registry import BUILTIN, get_device
from automc.hw_cost.scaling import RIDGE, TERMS, ClassTime, Measured, ScaleFit, fit_scales, predict_ms
from automc.hw_cost.specs import DeviceSpec
from automc.models import MODELS, build_model
from automc.registry import import_object

REQUIRED = ("network", "input", "precision", "latency_ms")
OPTIONAL = ("threads", "batch", "classes", "profile")
PRECISIONS = ("fp32", "fp16", "int8")
_CONV = ("conv", "conv1x1", "dwconv")
_ELEMENTWISE = ("add",)
#: MindSpore Lite operator types (the per-type table of ``benchmark --timeProfiling``) -> the cost
#: classes whose rows they run. Lite names every convolution ``Conv2DFusion`` (3x3, 1x1 and depthwise
#: alike), so those inform the three convolution classes together; a global mean is ``ReduceFusion``;
#: adds, squeeze-excite gates and concats are the element-wise class. Types the tables have no rows
#: for (reshapes, softmax, layout transposes, stand-alone activations) inform nothing.
LITE_OP_CLASSES: Mapping[str, tuple[str, ...]] = {
    "Conv2DFusion": _CONV, "Conv2D": _CONV, "DepthwiseConv2D": ("dwconv",),
    "FullConnection": ("dense",), "MatMulFusion": ("dense",), "MatMul": ("dense",),
    "AvgPoolFusion": ("pool",), "MaxPoolFusion": ("pool",), "Pooling": ("pool",), "ReduceFusion": ("pool",),
    "AddFusion": _ELEMENTWISE, "Add": _ELEMENTWISE, "Eltwise": _ELEMENTWISE, "MulFusion": _ELEMENTWISE,
    "Mul": _ELEMENTWISE, "Concat": _ELEMENTWISE,
}
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
#: a prediction within this share of the measurement is "within 10 %" in the fit's summaries
CLOSE = 0.10


@dataclass(frozen=True)
class MeasuredRow:
    """One row of a measurements CSV (``where``: ``file.csv:LINE``, for messages)."""

    network: str
    input_shape: tuple[int, int, int]
    precision: str
    latency_ms: float
    threads: int | None = None
    batch: int = 1
    classes: int | None = None
    profile: BenchmarkRun | None = None
    profile_path: str = ""
    where: str = ""

    @property
    def per_inference_ms(self) -> float:
        """The latency of one input (the row's latency over its batch)."""
        return self.latency_ms / self.batch

    def to_dict(self) -> dict[str, Any]:
        out = {"network": self.network, "input": "x".join(map(str, self.input_shape)), "precision": self.precision,
               "latency_ms": float(self.latency_ms), "batch": self.batch}
        out.update({k: v for k, v in (("threads", self.threads), ("classes", self.classes),
                                      ("profile", self.profile_path)) if v})
        return out


# ------------------------------------------------------------------ reading the CSV
def read_measurements(path: str | Path) -> list[MeasuredRow]:
    """The rows of a measurements CSV, each checked: a bad row raises ``ConfigError`` naming the
    file, the line and the fix (unknown network, bad input or precision, a latency that is not a
    positive number, a profile that cannot be read, a missing column)."""
    path = Path(path).expanduser()
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"measurements file {path} cannot be read ({exc.strerror or first_line(exc)}); "
                          "give the path of a CSV with columns " + ",".join(REQUIRED)) from None
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise ConfigError(f"{path}:1: missing column {missing[0]!r}; the header must name "
                          f"{','.join(REQUIRED)} (optional: {','.join(OPTIONAL)})")
    unknown = [c for c in header if c and c not in REQUIRED + OPTIONAL]
    if unknown:
        raise ConfigError(f"{path}:1: unknown column {unknown[0]!r}; valid columns: {','.join(REQUIRED + OPTIONAL)}")
    rows = []
    for raw in reader:
        where = f"{path}:{reader.line_num}"
        if None in raw:  # more values than the header has columns
            raise ConfigError(f"{where}: {len(header) + len(raw[None])} values, the header names {len(header)} "
                              f"columns ({','.join(header)}); quote a value that holds a comma")
        values = {k.strip(): (v or "").strip() for k, v in raw.items() if k}
        if not any(values.values()):
            continue  # a row of empty values
        rows.append(_row(values, where, path.parent))
    if not rows:
        raise ConfigError(f"{path}: no measurements; add one row per measured network under the header "
                          f"{','.join(REQUIRED)}")
    threads = {r.threads for r in rows if r.threads is not None}
    if len(threads) > 1:
        raise ConfigError(f"{path}: rows at {' and '.join(map(str, sorted(threads)))} threads; a device is one "
                          "thread count: calibrate one CSV per thread count")
    return rows


def _row(values: Mapping[str, str], where: str, folder: Path) -> MeasuredRow:
    network = values["network"]
    check_network(network, where)
    shape = _input_shape(values["input"], where)
    precision = values["precision"].lower()
    if precision not in PRECISIONS:
        raise ConfigError(f"{where}: precision {values['precision']!r} is not one of {', '.join(PRECISIONS)}")
    try:
        latency = float(values["latency_ms"])
    except ValueError:
        latency = float("nan")
    if not np.isfinite(latency) or latency <= 0:
        raise ConfigError(f"{where}: latency_ms {values['latency_ms']!r} must be a positive number of milliseconds "
                          "(one inference of one batch)")
    threads, batch, classes = (_count(values, key, where) for key in ("threads", "batch", "classes"))
    profile, profile_path = None, values.get("profile", "")
    if profile_path:
        profile = _profile(folder / Path(profile_path).expanduser(), profile_path, where)
        if threads is not None and profile.threads != threads:
            raise ConfigError(f"{where}: profile {profile_path} ran {profile.threads} threads, the row says {threads}; "
                              "profile the same run you timed")
    return MeasuredRow(network=network, input_shape=shape, precision=precision, latency_ms=latency, threads=threads,
                       batch=batch or 1, classes=classes, profile=profile, profile_path=profile_path, where=where)


def check_network(network: str, where: str) -> None:
    """Refuse a network name automc cannot build: not a zoo name, ``mindcv:NAME`` or ``pkg.mod:fn``."""
    zoo = [n for n in MODELS.names() if n != "mindcv"]
    fix = f"use a zoo network ({', '.join(zoo)}), mindcv:NAME or pkg.module:function"
    kind, sep, rest = network.partition(":")
    if not sep:
        if network not in zoo:
            raise ConfigError(f"{where}: unknown network {network!r}; {fix}")
        return
    if kind == "mindcv":
        try:
            from mindcv.models import is_model
        except ImportError:
            raise ConfigError(f"{where}: network {network!r} needs the mindcv package: pip install mindcv==0.3.0") from None
        if not rest or not is_model(rest):
            raise ConfigError(f"{where}: unknown network {network!r}: mindcv has no model {rest!r} "
                              "(mindcv.models.list_models() lists them)")
        return
    try:
        fn = import_object(network, what="network")
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}; {fix}") from None
    if not callable(fn):
        raise ConfigError(f"{where}: network {network!r} is not callable; {fix}")


def _input_shape(text: str, where: str) -> tuple[int, int, int]:
    parts = text.lower().replace("*", "x").split("x")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"{where}: input {text!r} must be channels x height x width, e.g. 3x224x224")
    return shape  # type: ignore[return-value]


def _count(values: Mapping[str, str], key: str, where: str) -> int | None:
    text = values.get(key, "")
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{where}: {key} {text!r} must be a positive whole number (or empty)")
    return value


def _profile(path: Path, given: str, where: str) -> BenchmarkRun:
    fix = "give the path (relative to the CSV's folder) of a saved `benchmark --timeProfiling=true` output"
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise ConfigError(f"{where}: profile {given!r} cannot be read ({exc.strerror or first_line(exc)}); {fix}") from None
    try:
        run = parse_benchmark_output(text)
    except AutomcError as exc:
        raise ConfigError(f"{where}: profile {given!r}: {exc}; {fix}") from None
    if not run.by_type():
        raise ConfigError(f"{where}: profile {given!r} has no per-operator-type table; run benchmark with "
                          "--timeProfiling=true and save all it prints")
    return run


# ------------------------------------------------------------------ layer tables
@functools.lru_cache(maxsize=1)
def _published_tables() -> dict[tuple[str, int], LayerTable]:
    """The shipped tables of the published networks by (mindcv name, input size)."""
    tables = load_tables()
    return {NETWORKS[name]: table for name, table in tables.items() if name in NETWORKS}


@functools.lru_cache(maxsize=1)
def _tracer_version() -> str:
    """A hash of the code that makes a table (the analysis and the zoo): a cached table of older code is not used."""
    digest = hashlib.sha256()
    for package in (analysis, models):
        for path in sorted(Path(package.__file__).parent.glob("*.py")):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=64)
def network_table(network: str, input_shape: tuple[int, int, int], classes: int | None = None) -> LayerTable:
    """The layer table of a measured network. A mindcv network at a 3-channel square input the
    published tables hold (with 1000 classes) is read from them; zoo and mindcv networks traced
    once are kept in automc's cache (``tables/``, by name, input, classes and the tracer's code: a trace
    at 224x224 takes 8-48 s here); a ``pkg.mod:fn`` network is traced each time (its code may change)."""
    kind, sep, rest = network.partition(":")
    is_mindcv = bool(sep) and kind == "mindcv"
    n_classes = classes or (1000 if is_mindcv else 10)
    if is_mindcv and n_classes == 1000 and input_shape[0] == 3 and input_shape[1] == input_shape[2]:
        shipped = _published_tables().get((rest, input_shape[1]))
        if shipped is not None:
            return shipped
    if sep and not is_mindcv:
        return build_layer_table(build_model(factory=network, num_classes=n_classes, input_shape=input_shape), input_shape)
    key = json.dumps([network, list(input_shape), n_classes, __version__, _tracer_version()])
    path = cache_root() / "tables" / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
    try:
        return LayerTable.from_dict(json.loads(path.read_text())["table"])
    except (OSError, ValueError, KeyError, TypeError):  # not cached yet (or a broken file): trace it again
        pass
    net = (build_model("mindcv", num_classes=n_classes, input_shape=input_shape, arch=rest) if is_mindcv
           else build_model(network, num_classes=n_classes, input_shape=input_shape))
    table = build_layer_table(net, input_shape)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps({"key": json.loads(key), "table": table.to_dict()}))
    except OSError:  # a cache that cannot be written costs a trace next time, nothing else
        pass
    return table


def row_table(row: MeasuredRow) -> LayerTable:
    """``row``'s layer table; a network that fails to build or trace is a ``ConfigError`` naming the row."""
    try:
        return network_table(row.network, row.input_shape, row.classes)
    except AutomcError as exc:
        raise ConfigError(f"{row.where}: network {row.network!r} at {'x'.join(map(str, row.input_shape))}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a user's network that fails to trace: one line, the row named
        raise ConfigError(f"{row.where}: network {row.network!r} at {'x'.join(map(str, row.input_shape))} could not be "
                          f"built or traced ({type(exc).__name__}: {first_line(exc)}); check its input size") from None


def profile_class_times(run: BenchmarkRun) -> tuple[list[tuple[tuple[str, ...], float]], list[str]]:
    """The per-type table of a profile as ``(cost classes, ms per inference)`` targets (types of
    one class group summed), and the types that map to none (``LITE_OP_CLASSES``)."""
    groups: dict[tuple[str, ...], float] = {}
    unmapped = []
    for op_type, op in run.by_type().items():
        classes = LITE_OP_CLASSES.get(op_type)
        if classes is None:
            unmapped.append(op_type)
            continue
        groups[classes] = groups.get(classes, 0.0) + op.avg_ms
    return sorted(groups.items()), sorted(unmapped)


# ------------------------------------------------------------------ the fit
@dataclass(frozen=True)
class CalibratedDevice:
    """A base device fitted to a user's rows: the new ``spec``, the fitted factors, and each row's
    prediction by the base and by the fit (ms per inference)."""

    spec: DeviceSpec
    base: DeviceSpec
    rows: tuple[MeasuredRow, ...]
    fit: ScaleFit
    base_ms: tuple[float, ...]
    fitted_ms: tuple[float, ...]
    source: str = ""
    #: per profiled row: the Lite operator types that informed no cost class
    unmapped_ops: tuple[str, ...] = ()

    @property
    def errors(self) -> np.ndarray:
        """Fitted over measured, minus 1, per row."""
        return np.array(self.fitted_ms) / np.array([r.per_inference_ms for r in self.rows]) - 1

    def leave_one_out(self) -> tuple[float, ...] | None:
        """Each row predicted (ms) by a fit to the other rows (3 or more rows; else None)."""
        if len(self.rows) < 3:
            return None
        out = []
        for i, row in enumerate(self.rows):
            others = self.rows[:i] + self.rows[i + 1:]
            spec, _ = fit_device(self.base, others)
            out.append(predict_row(spec, row))
        return tuple(out)

    def to_dict(self, leave_one_out: Sequence[float] | None = None) -> dict[str, Any]:
        """The device YAML: the spec's fields, and ``calibration:`` (base, rows, factors, errors)."""
        measured = np.array([r.per_inference_ms for r in self.rows])
        rows = []
        for i, r in enumerate(self.rows):
            entry = {**r.to_dict(), "base_ms": round(self.base_ms[i], 4), "fitted_ms": round(self.fitted_ms[i], 4)}
            if leave_one_out is not None:
                entry["leave_one_out_ms"] = round(float(leave_one_out[i]), 4)
            rows.append(entry)
        calibration = {"base": self.base.name, "measurements": self.source, "automc": __version__,
                       "created": datetime.datetime.now().isoformat(timespec="seconds"),
                       "threads": next((r.threads for r in self.rows if r.threads), None),
                       "fit": self.fit.to_dict(), "rows": rows, "in_sample": _summary(np.array(self.fitted_ms), measured)}
        if leave_one_out is not None:
            calibration["leave_one_out"] = _summary(np.array(leave_one_out), measured)
        data = self.spec.to_dict()
        data["calibration"] = calibration
        return data

    def save(self, path: str | Path, leave_one_out: Sequence[float] | None = None) -> Path:
        """Write the device YAML atomically (``load_device(path)`` reads it back)."""
        import yaml

        return write_text_atomic(Path(path).expanduser(), yaml.safe_dump(self.to_dict(leave_one_out), sort_keys=False))

    def to_text(self, leave_one_out: Sequence[float] | None = None) -> str:
        """The rows (measured, base, fitted, left out), the factors and the errors, for people."""
        head = ("network", "input", "precision", "measured ms", f"{self.base.name} ms", "fitted ms", "error")
        table = [head + (("left out ms", "error") if leave_one_out is not None else ())]
        for i, r in enumerate(self.rows):
            m = r.per_inference_ms
            cells = (r.network, "x".join(map(str, r.input_shape)), r.precision, f"{m:.4g}", f"{self.base_ms[i]:.4g}",
                     f"{self.fitted_ms[i]:.4g}", f"{self.fitted_ms[i] / m - 1:+.1%}")
            if leave_one_out is not None:
                cells += (f"{leave_one_out[i]:.4g}", f"{leave_one_out[i] / m - 1:+.1%}")
            table.append(cells)
        width = [max(len(row[j]) for row in table) for j in range(len(table[0]))]
        lines = ["  ".join(c.rjust(w) if j >= 3 else c.ljust(w) for j, (c, w) in enumerate(zip(row, width))).rstrip()
                 for row in table]
        measured = np.array([r.per_inference_ms for r in self.rows])
        lines.append(f"fitted: {self.fit.describe()}")
        lines.append("in-sample: " + _summary_text(_summary(np.array(self.fitted_ms), measured)))
        if leave_one_out is not None:
            lines.append("leave-one-out (each row predicted by a fit to the others): "
                         + _summary_text(_summary(np.array(leave_one_out), measured)))
        if self.unmapped_ops:
            lines.append(f"profile operator types with no cost class (not used): {', '.join(self.unmapped_ops)}")
        return "\n".join(lines)


def _summary(pred: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    rel = np.abs(pred / measured - 1)
    return {"rows": int(len(rel)), "within_10pct": float(np.mean(rel <= CLOSE)), "within_25pct": float(np.mean(rel <= 0.25)),
            "max_abs_error": float(rel.max())}


def _summary_text(s: Mapping[str, float]) -> str:
    return (f"{s['within_10pct'] * s['rows']:.0f} of {s['rows']} rows within 10 %, {s['within_25pct'] * s['rows']:.0f} "
            f"within 25 %, largest error {s['max_abs_error']:.1%}")


def predict_row(spec: DeviceSpec, row: MeasuredRow) -> float:
    """What ``spec`` predicts for ``row``'s network at its precision, in ms per inference."""
    table = row_table(row)
    return predict_ms(spec, table, precision_policy(table, row.precision))


def fit_device(base: DeviceSpec, rows: Sequence[MeasuredRow], *, name: str | None = None, ridge: float = RIDGE,
               free: Sequence[str] = TERMS) -> tuple[DeviceSpec, ScaleFit]:
    """``base`` fitted to ``rows`` (profiles included), bounded as the shipped fits are: the new
    spec (named ``name``) and the factors (``ridge`` and ``free`` as ``fit_scales`` takes them).
    ``calibrate_device`` with less to say."""
    samples, targets = [], []
    for i, r in enumerate(rows):
        table = row_table(r)
        samples.append(Measured(table, r.per_inference_ms, precision_policy(table, r.precision)))
        if r.profile is not None:
            groups, _ = profile_class_times(r.profile)
            targets += [ClassTime(i, classes, ms / r.batch) for classes, ms in groups]
    fit = fit_scales(base, samples, targets, ridge=ridge, free=free,
                     max_efficiency=MAX_EFFICIENCY_NPU if base.kind == "npu" else MAX_EFFICIENCY,
                     max_memory_efficiency=MAX_MEMORY_EFFICIENCY, min_quantize_gelems=conversion_floor_gelems(base))
    return fit.apply(base, name=name), fit


def calibrate_device(base: str | Path | DeviceSpec, rows: Sequence[MeasuredRow], *, name: str | None = None,
                     source: str = "") -> CalibratedDevice:
    """Fit ``base`` (a device name, YAML path or spec) to measured ``rows`` (``read_measurements``):
    one row scales every time term so it is reproduced exactly; more rows also move the terms they
    tell apart (``automc.hw_cost.scaling``). ``name`` (default ``<base>-calibrated``) is what
    ``latency@<name>`` calls the result; ``source`` says where the rows came from."""
    spec = get_device(base)
    name = name or f"{spec.name}-calibrated"
    if not _NAME.match(name):
        raise ConfigError(f"device name {name!r} may hold only letters, digits, '.', '_' and '-' (it goes in latency@<name>)")
    if name in BUILTIN:
        raise ConfigError(f"device name {name!r} is a built-in device's; give your device another name (--name)")
    if not rows:
        raise ConfigError(f"calibrating {spec.name}: no measured rows")
    new, fit = fit_device(spec, rows, name=name)
    base_ms = tuple(predict_row(spec, r) for r in rows)
    fitted_ms = tuple(predict_row(new, r) for r in rows)
    what = f"{len(rows)} measurement{'s' * (len(rows) != 1)}" + (f" in {source}" if source else "")
    new = replace(new, description=f"{spec.name} calibrated to {what}: {spec.description}".strip().rstrip(":"),
                  calibrated_from=f"{what}, base {spec.name}", path="",
                  sources={**spec.sources, "calibration": [{"title": f"measured by the user: {what}"}]})
    unmapped = sorted({t for r in rows if r.profile is not None for t in profile_class_times(r.profile)[1]})
    return CalibratedDevice(spec=new, base=spec, rows=tuple(rows), fit=fit, base_ms=base_ms, fitted_ms=fitted_ms,
                            source=source, unmapped_ops=tuple(unmapped))
