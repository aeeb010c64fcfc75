"""scikit-learn's embedded ``digits``: 1,797 real 8x8 grayscale digits (values 0..16), no download."""

from __future__ import annotations

import numpy as np

from automc.data._base import RawDataset


def load_digits() -> RawDataset:
    """The default data set: small enough for CPU searches, real enough to rank compressions."""
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    x = bunch.images.astype(np.uint8)[:, None]  # (1797, 1, 8, 8), integer values 0..16
    return RawDataset(x, bunch.target.astype(np.int64), tuple(str(n) for n in bunch.target_names))
