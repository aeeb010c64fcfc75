"""The MindSpore side of NAS: attach a declared space to a layer table, extract sub-networks."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping

import numpy as np

from automc.algorithms.nas._resolver import ElasticResolver, resolver_of
from automc.algorithms.nas._space import ElasticSpace
from automc.algorithms._surgery import find_cell, float_tensor, rename_parameters, replace_cell
from automc.algorithms.pruning import prune
from automc.analysis.layer_table import LayerTable
from automc.errors import CompressionError
from automc.policy import Policy


def _padding_ok(cell) -> bool:
    """A kernel can shrink without changing the output size only under "same"-style padding."""
    if cell.pad_mode == "same":
        return True
    if cell.pad_mode != "pad":
        return False
    pad = cell.padding if isinstance(cell.padding, (tuple, list)) else (cell.padding,) * 4
    return all(p == cell.kernel_size[0] // 2 for p in pad) and tuple(cell.dilation)[-1] == 1


def _check_blocks(net, space: ElasticSpace, input_shape) -> None:
    """Every block that a depth choice may drop must keep its input's shape (one forward pass)."""
    import mindspore as ms

    droppable = {b: s for s, blocks in space.stages.items() for b in blocks[space.min_depth[s]:]}
    if not droppable:
        return
    shapes: dict[str, tuple] = {}
    handles = []
    for path in droppable:
        try:
            cell = find_cell(net, path)
        except KeyError:
            raise CompressionError(f"elastic stage {droppable[path]!r}: no cell {path!r} in the network") from None

        def hook(c, inputs, output, path=path):
            shapes[path] = (tuple(inputs[0].shape) if len(inputs) == 1 else None, tuple(output.shape))

        handles.append(cell.register_forward_hook(hook))
    was_training = net.training
    net.set_train(False)
    try:
        net(ms.Tensor(np.zeros((1, *input_shape), np.float32)))
    finally:
        for h in handles:
            h.remove()
        net.set_train(was_training)
    for path, stage in droppable.items():
        x_shape, y_shape = shapes.get(path, (None, None))
        if x_shape is None or x_shape != y_shape:
            raise CompressionError(
                f"elastic stage {stage!r}: block {path!r} maps {x_shape} to {y_shape}; only single-input blocks that "
                f"keep their input's shape can be dropped; raise min_depth[{stage!r}] to keep it")


def attach_declared_space(table: LayerTable, net) -> LayerTable:
    """``table`` (``net``'s layer table) with ``net``'s elastic NAS space attached as
    ``table.elastic`` when ``net`` declares one (an ``elastic_space`` method or attribute); else
    ``table`` as it is."""
    declared = getattr(net, "elastic_space", None)
    if declared is None:
        return table
    return with_elastic_space(table, net, declared() if callable(declared) else declared)


def with_elastic_space(table: LayerTable, net, space: ElasticSpace) -> LayerTable:
    """``table`` with the resolver of ``space`` attached; checks the declaration against ``net``."""
    if not isinstance(space, ElasticSpace):
        raise CompressionError(f"elastic_space() returned {type(space).__name__}; return an automc.algorithms.nas.ElasticSpace")
    resolver = ElasticResolver.build(space, table)
    if net is not None:
        for knob, layers in space.kernels.items():
            for layer in layers:
                if not _padding_ok(find_cell(net, layer)):
                    raise CompressionError(f"elastic kernel {knob!r}: {layer!r} must use pad_mode='same' or symmetric "
                                           "padding kernel//2 without dilation, so that a smaller kernel keeps the output size")
        _check_blocks(net, space, table.input_shape)
    return replace(table, elastic=resolver)


