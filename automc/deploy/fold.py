"""Batch-norm folding: the deployment form of a float network.

Every ``BatchNorm2d`` whose input is exactly the output of a ``Conv2d`` (found by running one
sample through forward hooks in PyNative mode and comparing tensor identity) is folded into that
conv's weight and bias, and replaced by ``nn.Identity``. The folded network is checked against
the original on the sample; if they disagree (e.g. the conv output also feeds another branch),
the network is restored and ``DeployError`` is raised.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from automc.algorithms import replace_cell
from automc.deploy._parity import as_batch, first_output
from automc.errors import DeployError


@dataclass(frozen=True)
class FoldedPair:
    conv: str
    bn: str


def find_conv_bn_pairs(net, sample_input: np.ndarray) -> list[FoldedPair]:
    """Conv2d -> BatchNorm2d pairs where the BN consumes the conv's output directly (one call each)."""
    import mindspore as ms
    from mindspore import Tensor, nn

    convs = {name: c for name, c in net.cells_and_names() if isinstance(c, nn.Conv2d)}
    bns = {name: c for name, c in net.cells_and_names() if isinstance(c, nn.BatchNorm2d)}
    conv_out: dict[str, list] = {n: [] for n in convs}
    bn_in: dict[str, list] = {n: [] for n in bns}
    handles = []
    for name, cell in convs.items():
        handles.append(cell.register_forward_hook(lambda c, i, o, n=name: conv_out[n].append(o)))
    for name, cell in bns.items():
        handles.append(cell.register_forward_hook(lambda c, i, o, n=name: bn_in[n].append(i[0])))
    mode = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    try:
        net.set_train(False)
        net(Tensor(as_batch(sample_input, what="sample_input")))
    finally:
        for h in handles:
            h.remove()
        ms.set_context(mode=mode)
    # Outputs are kept alive in the lists above, so identity (`is`) is unambiguous.
    pairs = []
    used_convs: set[str] = set()
    for bn_name, seen in bn_in.items():
        if len(seen) != 1:
            continue  # unused or shared BN: not folded
        producers = [c for c, outs in conv_out.items() if len(outs) == 1 and outs[0] is seen[0]]
        if len(producers) == 1 and producers[0] not in used_convs:
            used_convs.add(producers[0])
            pairs.append(FoldedPair(conv=producers[0], bn=bn_name))
    return pairs


def fold_batchnorm(net, sample_input: np.ndarray, *, tol: float = 1e-4):
    """Fold every directly-following BatchNorm2d into its Conv2d, in place; return ``net``.

    ``sample_input`` (one batch, NCHW) is run once to find the pairs and once to check the result.
    """
    from mindspore import Parameter, Tensor, nn

    x = as_batch(sample_input, what="sample_input")
    net.set_train(False)
    before = first_output(net(Tensor(x)))
    pairs = find_conv_bn_pairs(net, x)
    cells = dict(net.cells_and_names())
    undo = []
    for pair in pairs:
        conv, bn = cells[pair.conv], cells[pair.bn]
        if bn.use_batch_statistics:
            continue  # a BN that always uses batch statistics is not a fixed affine map
        gamma = bn.gamma.asnumpy().astype(np.float64)
        beta = bn.beta.asnumpy().astype(np.float64)
        mean = bn.moving_mean.asnumpy().astype(np.float64)
        var = bn.moving_variance.asnumpy().astype(np.float64)
        scale = gamma / np.sqrt(var + float(bn.eps))
        w = conv.weight.asnumpy()
        b = conv.bias.asnumpy().astype(np.float64) if conv.has_bias else np.zeros(w.shape[0])
        new_w = (w.astype(np.float64) * scale.reshape(-1, *([1] * (w.ndim - 1)))).astype(w.dtype)
        new_b = ((b - mean) * scale + beta).astype(w.dtype)
        undo.append((pair, conv, bn, w.copy(), conv.bias, conv.bias.asnumpy().copy() if conv.has_bias else None))
        conv.weight.set_data(Tensor(new_w))
        if conv.has_bias:
            conv.bias.set_data(Tensor(new_b))
        else:
            conv.bias = Parameter(Tensor(new_b), name=f"{pair.conv}.bias")
            conv.has_bias = True
        replace_cell(net, pair.bn, nn.Identity())
    after = first_output(net(Tensor(x)))
    diff = float(np.max(np.abs(after.astype(np.float64) - before))) if before.size else 0.0
    if not np.isfinite(diff) or diff > tol * max(1.0, float(np.max(np.abs(before)))):
        for pair, conv, bn, w, bias, bias_data in reversed(undo):
            conv.weight.set_data(Tensor(w))
            if bias_data is not None:
                bias.set_data(Tensor(bias_data))
            else:
                conv.bias, conv.has_bias = None, False
            replace_cell(net, pair.bn, bn)
        raise DeployError(
            f"batch-norm folding changed the outputs by {diff:.3g} (> {tol}); a conv output probably "
            "feeds more than its BatchNorm. The network was restored; export it unfolded"
        )
    return net
