"""Published real-device latencies of standard networks: the data the device cost models are checked
(and fitted) against.

``automc/hw_cost/data/published_latency.csv`` holds one row per published figure: the network,
input size, batch, precision, runtime and version, threads, host, the latency, and where it was
read (``source_url``) with the sentence or table cell that holds the number (``quote``). Figures
published as throughput are stored as milliseconds per batch (``1000 * batch / throughput``);
``notes`` says so. :func:`profile_for` names the shipped device profile a row measures.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, fields
from pathlib import Path

from automc.errors import ConfigError

DATA = Path(__file__).parent / "data" / "published_latency.csv"

#: the device families of the mission; every row belongs to one
FAMILIES = ("ascend", "kirin-npu", "gpu", "arm-cpu", "android-nnapi")
PRECISIONS = ("fp32", "fp16", "int8", "mixed")

#: published hardware key -> shipped profile, for accelerators (thread count does not apply)
_ACCELERATORS = {"ascend310": "ascend310", "ascend910": "ascend910", "kirin990-npu": "kirin990-npu",
                 "t4": "t4", "a100": "a100", "jetson-orin-nano": "jetson-orin-nano"}
#: (published key, threads) -> shipped profile, for CPU cores
_CPUS = {("arm-a76", "1"): "arm-a76", ("arm-a76", "4"): "arm-a76-4t", ("arm-a72", "1"): "arm-a72"}


@dataclass(frozen=True)
class Measurement:
    """One published latency (milliseconds for one batch of ``batch`` inputs)."""

    family: str
    device: str
    network: str
    input_size: int
    batch: int
    precision: str
    runtime: str
    runtime_version: str
    threads: str  # as published: "1", "4", "multi", or empty for accelerators
    host: str
    latency_ms: float
    source_url: str
    quote: str
    notes: str

    @property
    def per_image_ms(self) -> float:
        return self.latency_ms / self.batch


def _parse(row: dict[str, str], where: str) -> Measurement:
    names = [f.name for f in fields(Measurement)]
    missing = [n for n in names if n not in row]
    if missing:
        raise ConfigError(f"{where}: missing column(s) {missing}; the header must be {','.join(names)}")
    values = {n: (row[n] or "").strip() for n in names}
    for required in ("family", "device", "network", "precision", "runtime", "latency_ms", "source_url", "quote"):
        if not values[required]:
            raise ConfigError(f"{where}: column {required!r} is empty; every figure needs it (and its source)")
    if values["family"] not in FAMILIES:
        raise ConfigError(f"{where}: family {values['family']!r} is not one of {', '.join(FAMILIES)}")
    if values["precision"] not in PRECISIONS:
        raise ConfigError(f"{where}: precision {values['precision']!r} is not one of {', '.join(PRECISIONS)}")
    if not values["source_url"].startswith(("http://", "https://")):
        raise ConfigError(f"{where}: source_url {values['source_url']!r} is not a web address")
    try:
        latency, size, batch = float(values["latency_ms"]), int(values["input_size"] or 224), int(values["batch"] or 1)
    except ValueError as exc:
        raise ConfigError(f"{where}: latency_ms, input_size and batch must be numbers ({exc})") from None
    if not latency > 0 or batch < 1:
        raise ConfigError(f"{where}: latency_ms must be > 0 and batch >= 1")
    return Measurement(**{**values, "latency_ms": latency, "input_size": size, "batch": batch})


def read_published(path: str | Path | None = None) -> list[Measurement]:
    """Every row of the published-latency CSV (the shipped one by default), validated: a row with
    an empty source, an unknown precision or a non-positive latency is refused with its line."""
    path = Path(path) if path is not None else DATA
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    with path.open(newline="") as fh:
        return [_parse(row, f"{path}:{line}") for line, row in enumerate(csv.DictReader(fh), start=2)]


def profile_for(m: Measurement) -> str | None:
    """The shipped device profile ``m`` measures, or None (a device automc ships no profile for,
    or a thread count no profile models)."""
    if m.device in _ACCELERATORS:
        return _ACCELERATORS[m.device]
    return _CPUS.get((m.device, m.threads))