def _cropped_conv(cell, k: int):
    """``cell`` with its kernel centre-cropped to ``k x k`` (same stride, "same" padding)."""
    from mindspore import nn

    w = cell.weight.asnumpy()
    o = (w.shape[-1] - k) // 2
    w = w[..., o:o + k, o:o + k]
    return nn.Conv2d(cell.in_channels, cell.out_channels, k, stride=cell.stride, pad_mode=cell.pad_mode,
                     padding=k // 2 if cell.pad_mode == "pad" else 0, dilation=cell.dilation, group=cell.group,
                     has_bias=cell.has_bias, weight_init=float_tensor(w), data_format=cell.data_format,
                     bias_init=float_tensor(cell.bias.asnumpy()) if cell.has_bias else None)


def _passed_through(resolver: ElasticResolver, full: Mapping[str, Any]) -> dict[str, str]:
    """Group -> group whose channels its readers get once dropped blocks are identities: a dropped
    block's output groups read outside it are its input group (``{}`` for residual blocks,
    whose output is coupled to their input anyway)."""
    t = resolver.table
    reads: dict[str, str] = {}
    for stage, blocks in resolver.block_rows.items():
        for rows in blocks[full[f"{stage}.depth"]:]:
            if not rows:
                continue
            inside = set(rows)
            source = int(t.in_group[rows[0]])
            for r in rows:
                g = int(t.out_group[r])
                read_outside = any(int(t.in_group[c]) == g for c in range(len(t)) if c not in inside)
                if g >= 0 and source >= 0 and g != source and read_outside:
                    reads[t.coupling[g].name] = t.coupling[source].name
    for name in list(reads):  # consecutive dropped blocks: follow the chain to its start
        while reads[name] in reads:
            reads[name] = reads[reads[name]]
    return reads


def extract(net, table: LayerTable, nas: Mapping[str, Any], *, importance: str = "l1"):
    """The sub-network chosen by ``nas``: a standalone deep copy of ``net`` with inherited weights.

    1. width: each scaled coupling group keeps its most important channels, scored like pruning
       (L1 norm of the producers' filters, ``importance``), via ``automc.algorithms.pruning.prune``;
    2. kernel: the centre ``k x k`` of the baseline kernel;
    3. depth: the first blocks of a stage are kept, the others replaced by ``nn.Identity`` (cell
       paths, and so layer and group names, stay those of the baseline).
    ``net`` is not modified. The result declares no elastic space of its own.
    """
    from mindspore import nn

    resolver = resolver_of(table)
    full = resolver.validate(nas)
    ratios = {}
    for knob, groups in resolver.width_groups.items():
        w = full[f"{knob}.width"]
        if w != 1.0:
            for gi in groups:
                ratios[resolver.table.coupling[gi].name] = 1.0 - w
    sub = prune(net, resolver.table, Policy(prune=ratios), importance=importance,
                reads=_passed_through(resolver, full))  # always a deep copy
    for knob, layers in resolver.space.kernels.items():
        k = full[f"{knob}.kernel"]
        if k != resolver.base_kernel[knob]:
            for layer in layers:
                replace_cell(sub, layer, _cropped_conv(find_cell(sub, layer), k))
    for stage, blocks in resolver.space.stages.items():
        for block in blocks[full[f"{stage}.depth"]:]:
            replace_cell(sub, block, nn.Identity())
    rename_parameters(sub)
    sub.elastic_space = None  # a sub-network is final: its own table has no elastic hook
    sub.set_train(False)
    return sub


def sub_policy(table: LayerTable, policy: Policy) -> tuple[LayerTable, Policy]:
    """The table of ``policy``'s NAS sub-network and the rest of ``policy`` restated for it.

    Pruning ratios of groups that NAS removed and bit-widths of removed layers are dropped; the
    ``nas`` field is emptied (applied). This is what the compressors after NAS must be given.
    """
    if not policy.nas:
        return table, policy
    sub = resolver_of(table).sub_table(policy.nas)
    groups, layers = {g.name for g in sub.coupling}, set(sub.names)
    return sub, Policy(
        prune={k: v for k, v in policy.prune.items() if k in groups},
        w_bits={k: v for k, v in policy.w_bits.items() if k in layers},
        a_bits={k: v for k, v in policy.a_bits.items() if k in layers},
    )
