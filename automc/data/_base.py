"""Records and pure-numpy helpers shared by every loader: split, subsample, resize, normalise.

Loaders only read files and return a ``RawDataset`` (images as ``(N, C, H, W)`` in their native
dtype); everything that depends on the experiment seed or preprocessing options happens here,
so each loader stays small and every data set gets the same deterministic treatment.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from automc.errors import ConfigError

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)  # ITU-R 601, as Pillow's "L" conversion


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class ArraySplit:
    """One split: ``x`` float32 ``(N, C, H, W)``, ``y`` int32 ``(N,)``; both read-only."""

    x: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        if self.x.ndim != 4 or self.y.ndim != 1 or len(self.x) != len(self.y):
            raise ValueError(f"ArraySplit needs x (N, C, H, W) and y (N,); got {self.x.shape} and {self.y.shape}")

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True, eq=False)
class DatasetSplits:
    """Train/val/test splits ready for training, plus what deployment needs to reproduce them."""

    name: str
    train: ArraySplit
    val: ArraySplit
    test: ArraySplit
    num_classes: int
    input_shape: tuple[int, int, int]  # (C, H, W)
    class_names: tuple[str, ...]
    mean: tuple[float, ...]  # per channel, computed on train before normalising
    std: tuple[float, ...]
    params: Mapping[str, Any] = field(default_factory=dict)  # seed, fractions, preprocessing, loader kwargs

    @cached_property
    def _fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(json.dumps({"name": self.name, "params": self.params}, sort_keys=True, default=str).encode())
        for split in (self.train, self.val, self.test):
            for a in (split.x, split.y):
                h.update(f"{a.dtype.str}{a.shape}".encode())
                h.update(np.ascontiguousarray(a).data)
        return h.hexdigest()[:16]

    def fingerprint(self) -> str:
        """Short stable hash of the name, the arguments and the resulting arrays (a cache key)."""
        return self._fingerprint


@dataclass(frozen=True, eq=False)
class RawDataset:
    """What a loader returns: all images ``(N, C, H, W)`` (or ``(N, H, W)``) and integer labels.

    ``x_test``/``y_test`` hold an official test set (CIFAR-10, MNIST); then the test split is that
    set and validation is carved from ``x``/``y``. ``class_names`` defaults to ``"0"``, ``"1"``, ...
    """

    x: np.ndarray
    y: np.ndarray
    class_names: tuple[str, ...] | None = None
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None


# ----------------------------------------------------------------------------- validation


def coerce_raw(obj: Any, *, source: str) -> RawDataset:
    """Turn a loader's or user factory's result into a checked ``RawDataset``.

    Accepted: a ``RawDataset``; ``(x, y)``; ``((x, y), (x_test, y_test))``; or a dict with keys
    ``x``, ``y`` and optionally ``x_test``, ``y_test``, ``class_names``.
    """
    if isinstance(obj, RawDataset):
        raw = obj
    elif isinstance(obj, Mapping):
        unknown = set(obj) - {"x", "y", "x_test", "y_test", "class_names"}
        if unknown or "x" not in obj or "y" not in obj:
            raise ConfigError(
                f"dataset {source!r} returned a dict with keys {sorted(obj)}; "
                "use keys x, y and optionally x_test, y_test, class_names"
            )
        raw = RawDataset(obj["x"], obj["y"], obj.get("class_names"), obj.get("x_test"), obj.get("y_test"))
    elif isinstance(obj, (tuple, list)) and len(obj) == 2 and all(
        isinstance(p, (tuple, list)) and len(p) == 2 for p in obj
    ):
        (x, y), (xt, yt) = obj
        raw = RawDataset(x, y, None, xt, yt)
    elif isinstance(obj, (tuple, list)) and len(obj) == 2:
        raw = RawDataset(obj[0], obj[1])
    else:
        raise ConfigError(
            f"dataset {source!r} returned {type(obj).__name__}; return (x, y), "
            "((x, y), (x_test, y_test)), a dict or automc.data.RawDataset"
        )

    x, y = _check_xy(raw.x, raw.y, source=source, what="x")
    xt = yt = None
    if (raw.x_test is None) != (raw.y_test is None):
        raise ConfigError(f"dataset {source!r}: give both x_test and y_test or neither")
    if raw.x_test is not None:
        xt, yt = _check_xy(raw.x_test, raw.y_test, source=source, what="x_test")
        if xt.shape[1:] != x.shape[1:]:
            raise ConfigError(
                f"dataset {source!r}: x_test images {xt.shape[1:]} differ from x images {x.shape[1:]}; "
                "give both sets the same (C, H, W)"
            )
    names = raw.class_names
    if names is not None:
        names = tuple(str(n) for n in names)
        top = max(int(y.max()), int(yt.max()) if yt is not None and len(yt) else -1)
        if top >= len(names):
            raise ConfigError(
                f"dataset {source!r}: label {top} but only {len(names)} class names; give one name per class"
            )
    return RawDataset(x, y, names, xt, yt)


def _check_xy(x: Any, y: Any, *, source: str, what: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise ConfigError(
            f"dataset {source!r}: {what} has shape {x.shape}; images must be (N, C, H, W) or (N, H, W)"
        )
    if x.shape[1] > 4 and x.shape[-1] in (1, 3, 4):
        raise ConfigError(
            f"dataset {source!r}: {what} has shape {x.shape}, which looks channels-last; "
            "transpose it to (N, C, H, W), e.g. x.transpose(0, 3, 1, 2)"
        )
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise ConfigError(f"dataset {source!r}: {what} has dtype {x.dtype}; images must be numeric")
    if y.ndim != 1 or len(y) != len(x):
        raise ConfigError(
            f"dataset {source!r}: labels have shape {y.shape} for {len(x)} images; give one integer label per image"
        )
    if len(x) == 0:
        raise ConfigError(f"dataset {source!r}: {what} is empty; the data set needs at least one image")
    if not np.issubdtype(y.dtype, np.integer):
        if not (np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y))):
            raise ConfigError(
                f"dataset {source!r}: labels have dtype {y.dtype}; use integer class ids 0..K-1"
            )
    if y.min() < 0:
        raise ConfigError(f"dataset {source!r}: negative label {int(y.min())}; use class ids 0..K-1")
    return x, y.astype(np.int64)


def check_options(
    *, val_fraction: float, test_fraction: float, resize: Any, channels: Any, max_samples: Any
) -> tuple[int, int] | None:
    """Validate the generic options; returns ``resize`` as ``(H, W)`` or None."""
    for key, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
            raise ConfigError(f"data.{key} = {value!r}; use a fraction in [0, 1), e.g. 0.15")
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError(
            f"data.val_fraction + data.test_fraction = {val_fraction + test_fraction:g}; "
            "keep their sum below 1 so something is left to train on"
        )
    if channels is not None and (isinstance(channels, bool) or channels not in (1, 3)):
        raise ConfigError(f"data.channels = {channels!r}; use 1 (grayscale), 3 (RGB) or null to keep them")
    bad_count = isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1
    if max_samples is not None and bad_count:
        raise ConfigError(f"data.max_samples = {max_samples!r}; use a positive integer or null for all samples")
    return parse_size(resize, key="data.resize")


def parse_size(value: Any, *, key: str) -> tuple[int, int] | None:
    """``None``, ``32`` or ``(32, 32)`` -> ``(H, W)``; anything else is a ConfigError."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        return int(value[0]), int(value[1])
    raise ConfigError(f"{key} = {value!r}; use a positive integer or [height, width], e.g. [32, 32]")


