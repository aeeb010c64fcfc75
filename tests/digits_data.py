"""scikit-learn's digits as a fixed train/test split of NCHW float images (the quantization tests'
small real data set): 1,437 training and 360 test images."""

import numpy as np


def digits_split(upsample: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)``; ``upsample`` repeats each pixel (8x8 -> 16x16 at 2)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.kron(d.images[:, None] / 16.0, np.ones((upsample, upsample))).astype(np.float32)
    y = d.target.astype(np.int32)
    order = np.random.default_rng(0).permutation(len(x))
    tr, te = order[:1437], order[1437:]
    return x[tr], y[tr], x[te], y[te]
