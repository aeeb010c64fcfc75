"""Cell surgery shared by every compressor and the deploy form: find a cell by its dotted name,
swap in a new one (SequentialCell/CellList by index, attributes by name), rename parameters."""

from __future__ import annotations


def find_cell(net, path: str):
    """The cell named ``path`` (as in ``net.cells_and_names()``)."""
    cell = net
    for part in path.split("."):
        cell = cell._cells[part]
    return cell


def replace_cell(net, path: str, new_cell) -> None:
    """Put ``new_cell`` where the cell named ``path`` is."""
    from mindspore import nn

    parent_path, _, key = path.rpartition(".")
    parent = find_cell(net, parent_path) if parent_path else net
    if isinstance(parent, (nn.SequentialCell, nn.CellList)):
        parent[list(parent._cells.keys()).index(key)] = new_cell
    else:
        setattr(parent, key, new_cell)


def rename_parameters(net) -> None:
    """Give every parameter its full dotted path as name (new cells start with bare names)."""
    for name, param in net.parameters_and_names():
        param.name = name
