"""Data sets: load by YAML name, split deterministically, preprocess, normalise on train only.

``load_dataset("digits", seed=0)`` returns ``DatasetSplits`` with float32 NCHW ``train``/``val``/
``test`` arrays. Loaders live in ``DATASETS`` (lazy ``"module:attr"`` entries, so importing this
package loads neither MindSpore nor Pillow nor scikit-learn); a name like ``"my_pkg.data:load"``
calls a user factory instead.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import numpy as np

from automc.data._base import (
    ArraySplit,
    DatasetSplits,
    RawDataset,
    channel_stats,
    check_options,
    coerce_raw,
    default_class_names,
    make_split,
    normalise,
    preprocess,
    split_indices,
    subsample,
)
from automc.errors import ConfigError
from automc.registry import Registry, import_object

__all__ = ["DATASETS", "ArraySplit", "DatasetSplits", "RawDataset", "load_dataset"]

DATASETS: Registry[Callable[..., Any]] = Registry("dataset")
DATASETS.register("digits", "automc.data.digits:load_digits")
DATASETS.register("cifar10", "automc.data.cifar10:load_cifar10")
DATASETS.register("mnist", "automc.data.mnist:load_mnist")
DATASETS.register("fashion_mnist", "automc.data.mnist:load_fashion_mnist")
DATASETS.register("image_folder", "automc.data.image_folder:load_image_folder")
DATASETS.register("mindrecord", "automc.data.mindrecord:load_mindrecord")
DATASETS.register("synthetic", "automc.data.synthetic:load_synthetic")

_GENERIC = ("seed", "val_fraction", "test_fraction", "resize", "channels", "max_samples")


def load_dataset(
    name: str,
    *,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    resize: int | tuple[int, int] | None = None,
    channels: int | None = None,
    max_samples: int | None = None,
    **loader_kwargs: Any,
) -> DatasetSplits:
    """Load ``name`` (a ``DATASETS`` key or ``"module:function"``) and return ready-to-train splits.

    Splits are stratified and depend only on ``seed``. When the loader provides an official test
    set (cifar10, mnist, fashion_mnist, mindrecord with ``test_path``) that set is the test split, ``val_fraction``
    of the training pool becomes val and ``test_fraction`` is not used. ``max_samples`` caps the
    total over all splits (shared in proportion between the training pool and an official test
    set). Images are resized (bilinear) to ``resize``, converted to ``channels`` (1 or 3), then
    normalised per channel with the train split's mean/std. Loader arguments come in
    ``loader_kwargs`` (e.g. ``path=...``); unknown ones raise ``ConfigError``.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed = {seed!r}; use a non-negative integer")
    size = check_options(
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        resize=resize,
        channels=channels,
        max_samples=max_samples,
    )
    if not isinstance(name, str) or not name:
        raise ConfigError(
            f"data.name = {name!r}; use one of {', '.join(DATASETS.names())} or 'package.module:function'"
        )
    loader = import_object(name, what="data.name") if ":" in name else DATASETS.get(name)
    raw = coerce_raw(_call_loader(name, loader, loader_kwargs), source=name)

    if raw.x_test is None:
        train_idx, val_idx, test_idx = split_indices(
            raw.y, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction, max_samples=max_samples
        )
        parts = [(raw.x[i], raw.y[i]) for i in (train_idx, val_idx, test_idx)]
    else:
        pool_cap = test_cap = None
        if max_samples is not None:
            n_pool, n_test = len(raw.y), len(raw.y_test)
            pool_cap = max(1, round(max_samples * n_pool / (n_pool + n_test)))
            test_cap = max(0, max_samples - pool_cap)
        pool = subsample(raw.y, pool_cap, seed=seed)
        train_idx, val_idx, _ = split_indices(
            raw.y[pool], seed=seed, val_fraction=val_fraction, test_fraction=0.0, max_samples=None
        )
        test_idx = subsample(raw.y_test, test_cap, seed=seed) if test_cap != 0 else np.arange(0)
        parts = [(raw.x[pool[train_idx]], raw.y[pool[train_idx]]), (raw.x[pool[val_idx]], raw.y[pool[val_idx]])]
        parts.append((raw.x_test[test_idx], raw.y_test[test_idx]))

    xs = [preprocess(x, resize=size, channels=channels) for x, _ in parts]
    mean, std = channel_stats(xs[0])
    train, val, test = (make_split(normalise(x, mean, std), y) for x, (_, y) in zip(xs, parts))

    all_labels = raw.y if raw.y_test is None else np.concatenate([raw.y, raw.y_test])
    class_names = raw.class_names or default_class_names(int(all_labels.max()) + 1)
    params = {
        "seed": int(seed),
        "val_fraction": float(val_fraction),
        "test_fraction": float(test_fraction) if raw.x_test is None else None,
        "resize": list(size) if size else None,
        "channels": channels,
        "max_samples": max_samples,
        "loader_kwargs": dict(sorted(loader_kwargs.items())),
    }
    return DatasetSplits(
        name=name,
        train=train,
        val=val,
        test=test,
        num_classes=len(class_names),
        input_shape=tuple(int(d) for d in train.x.shape[1:]),
        class_names=tuple(class_names),
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        params=params,
    )


def _call_loader(name: str, loader: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """Call ``loader(**kwargs)`` after checking the arguments against its signature."""
    if not callable(loader):
        raise ConfigError(f"data.name {name!r} is not callable; point it at a function returning the arrays")
    sig = inspect.signature(loader)
    params = sig.parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    valid = [n for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    unknown = sorted(set(kwargs) - set(valid)) if not accepts_any else []
    if unknown:
        raise ConfigError(
            f"data: unknown argument(s) {', '.join(unknown)} for dataset {name!r}; valid: "
            f"{', '.join(valid + list(_GENERIC))}"
        )
    missing = [
        n for n, p in params.items()
        if p.default is p.empty and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and n not in kwargs
    ]
    if missing:
        raise ConfigError(
            f"data.{missing[0]} is required for dataset {name!r}; add it under data: in the experiment YAML"
        )
    return loader(**kwargs)
