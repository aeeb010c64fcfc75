"""The elastic form of a network: every sub-network of its declared space inside one graph.

Once-for-All and BigNAS train a network so that its sub-networks work without retraining. Here
a sub-network is selected *inside* the trained network by masks, so one compiled training step
serves every sub-network (no graph per sampled choice):

- width: the producers and batch norms of a scaled coupling group multiply their output by a
  0/1 channel mask keeping the ``round(channels * w)`` channels of largest importance (the
  criterion ``extract`` slices with, read from the current weights at each step);
- kernel: the convolution's weight is multiplied by a mask keeping its centre ``k x k`` (equal
  to the centre-cropped convolution ``extract`` builds, under "same" padding);
- depth: a dropped block is gated, ``g * block(x) + (1 - g) * x`` with ``g = 0``.

The masks are non-trainable parameters, set between steps; ``ElasticNetwork`` wraps the cells
in place and restores them (with their trained weights and baseline parameter names) on
``close``, so the result is the original network, ready for ``extract``.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from automc.algorithms._surgery import find_cell, rename_parameters, replace_cell
from automc.algorithms.nas._resolver import ElasticResolver, nas_channels
from automc.algorithms.pruning import channel_order


def _masked_cell_class():
    from mindspore import Parameter, Tensor, nn

    class MaskedCell(nn.Cell):
        """``inner`` with an output-channel mask and/or a centre-kernel mask."""

        def __init__(self, inner, channels: int | None, kernel: int | None):
            super().__init__()
            self.inner = inner
            self.has_cmask, self.has_kmask = channels is not None, kernel is not None
            dense = isinstance(inner, nn.Dense) or isinstance(inner, nn.BatchNorm1d)
            shape = (1, channels or 1) if dense else (1, channels or 1, 1, 1)
            self.cmask = Parameter(Tensor(np.ones(shape, np.float32)), name="cmask", requires_grad=False)
            k = kernel or 1
            self.kmask = Parameter(Tensor(np.ones((1, 1, k, k), np.float32)), name="kmask", requires_grad=False)
            self.has_bias = bool(getattr(inner, "has_bias", False))

        def construct(self, x):
            if self.has_kmask:
                y = self.inner.conv2d(x, self.inner.weight * self.kmask)
                if self.has_bias:
                    y = self.inner.bias_add(y, self.inner.bias)
            else:
                y = self.inner(x)
            if self.has_cmask:
                y = y * self.cmask
            return y

    class GatedBlock(nn.Cell):
        """``g * block(x) + (1 - g) * x``: the block, or (``g = 0``) the identity a depth choice leaves."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            self.gate = Parameter(Tensor(np.ones((), np.float32)), name="gate", requires_grad=False)

        def construct(self, x):
            return self.gate * self.inner(x) + (1.0 - self.gate) * x

    return MaskedCell, GatedBlock


