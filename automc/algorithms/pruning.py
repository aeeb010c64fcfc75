"""AMC-style structured channel pruning: physically smaller dense layers, not masks.

Concerns are kept apart as in Torch-Pruning: the coupling groups come from the analysis
(``automc.analysis``), importance scoring is a small registry of functions, the policy is a ratio
per group, and the surgery below slices every producer, consumer and follower of a group with
the same kept channel indices, then swaps the new cells into a deep copy of the network.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Callable, Mapping, Sequence

import numpy as np

from automc.algorithms._base import Compressor, Decision
from automc.algorithms._surgery import find_cell, float_tensor, rename_parameters, replace_cell
from automc.analysis.coupling import expand
from automc.analysis.layer_table import CouplingGroup, LayerTable, kept_channels
from automc.errors import CompressionError, ConfigError, first_line
from automc.policy import Policy
from automc.registry import Registry

# importance(weights of the group's producers, each (out, ...)) -> one score per channel
IMPORTANCE: Registry[Callable[[Sequence[np.ndarray]], np.ndarray]] = Registry("pruning importance")


def _normalised(scores: Sequence[np.ndarray]) -> np.ndarray:
    return sum(s / (s.mean() + 1e-12) for s in scores)


@IMPORTANCE.register("l1")
def l1_importance(weights: Sequence[np.ndarray]) -> np.ndarray:
    """Sum over the group's producers of each filter's L1 norm, each normalised by its mean."""
    return _normalised([np.abs(w.reshape(w.shape[0], -1)).sum(1) for w in weights])


@IMPORTANCE.register("l2")
def l2_importance(weights: Sequence[np.ndarray]) -> np.ndarray:
    return _normalised([np.sqrt((w.reshape(w.shape[0], -1) ** 2).sum(1)) for w in weights])


def channel_order(weights: Sequence[np.ndarray], importance: str = "l1") -> np.ndarray:
    """A coupling group's channels, most important first, by ``importance`` of its producers'
    ``weights`` (each ``(out, ...)``); ties keep the channel order. Pruning keeps a prefix."""
    return np.argsort(-IMPORTANCE.get(importance)(weights), kind="stable")


def _sliced_cell(cell, out_idx: np.ndarray | None, in_idx: np.ndarray | None):
    """A new cell like ``cell`` keeping output channels ``out_idx`` and inputs ``in_idx``."""
    from mindspore import Parameter, nn

    if isinstance(cell, nn.Conv2d):
        w = cell.weight.asnumpy()
        depthwise = cell.group > 1 and cell.group == cell.in_channels == cell.out_channels
        out_group = np.arange(w.shape[0]) // (w.shape[0] // cell.group)  # each output channel's conv group
        if out_idx is not None:
            w, out_group = w[out_idx], out_group[out_idx]
        if in_idx is not None and not depthwise:
            if cell.group == 1:
                w = w[:, in_idx]
            else:  # each conv group keeps its own inputs (the same number in every group)
                per_group = w.shape[1]
                local = [in_idx[in_idx // per_group == j] - j * per_group for j in range(cell.group)]
                if len({len(x) for x in local}) != 1:
                    raise CompressionError("the groups of a grouped conv would keep different numbers of inputs")
                w = np.stack([w[o, local[out_group[o]]] for o in range(w.shape[0])])
        cout = w.shape[0]
        cin = cout if depthwise else w.shape[1] * cell.group
        bias = cell.bias.asnumpy()[out_idx if out_idx is not None else slice(None)] if cell.has_bias else None
        return nn.Conv2d(cin, cout, cell.kernel_size, stride=cell.stride, pad_mode=cell.pad_mode,
                         padding=cell.padding, dilation=cell.dilation, group=cout if depthwise else cell.group,
                         has_bias=cell.has_bias, weight_init=float_tensor(w),
                         bias_init=float_tensor(bias) if bias is not None else None, data_format=cell.data_format)
    if isinstance(cell, nn.Dense):
        w = cell.weight.asnumpy()
        if out_idx is not None:
            w = w[out_idx]
        if in_idx is not None:
            w = w[:, in_idx]
        bias = cell.bias.asnumpy()[out_idx if out_idx is not None else slice(None)] if cell.has_bias else None
        return nn.Dense(w.shape[1], w.shape[0], weight_init=float_tensor(w),
                        bias_init=float_tensor(bias) if bias is not None else None, has_bias=cell.has_bias,
                        activation=cell.activation if cell.activation_flag else None)
    if isinstance(cell, (nn.BatchNorm2d, nn.BatchNorm1d)):
        idx = out_idx if out_idx is not None else in_idx
        cls = type(cell)
        return cls(len(idx), eps=cell.eps, momentum=1.0 - cell.momentum,  # stored as 1 - momentum
                   gamma_init=float_tensor(cell.gamma.asnumpy()[idx]),
                   beta_init=float_tensor(cell.beta.asnumpy()[idx]),
                   moving_mean_init=float_tensor(cell.moving_mean.asnumpy()[idx]),
                   moving_var_init=float_tensor(cell.moving_variance.asnumpy()[idx]),
                   use_batch_statistics=cell.use_batch_statistics)
    if isinstance(cell, nn.LayerNorm):  # mindcv's channels-first subclass too: its own settings, fewer channels
        idx = out_idx if out_idx is not None else in_idx
        new = copy.deepcopy(cell)
        new.gamma = Parameter(float_tensor(cell.gamma.asnumpy()[idx]), name="gamma")
        new.beta = Parameter(float_tensor(cell.beta.asnumpy()[idx]), name="beta")
        new.normalized_shape = (len(idx),)
        return new
    raise CompressionError(f"cannot slice a {type(cell).__name__}; only Conv2d, Dense, BatchNorm and LayerNorm are "
                           "supported")


def _slice_layer_scales(net, producers: Sequence[str], masks: Mapping[tuple[str, str], np.ndarray]) -> None:
    """A cell's own 1-D parameter as long as the output of the one producer inside it keeps that
    producer's channels: ConvNeXt's layer scale (``self.gamma_ * x`` in ``construct``, after the
    block's last dense layer). Called before the producers are sliced."""
    from mindspore import Parameter

    for (path, side), mask in masks.items():
        if side != "out" or path not in producers or "." not in path:
            continue
        parent_path = path.rpartition(".")[0]
        inside = [q for q in producers if q.startswith(parent_path + ".")
                  and _width(find_cell(net, q), "out") == len(mask)]
        if inside != [path]:
            continue
        parent = find_cell(net, parent_path)
        for name, param in list(parent.parameters_and_names(expand=False)):
            if tuple(param.shape) == (len(mask),):
                sliced = Parameter(float_tensor(param.asnumpy()[mask]), name=param.name)
                setattr(parent, name.rpartition(".")[2], sliced)


def _width(cell, side: str) -> int:
    """A conv's, dense layer's or norm's output or input channels."""
    from mindspore import nn

    if isinstance(cell, (nn.Conv2d, nn.Dense)):
        return cell.out_channels if side == "out" else cell.in_channels
    return int(cell.gamma.shape[0])


def _classes(group: CouplingGroup, layer: str, side: str, width: int) -> np.ndarray:
    """The group's class at each of ``layer``'s ``width`` output or input channels (-1: none of its
    classes): its map where the group lists one, else the classes in order, each repeated
    ``width / channels`` times (a dense layer after a flatten)."""
    runs = group.map_of(layer, side)
    if runs is not None:
        return expand(runs, width)
    return np.repeat(np.arange(group.channels), max(width // group.channels, 1))[:width]


def _kept_classes(scores: np.ndarray, n_keep: int, divisions: int) -> np.ndarray:
    """Bool over classes: the ``n_keep`` best by ``scores``, the same number in each of the
    ``divisions`` contiguous blocks (ties keep the lower index)."""
    keep = np.zeros(len(scores), dtype=bool)
    size = len(scores) // divisions
    for start in range(0, len(scores), size):
        order = np.argsort(-scores[start : start + size], kind="stable")
        keep[start + order[: n_keep // divisions]] = True
    return keep


def prune(net, table: LayerTable, policy: Policy, *, importance: str = "l1", reads: Mapping[str, str] | None = None):
    """A pruned deep copy of ``net``: each group in ``policy.prune`` loses that share of channels.

    Each group's classes are scored by ``importance`` over its producers' filters, the best kept;
    every producer, consumer and follower then keeps the channels (or input positions) of the
    kept classes, where the group's maps place them. ``reads`` (group -> group) makes the
    consumers of a group read another group's kept channels: NAS uses it when a dropped block
    passes its input group straight to its output group's readers."""
    scorer = IMPORTANCE.get(importance)  # fail early on an unknown name
    groups = {g.name: g for g in table.coupling}
    for name, ratio in policy.prune.items():
        if name not in groups:
            raise CompressionError(f"policy prunes unknown group {name!r}; the network's groups: {', '.join(groups)}")
        if not groups[name].prunable and ratio > 0:
            raise CompressionError(f"group {name!r} cannot be pruned: {groups[name].reason}")
        if not 0 <= ratio < 1:
            raise ConfigError(f"prune ratio of {name!r} is {ratio}; it must be in [0, 1)")

    pruned = copy.deepcopy(net)
    keep: dict[str, np.ndarray] = {}
    for name, ratio in policy.prune.items():
        group = groups[name]
        n_keep = int(kept_channels(group.channels, ratio, group.divisions))
        if n_keep == group.channels:
            continue
        scores = np.zeros(group.channels)
        for p in group.producers:
            w = find_cell(pruned, p).weight.asnumpy()
            cls = _classes(group, p, "out", w.shape[0])
            scores += np.bincount(cls, weights=scorer([w]), minlength=group.channels)
        keep[name] = _kept_classes(scores, n_keep, group.divisions)

    if not keep:
        return pruned
    read_keep = dict(keep)
    for name, source in (reads or {}).items():
        if source in keep:
            read_keep[name] = keep[source]
        else:
            read_keep.pop(name, None)
    masks: dict[tuple[str, str], np.ndarray] = {}  # (layer, "out" | "in") -> channels kept

    def mark(group: CouplingGroup, layer: str, side: str, kept: np.ndarray) -> None:
        width = _width(find_cell(pruned, layer), side)
        cls = _classes(group, layer, side, width)
        mask = masks.setdefault((layer, side), np.ones(width, dtype=bool))
        mask[cls >= 0] &= kept[cls[cls >= 0]]

    for name, kept in keep.items():
        group = groups[name]
        for p in group.producers:
            mark(group, p, "out", kept)
        for f in group.followers:  # channel-wise: one axis, read where the group's map puts it
            mark(group, f, "in", kept)
    for name, kept in read_keep.items():
        for c in groups[name].consumers:
            mark(groups[name], c, "in", kept)

    from mindspore import nn

    _slice_layer_scales(pruned, [p for g in table.coupling for p in g.producers], masks)
    followers = {f for g in table.coupling for f in g.followers}
    for path in sorted({layer for layer, _ in masks}):
        cell = find_cell(pruned, path)
        if not isinstance(cell, (nn.Conv2d, nn.Dense, nn.BatchNorm2d, nn.BatchNorm1d, nn.LayerNorm)):
            continue  # channel-wise cells without weights (pooling, activations) adapt by themselves
        out_mask, in_mask = masks.get((path, "out")), masks.get((path, "in"))
        if path in followers and out_mask is None:  # a follower's channels are its inputs
            out_mask, in_mask = in_mask, None
        replace_cell(pruned, path, _sliced_cell(cell, None if out_mask is None else np.nonzero(out_mask)[0],
                                                None if in_mask is None else np.nonzero(in_mask)[0]))
    rename_parameters(pruned)
    pruned.set_train(False)
    return pruned


def refuse_breaking_groups(net, table: LayerTable, input_shape: Sequence[int]) -> LayerTable:
    """``table`` with every prunable group whose pruning breaks ``net`` (its forward pass fails:
    a coupling the analysis did not see, e.g. an element-wise op between channels it thought
    independent) marked not prunable, with the error as the reason. Each group loses one channel,
    which any missed coupling already breaks and no network's own limits on its widths do; all
    groups at once first (one forward pass when nothing breaks), and only when that fails one by
    one, each kept when the network still runs with it and the ones kept before."""
    import mindspore as ms

    one_less = {g.name: 1.0 / g.channels for g in table.prunable_groups if g.channels > 1}
    names = list(one_less)
    x = ms.Tensor(np.zeros((1, *input_shape), np.float32))

    def breaks(chosen: Sequence[str]) -> str:
        try:
            prune(net, table, Policy(prune={n: one_less[n] for n in chosen}))(x)
        except Exception as exc:  # whatever MindSpore raises for mismatched shapes
            return f"{type(exc).__name__}: {first_line(exc)}"
        return ""

    if not names or not breaks(names):
        return table
    kept: list[str] = []
    refused: dict[str, str] = {}
    for name in names:
        why = breaks([*kept, name])
        if why:
            refused[name] = why
        else:
            kept.append(name)
    coupling = tuple(dataclasses.replace(g, prunable=False, blocked_by=("breaks the network",),
                                         reason=f"pruning it breaks the network ({refused[g.name]})")
                     if g.name in refused else g for g in table.coupling)
    return dataclasses.replace(table, coupling=coupling)


class ChannelPruning(Compressor):
    """Per-group channel pruning ratios in ``[0, max_ratio]`` (AMC's action space)."""

    name = "pruning"
    section = "prune"

    def __init__(self, *, max_ratio: float = 0.7, step: float | None = 0.05, importance: str = "l1"):
        if not 0 < max_ratio < 1:
            raise ConfigError(f"pruning.max_ratio is {max_ratio}; it must be in (0, 1)")
        IMPORTANCE.get(importance)  # fail early on an unknown name
        self.max_ratio, self.step, self.importance = max_ratio, step, importance

    def decisions(self, table: LayerTable) -> list[Decision]:
        return [
            Decision("prune", g.name, "float", low=0.0, high=self.max_ratio, step=self.step, default=0.0)
            for g in table.prunable_groups
        ]

    def apply(self, network, table: LayerTable, policy: Policy, *, calib_x=None):
        return prune(network, table, policy, importance=self.importance)
