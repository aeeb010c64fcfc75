"""Cell surgery shared by every compressor and the deploy form: find a cell by its dotted name,
swap in a new one (SequentialCell/CellList by index, attributes by name), rename parameters."""

from __future__ import annotations

import numpy as np


def find_cell(net, path: str):
    """The cell named ``path`` (as in ``net.cells_and_names()``)."""
    cell = net
    for part in path.split("."):
        cell = cell._cells[part]
    return cell


def replace_cell(net, path: str, new_cell) -> None:
    """Put ``new_cell`` wherever the cell named ``path`` is: a cell held twice (mindcv's SqueezeNet
    keeps its ``final_conv`` as an attribute and inside its classifier) is replaced in both places."""
    from mindspore import nn

    old = find_cell(net, path)
    holders, stack, seen = [], [net], set()
    while stack:
        parent = stack.pop()
        if id(parent) in seen:
            continue
        seen.add(id(parent))
        for key, child in parent._cells.items():
            if child is old:
                holders.append((parent, key))
            elif child is not None:
                stack.append(child)
    for parent, key in holders:
        if isinstance(parent, (nn.SequentialCell, nn.CellList)):
            parent[list(parent._cells.keys()).index(key)] = new_cell
        else:
            setattr(parent, key, new_cell)


def float_tensor(a: np.ndarray):
    """``a`` as a float32 MindSpore tensor (the initial weights of a rebuilt cell)."""
    import mindspore as ms

    return ms.Tensor(np.ascontiguousarray(a, dtype=np.float32))


def rename_parameters(net) -> None:
    """Give every parameter its full dotted path as name (new cells start with bare names)."""
    for name, param in net.parameters_and_names():
        param.name = name