class ElasticNetwork:
    """``net`` made elastic in place: ``activate(nas)`` selects a sub-network; ``close()`` undoes.

    ``net`` must be the network ``resolver`` was built from (its ``table.elastic``).
    """

    def __init__(self, net, resolver: ElasticResolver, *, importance: str = "l1"):
        from mindspore import nn

        MaskedCell, GatedBlock = _masked_cell_class()
        self.net, self.resolver, self.importance = net, resolver, importance
        space, table = resolver.space, resolver.table
        self._original: dict[str, Any] = {}
        masked: dict[str, Any] = {}
        # which paths take a channel mask (group index), which a kernel mask (kernel name)
        channel_paths: dict[str, int] = {}
        for groups in resolver.width_groups.values():
            for gi in groups:
                g = table.coupling[gi]
                for path in (*g.producers, *g.followers):
                    cell = find_cell(net, path)
                    if isinstance(cell, (nn.Conv2d, nn.Dense, nn.BatchNorm2d, nn.BatchNorm1d)):
                        channel_paths[path] = gi
        kernel_paths = {layer: knob for knob, layers in space.kernels.items() for layer in layers}
        self._producers = {gi: [find_cell(net, p) for p in table.coupling[gi].producers]
                           for groups in resolver.width_groups.values() for gi in groups}
        for path in sorted(set(channel_paths) | set(kernel_paths)):
            cell = find_cell(net, path)
            gi = channel_paths.get(path)
            knob = kernel_paths.get(path)
            self._original[path] = cell
            masked[path] = MaskedCell(cell, table.coupling[gi].channels if gi is not None else None,
                                      resolver.base_kernel[knob] if knob is not None else None)
            replace_cell(net, path, masked[path])
        self._channel_cells = {gi: [masked[p] for p, g in channel_paths.items() if g == gi]
                               for gi in set(channel_paths.values())}
        self._kernel_cells = {knob: [masked[p] for p in layers] for knob, layers in space.kernels.items()}
        self._gates: dict[str, list] = {}
        for stage, blocks in space.stages.items():
            self._gates[stage] = []
            for j, block in enumerate(blocks):
                if j < space.min_depth[stage]:
                    continue
                inner = find_cell(net, block)
                self._original[block] = inner
                gated = GatedBlock(inner)
                replace_cell(net, block, gated)
                self._gates[stage].append((j, gated))
        rename_parameters(net)
        self._order: dict[int, np.ndarray] | None = None

    # ----------------------------------------------------------------- selecting a sub-network
    def rank_channels(self) -> None:
        """Order each scaled group's channels by importance of the current weights (call once per
        step, before ``activate``: the sub-networks of one step share the order)."""
        self._order = {gi: channel_order([c.weight.asnumpy() for c in cells], self.importance)
                       for gi, cells in self._producers.items()}

    def activate(self, nas: Mapping[str, Any]) -> None:
        """Set the masks and gates to the sub-network ``nas`` (missing keys: unchanged)."""
        import mindspore as ms

        resolver = self.resolver
        full = resolver.validate(nas)
        if self._order is None:
            self.rank_channels()
        for knob, groups in resolver.width_groups.items():
            w = full[f"{knob}.width"]
            for gi in groups:
                channels = resolver.table.coupling[gi].channels
                mask = np.zeros(channels, np.float32)
                mask[self._order[gi][:int(nas_channels(channels, w))]] = 1.0
                for cell in self._channel_cells.get(gi, ()):
                    cell.cmask.set_data(ms.Tensor(mask.reshape(cell.cmask.shape)))
        for knob, cells in self._kernel_cells.items():
            k0, k = resolver.base_kernel[knob], full[f"{knob}.kernel"]
            mask = np.zeros((1, 1, k0, k0), np.float32)
            o = (k0 - k) // 2
            mask[..., o:o + k, o:o + k] = 1.0
            for cell in cells:
                cell.kmask.set_data(ms.Tensor(mask))
        for stage, gates in self._gates.items():
            depth = full[f"{stage}.depth"]
            for j, gated in gates:
                gated.gate.set_data(ms.Tensor(np.float32(1.0 if j < depth else 0.0)))

    def close(self):
        """Put the original cells back (trained weights, baseline parameter names); returns ``net``."""
        for path, cell in reversed(self._original.items()):  # blocks before the cells inside them
            replace_cell(self.net, path, cell)
        rename_parameters(self.net)
        self._original = {}
        return self.net


def sandwich(choices: Mapping[str, tuple[Any, ...]], n_random: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """The sub-networks of one sandwich-rule step: the largest, the smallest and ``n_random``
    drawn uniformly over ``choices`` (decision key -> allowed values)."""
    largest = {k: max(v) for k, v in choices.items()}
    smallest = {k: min(v) for k, v in choices.items()}
    return [largest, smallest] + [{k: v[rng.integers(len(v))] for k, v in choices.items()} for _ in range(n_random)]