def existing_dir(path: Any, *, key: str = "data.path", hint: str) -> Path:
    """Resolve a user folder, or raise a ConfigError that names the field and ``hint``."""
    if path is None:
        raise ConfigError(f"{key} is required; {hint}")
    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigError(f"{key} {str(path)!r} does not exist; {hint}")
    if not p.is_dir():
        raise ConfigError(f"{key} {str(path)!r} is not a folder; {hint}")
    return p


# ----------------------------------------------------------------------------- splitting


def stratified_order(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A permutation of ``range(len(y))`` in which every prefix is (almost) class-balanced.

    Each sample gets the key ``(rank within its shuffled class + class offset) / class size``;
    sorting by it interleaves the classes in proportion, so taking the first ``k`` indices gives a
    stratified sample of exactly ``k`` items, even for tiny or unbalanced classes.
    """
    n = len(y)
    key = np.empty(n, dtype=np.float64)
    for cls in np.unique(y):
        idx = np.flatnonzero(y == cls)
        rank = rng.permutation(len(idx))
        key[idx] = (rank + rng.random()) / len(idx)
    tie = rng.random(n)
    return np.lexsort((tie, key))


def split_indices(
    y: np.ndarray, *, seed: int, val_fraction: float, test_fraction: float, max_samples: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deterministic stratified (train, val, test) indices into ``y`` (each sorted)."""
    rng = np.random.default_rng([seed, 0x5D17])
    order = stratified_order(y, rng)
    if max_samples is not None and max_samples < len(order):
        order = order[:max_samples]
        order = order[stratified_order(y[order], rng)]
    n = len(order)
    n_test = int(round(test_fraction * n))
    n_val = int(round(val_fraction * n))
    if n - n_test - n_val < 1:
        raise ConfigError(
            f"only {n} samples: nothing left to train on after val/test; "
            "lower data.val_fraction/data.test_fraction or raise data.max_samples"
        )
    test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    return np.sort(train), np.sort(val), np.sort(test)


def subsample(y: np.ndarray, k: int | None, *, seed: int) -> np.ndarray:
    """Sorted stratified subset of ``k`` indices (all when ``k`` is None or large enough)."""
    if k is None or k >= len(y):
        return np.arange(len(y))
    return np.sort(stratified_order(y, np.random.default_rng([seed, 0x7E57]))[:k])


# ----------------------------------------------------------------------------- preprocessing


def _bilinear_weights(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` matrix of Pillow-style bilinear weights (triangle filter, antialiased when shrinking)."""
    scale = n_in / n_out
    support = max(scale, 1.0)
    centers = (np.arange(n_out) + 0.5) * scale
    src = np.arange(n_in) + 0.5
    w = np.clip(1.0 - np.abs(src[None, :] - centers[:, None]) / support, 0.0, None)
    return w / w.sum(axis=1, keepdims=True)


def resize_bilinear(x: np.ndarray, size: tuple[int, int], *, chunk: int = 4096) -> np.ndarray:
    """Bilinear resize of ``(N, C, H, W)`` to ``(N, C, *size)`` as float32 (matches Pillow's BILINEAR)."""
    h, w = size
    if x.shape[2:] == (h, w):
        return x.astype(np.float32, copy=False)
    wh = _bilinear_weights(x.shape[2], h).astype(np.float32)
    ww = _bilinear_weights(x.shape[3], w).astype(np.float32)
    out = np.empty((x.shape[0], x.shape[1], h, w), dtype=np.float32)
    for start in range(0, len(x), chunk):
        part = x[start : start + chunk].astype(np.float32, copy=False)
        out[start : start + chunk] = np.einsum("oh,nchw,pw->ncop", wh, part, ww, optimize=True)
    return out


def convert_channels(x: np.ndarray, channels: int | None) -> np.ndarray:
    """Repeat grayscale to 3 channels, or reduce RGB to luminance; no-op when ``channels`` is None."""
    c = x.shape[1]
    if channels is None or channels == c:
        return x
    if c == 1 and channels == 3:
        return np.repeat(x, 3, axis=1)
    if c == 3 and channels == 1:
        return np.einsum("nchw,c->nhw", x, _LUMA.astype(x.dtype), optimize=True)[:, None]
    raise ConfigError(f"data.channels = {channels}: cannot convert images with {c} channels; use null to keep them")


def channel_stats(x: np.ndarray, *, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of ``(N, C, H, W)``, accumulated in float64 chunk by chunk
    (no full-size float64 temporary); a constant channel gets std 1."""
    n_per_channel = x.shape[0] * x.shape[2] * x.shape[3]
    mean = x.sum(axis=(0, 2, 3), dtype=np.float64) / max(n_per_channel, 1)
    sq = np.zeros(x.shape[1], dtype=np.float64)
    for start in range(0, len(x), chunk):
        d = x[start : start + chunk].astype(np.float64) - mean[None, :, None, None]
        sq += np.einsum("nchw,nchw->c", d, d)
    std = np.sqrt(sq / max(n_per_channel, 1))
    return mean, np.where(std < 1e-8, 1.0, std)


def preprocess(x: np.ndarray, *, resize: tuple[int, int] | None, channels: int | None) -> np.ndarray:
    """Resize, then convert channels; result is a new float32 ``(N, C, H, W)`` array (never a view of ``x``)."""
    out = resize_bilinear(x, resize) if resize is not None else x.astype(np.float32)
    out = np.ascontiguousarray(convert_channels(out, channels), dtype=np.float32)
    return out.copy() if np.shares_memory(out, x) else out


def normalise(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(x - mean) / std`` per channel, in place on ``x`` (from ``preprocess``); returned read-only."""
    x -= mean.astype(np.float32)[None, :, None, None]
    x /= std.astype(np.float32)[None, :, None, None]
    return _readonly(x)


def make_split(x: np.ndarray, y: np.ndarray) -> ArraySplit:
    return ArraySplit(x, _readonly(np.ascontiguousarray(y, dtype=np.int32)))


def default_class_names(num_classes: int) -> tuple[str, ...]:
    return tuple(str(i) for i in range(num_classes))
