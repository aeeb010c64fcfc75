"""Random class-conditional images for tests and benchmarks: learnable, deterministic, instant."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from automc.data._base import RawDataset
from automc.errors import ConfigError


def load_synthetic(
    *,
    num_samples: int = 1000,
    num_classes: int = 10,
    shape: Sequence[int] = (1, 8, 8),
    noise: float = 1.0,
    data_seed: int = 0,
) -> RawDataset:
    """``num_samples`` images of ``shape`` (C, H, W): a fixed random pattern per class plus Gaussian noise.

    Class patterns have unit variance, so ``noise`` is the noise-to-signal ratio (1.0 is learnable
    but not trivial). ``data_seed`` fixes the data; the experiment seed only changes the splits.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ConfigError(f"data.num_samples = {num_samples!r}; use a positive integer, e.g. 1000")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"data.num_classes = {num_classes!r}; use an integer >= 2")
    shape = tuple(shape) if isinstance(shape, (list, tuple)) else ()
    if len(shape) != 3 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
        raise ConfigError("data.shape must be [channels, height, width] of positive integers, e.g. [1, 8, 8]")
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or noise < 0:
        raise ConfigError(f"data.noise = {noise!r}; use a non-negative number, e.g. 1.0")

    rng = np.random.default_rng([int(data_seed), 0x5E7])
    patterns = rng.standard_normal((num_classes, *shape)).astype(np.float32)
    y = rng.permutation(np.arange(num_samples) % num_classes)
    x = patterns[y] + np.float32(noise) * rng.standard_normal((num_samples, *shape), dtype=np.float32)
    return RawDataset(x, y.astype(np.int64), tuple(f"class_{i}" for i in range(num_classes)))
