"""Measured per-op latency look-up tables.

CSV with header ``kind,cin,cout,k,stride,groups,h,w,bits,latency_ms`` (one measured op per
line; ``h, w`` are the op's input size, ``k`` the kernel height, ``bits`` the requested
precision ``max(w_bits, a_bits)``, 32 for float). ``estimate`` uses an entry instead of the
analytical figure wherever a layer's signature matches exactly (lookup is vectorised: a hash
per signature, then an exact check of every matched field).
"""

from __future__ import annotations

import csv
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from automc.analysis.layer_table import KINDS, LayerShapes
from automc.errors import ConfigError

LUT_FIELDS = ("kind", "cin", "cout", "k", "stride", "groups", "h", "w", "bits")
_KIND_ID = {k: i for i, k in enumerate(KINDS)}
_MULT = np.uint64(0x9E3779B97F4A7C15)


def _hash(cols: np.ndarray) -> np.ndarray:
    """Hash rows of an integer array ``(..., 9)`` into uint64 (wrapping arithmetic)."""
    h = np.zeros(cols.shape[:-1], dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(cols.shape[-1]):
            h = (h ^ cols[..., j].astype(np.uint64)) * _MULT + np.uint64(j + 1)
    return h


@dataclass(frozen=True)
class LatencyLUT:
    """Measured op latencies keyed by op signature (see module docstring)."""

    keys: np.ndarray  # (N, 9) int64, kind as an index into KINDS
    latency_ms: np.ndarray  # (N,)
    device: str = ""

    def __post_init__(self) -> None:
        hashes = _hash(self.keys) if len(self.keys) else np.zeros(0, np.uint64)
        order = np.argsort(hashes, kind="stable")
        object.__setattr__(self, "_hashes", hashes[order])
        object.__setattr__(self, "_order", order)

    def __len__(self) -> int:
        return int(self.latency_ms.shape[0])

    @classmethod
    def from_entries(cls, entries: Iterable[Mapping[str, object]], device: str = "") -> "LatencyLUT":
        """Build from dicts with the ``LUT_FIELDS`` keys and ``latency_ms``."""
        keys, lat = [], []
        for n, e in enumerate(entries):
            missing = [f for f in (*LUT_FIELDS, "latency_ms") if f not in e]
            if missing:
                raise ConfigError(f"LUT entry {n}: missing field {missing[0]!r}; fields: {', '.join(LUT_FIELDS)}, latency_ms")
            kind = str(e["kind"])
            if kind not in _KIND_ID:
                raise ConfigError(f"LUT entry {n}: unknown kind {kind!r}; valid kinds: {', '.join(KINDS)}")
            keys.append([_KIND_ID[kind]] + [int(e[f]) for f in LUT_FIELDS[1:]])
            lat.append(float(e["latency_ms"]))
        return cls(np.array(keys, dtype=np.int64).reshape(-1, len(LUT_FIELDS)), np.array(lat, dtype=np.float64), device)

    def entries(self) -> list[dict[str, object]]:
        out = []
        for key, ms in zip(self.keys, self.latency_ms):
            row: dict[str, object] = {"kind": KINDS[int(key[0])]}
            row.update({f: int(v) for f, v in zip(LUT_FIELDS[1:], key[1:])})
            row["latency_ms"] = float(ms)
            out.append(row)
        return out

    def merged(self, other: "LatencyLUT") -> "LatencyLUT":
        """Entries of both tables; ``other`` wins on equal signatures."""
        d = {tuple(r[f] for f in LUT_FIELDS): r for r in self.entries()}
        d.update({tuple(r[f] for f in LUT_FIELDS): r for r in other.entries()})
        return LatencyLUT.from_entries(d.values(), self.device or other.device)

    def signatures(self, shapes: LayerShapes, req_bits: np.ndarray) -> np.ndarray:
        """Signature array ``(P, L, 9)`` of resolved layers."""
        kind_id = np.array([_KIND_ID[str(k)] for k in shapes.kind], dtype=np.int64)
        p = shapes.cin.shape[0]
        return np.stack(
            [
                np.broadcast_to(kind_id, (p, kind_id.shape[0])),
                shapes.cin,
                shapes.cout,
                shapes.kh,
                np.broadcast_to(shapes.stride, shapes.cin.shape),
                shapes.groups,
                np.broadcast_to(shapes.h_in, shapes.cin.shape),
                np.broadcast_to(shapes.w_in, shapes.cin.shape),
                req_bits,
            ],
            axis=-1,
        ).astype(np.int64)

    def lookup(self, shapes: LayerShapes, req_bits: np.ndarray) -> np.ndarray:
        """Measured latency ``(P, L)`` in ms, NaN where the table has no entry."""
        sig = self.signatures(shapes, req_bits)
        out = np.full(sig.shape[:-1], np.nan)
        if not len(self):
            return out
        h = _hash(sig)
        pos = np.searchsorted(self._hashes, h)
        pos_c = np.minimum(pos, len(self._hashes) - 1)
        hit = self._hashes[pos_c] == h
        if hit.any():
            idx = self._order[pos_c[hit]]
            exact = (self.keys[idx] == sig[hit]).all(axis=-1)
            vals = np.where(exact, self.latency_ms[idx], np.nan)
            out[hit] = vals
        return out


def load_lut(path: str | Path) -> LatencyLUT:
    """Read a LUT CSV (see module docstring); errors name the file and line."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"LUT file {path} does not exist")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [f for f in (*LUT_FIELDS, "latency_ms") if f not in (reader.fieldnames or [])]
        if missing:
            raise ConfigError(f"{path}: missing column {missing[0]!r}; header must be {','.join(LUT_FIELDS)},latency_ms")
        rows = list(reader)
    try:
        return LatencyLUT.from_entries(rows, device=path.stem)
    except (ValueError, ConfigError) as exc:
        raise ConfigError(f"{path}: {exc}") from None


def save_lut(lut: LatencyLUT, path: str | Path) -> Path:
    """Write a LUT CSV atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*LUT_FIELDS, "latency_ms"])
        writer.writeheader()
        writer.writerows(lut.entries())
    os.replace(tmp, path)
    return path
