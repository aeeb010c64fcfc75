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
from automc.algorithms._surgery import find_cell, rename_parameters, replace_cell
from automc.analysis.layer_table import LayerTable, kept_channels
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


def _tensor(a: np.ndarray):
    import mindspore as ms

    return ms.Tensor(np.ascontiguousarray(a, dtype=np.float32))


def _sliced_cell(cell, out_idx: np.ndarray | None, in_idx: np.ndarray | None):
    """A new cell like ``cell`` keeping output channels ``out_idx`` and inputs ``in_idx``."""
    from mindspore import nn

    if isinstance(cell, nn.Conv2d):
        w = cell.weight.asnumpy()
        depthwise = cell.group > 1 and cell.group == cell.in_channels == cell.out_channels
        if out_idx is not None:
            w = w[out_idx]
        if in_idx is not None and not depthwise:
            w = w[:, in_idx]
        cout = w.shape[0]
        cin = cout if depthwise else w.shape[1] * cell.group
        bias = cell.bias.asnumpy()[out_idx if out_idx is not None else slice(None)] if cell.has_bias else None
        return nn.Conv2d(cin, cout, cell.kernel_size, stride=cell.stride, pad_mode=cell.pad_mode,
                         padding=cell.padding, dilation=cell.dilation, group=cout if depthwise else cell.group,
                         has_bias=cell.has_bias, weight_init=_tensor(w),
                         bias_init=_tensor(bias) if bias is not None else None, data_format=cell.data_format)
    if isinstance(cell, nn.Dense):
        w = cell.weight.asnumpy()
        if out_idx is not None:
            w = w[out_idx]
        if in_idx is not None:
            w = w[:, in_idx]
        bias = cell.bias.asnumpy()[out_idx if out_idx is not None else slice(None)] if cell.has_bias else None
        return nn.Dense(w.shape[1], w.shape[0], weight_init=_tensor(w),
                        bias_init=_tensor(bias) if bias is not None else None, has_bias=cell.has_bias,
                        activation=cell.activation if cell.activation_flag else None)
    if isinstance(cell, (nn.BatchNorm2d, nn.BatchNorm1d)):
        idx = out_idx if out_idx is not None else in_idx
        cls = type(cell)
        return cls(len(idx), eps=cell.eps, momentum=1.0 - cell.momentum,  # stored as 1 - momentum
                   gamma_init=_tensor(cell.gamma.asnumpy()[idx]), beta_init=_tensor(cell.beta.asnumpy()[idx]),
                   moving_mean_init=_tensor(cell.moving_mean.asnumpy()[idx]),
                   moving_var_init=_tensor(cell.moving_variance.asnumpy()[idx]),
                   use_batch_statistics=cell.use_batch_statistics)
    raise CompressionError(f"cannot slice a {type(cell).__name__}; only Conv2d, Dense and BatchNorm are supported")


def prune(net, table: LayerTable, policy: Policy, *, importance: str = "l1", reads: Mapping[str, str] | None = None):
    """A pruned deep copy of ``net``: each group in ``policy.prune`` loses that share of channels.

    ``reads`` (group -> group) makes the consumers of a group read another group's kept channels:
    NAS uses it when a dropped block passes its input group straight to its output group's readers."""
    IMPORTANCE.get(importance)  # fail early on an unknown name
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
        n_keep = int(kept_channels(group.channels, ratio))
        if n_keep == group.channels:
            continue
        order = channel_order([find_cell(pruned, p).weight.asnumpy() for p in group.producers], importance)
        keep[name] = np.sort(order[:n_keep])

    if not keep:
        return pruned
    out_idx: dict[str, np.ndarray] = {}
    in_idx: dict[str, np.ndarray] = {}
    for name, idx in keep.items():
        group = groups[name]
        for p in group.producers:
            out_idx[p] = idx
        for f in group.followers:
            out_idx[f] = idx
    for name, source in (reads or {}).items():
        if source in keep:
            keep[name] = keep[source]
        else:
            keep.pop(name, None)
    for name, idx in keep.items():
        group = groups[name]
        for c in group.consumers:
            row = table.index(c) if c in table.names else None
            factor = int(table.in_factor[row]) if row is not None else 1
            in_idx[c] = (idx[:, None] * factor + np.arange(factor)[None, :]).ravel()

    from mindspore import nn

    for path in sorted(set(out_idx) | set(in_idx)):
        cell = find_cell(pruned, path)
        if not isinstance(cell, (nn.Conv2d, nn.Dense, nn.BatchNorm2d, nn.BatchNorm1d)):
            continue  # channel-wise cells without weights (pooling, activations) adapt by themselves
        replace_cell(pruned, path, _sliced_cell(cell, out_idx.get(path), in_idx.get(path)))
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
