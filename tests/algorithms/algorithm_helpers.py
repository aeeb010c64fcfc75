"""Helpers shared by the algorithm tests (a module, not conftest, so names cannot clash)."""

import numpy as np

from automc.algorithms.nas import attach_declared_space
from automc.analysis import build_layer_table


def randomise_bn(net, seed: int = 0) -> None:
    """Non-trivial batch-norm statistics, so that inherited weights show in the outputs."""
    import mindspore as ms
    from mindspore import nn

    rng = np.random.default_rng(seed)
    for _, cell in net.cells_and_names():
        if isinstance(cell, nn.BatchNorm2d):
            n = cell.gamma.shape[0]
            cell.gamma.set_data(ms.Tensor(rng.uniform(0.5, 1.5, n).astype(np.float32)))
            cell.beta.set_data(ms.Tensor(rng.normal(0, 0.1, n).astype(np.float32)))
            cell.moving_mean.set_data(ms.Tensor(rng.normal(0, 0.1, n).astype(np.float32)))
            cell.moving_variance.set_data(ms.Tensor(rng.uniform(0.5, 1.5, n).astype(np.float32)))


def elastic_table(net, input_shape):
    """``net``'s layer table with its declared elastic NAS space, as a search builds it."""
    return attach_declared_space(build_layer_table(net, input_shape), net)
