"""scikit-learn's embedded ``digits``: 1,797 real 8x8 grayscale digits (values 0..16), no download."""

from __future__ import annotations

import io
import zipfile
from importlib.metadata import version

import numpy as np

from automc._files import cache_root, write_bytes_atomic
from automc.data._base import RawDataset


def load_digits() -> RawDataset:
    """The default data set: small enough for CPU searches, real enough to rank compressions.

    Read once per machine and scikit-learn version through ``sklearn.datasets.load_digits``, then
    from a copy in the automc cache: importing scikit-learn takes ~3 s, longer than the quickstart's
    baseline stage, in every process that starts a search."""
    cached = cache_root() / "data" / f"digits-sklearn-{version('scikit-learn')}.npz"
    try:
        with np.load(cached) as f:
            return RawDataset(f["x"], f["y"], tuple(str(n) for n in f["class_names"]))
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile):  # not cached yet, or damaged: read again
        pass
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    x = bunch.images.astype(np.uint8)[:, None]  # (1797, 1, 8, 8), integer values 0..16
    data = RawDataset(x, bunch.target.astype(np.int64), tuple(str(n) for n in bunch.target_names))
    copy = io.BytesIO()
    np.savez(copy, x=data.x, y=data.y, class_names=np.asarray(data.class_names))
    try:
        write_bytes_atomic(cached, copy.getvalue())
    except OSError:  # no writable cache here: read through scikit-learn each time
        pass
    return data
