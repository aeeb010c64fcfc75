"""Batch-norm re-calibration of an extracted sub-network (Once-for-All scores sub-networks this way)."""

from __future__ import annotations

import numpy as np


def recalibrate_bn(net, x: np.ndarray, *, samples: int = 256, seed: int = 0):
    """Set the moving statistics of every batch-norm of ``net`` to those of ``samples`` inputs from ``x``.

    The sub-network's layers see different inputs than in the baseline (fewer channels, blocks or
    a smaller kernel upstream), so its inherited running statistics are stale and its accuracy
    before fine-tuning collapses. One forward pass in training mode, with each batch-norm's
    moving-average momentum set to 1 for that pass, replaces them by the batch statistics (every
    layer normalised consistently with its upstream layers). No weight changes; ``net`` is
    returned in inference mode.
    """
    import mindspore as ms
    from mindspore import nn, ops

    bns = [c for _, c in net.cells_and_names() if isinstance(c, (nn.BatchNorm2d, nn.BatchNorm1d))]
    saved = [c.bn_train for c in bns]
    idx = np.random.default_rng(seed).choice(len(x), size=min(samples, len(x)), replace=False)
    net.set_train(True)
    try:
        for c in bns:
            c.bn_train = ops.BatchNorm(is_training=True, epsilon=c.eps, momentum=1.0, data_format=c.format)
        net(ms.Tensor(np.ascontiguousarray(x[np.sort(idx)], dtype=np.float32)))
    finally:
        for c, op in zip(bns, saved):
            c.bn_train = op
        net.set_train(False)
    return net
