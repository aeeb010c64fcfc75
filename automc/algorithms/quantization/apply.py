"""Apply a mixed-precision Policy to a network, calibrate it, and convert it to deployment form.

Typical use::

    qnet = quantize(net, policy, calib_x=x_train[:256])          # PTQ: ranges from 4 batches
    train(qnet, x_train, y_train, TrainSettings(epochs=2, lr=0.005, distill_weight=0.5),
          teacher=net)                                            # optional QAT fine-tune
    deploy = to_deploy_form(qnet)                                 # int weights + scales
    mindspore.export(deploy, sample, file_name="model", file_format="MINDIR")
"""

from __future__ import annotations

import copy
from typing import Mapping

import numpy as np
import mindspore as ms
from mindspore import nn

from automc.algorithms._surgery import rename_parameters, replace_cell
from automc.algorithms.quantization.quantizer import act_qparams, check_bits, weight_qparams
from automc.algorithms.quantization.layers import (
    WEIGHT_RANGES,
    DeployConv2d,
    DeployDense,
    QuantConv2d,
    QuantDense,
    fold_batchnorm,
)
from automc.errors import CompressionError, ConfigError, DeployError
from automc.policy import FLOAT_BITS, Policy

_QUANT_TYPES = (QuantConv2d, QuantDense)
_DEPLOY_TYPES = (DeployConv2d, DeployDense)


def compressible_layers(net: nn.Cell) -> dict[str, nn.Cell]:
    """``{name: cell}`` of every ``nn.Conv2d`` (depthwise included) and ``nn.Dense``, in network order.
    Names are those of ``net.cells_and_names()``, the keys of ``Policy.w_bits``/``a_bits``."""
    return {n: c for n, c in net.cells_and_names() if isinstance(c, (nn.Conv2d, nn.Dense) + _QUANT_TYPES)}


def validate_policy(net: nn.Cell, policy: Policy) -> dict[str, tuple[int, int]]:
    """``{layer: (w_bits, a_bits)}`` for every compressible layer (missing entries = 32), or ConfigError."""
    layers = compressible_layers(net)
    for section in ("w_bits", "a_bits"):
        entries = getattr(policy, section)
        unknown = sorted(set(entries) - set(layers))
        if unknown:
            raise ConfigError(
                f"policy {section} names {unknown[0]!r}, which is not a Conv2d/Dense layer of the network; "
                f"valid layers: {', '.join(layers)}"
            )
        for name, bits in entries.items():
            check_bits(bits, where=f"policy {section}[{name!r}]")
    return {n: (int(policy.w_bits.get(n, FLOAT_BITS)), int(policy.a_bits.get(n, FLOAT_BITS))) for n in layers}


def find_bn_pairs(net: nn.Cell, sample: np.ndarray) -> dict[str, str]:
    """``{conv_name: bn_name}`` for every BatchNorm2d whose input is exactly a Conv2d's output.

    Found by running ``sample`` through ``net`` once in PyNative mode with forward hooks. A conv
    whose output is also read by another cell is left out (folding would change that reader); reads
    by functional ops (e.g. ``ops.add``) are invisible to hooks, so such nets need explicit pairs.
    """
    if ms.get_context("mode") != ms.PYNATIVE_MODE:
        raise CompressionError("finding conv->batch-norm pairs needs PyNative mode; pass pairs={conv: bn} instead")
    produced: dict[int, str] = {}
    readers: dict[int, list[str]] = {}
    bn_input: dict[str, int] = {}
    handles = []
    keep_alive: list = []  # every seen tensor stays alive so that ids are not reused during the pass

    def hook(name: str, cell: nn.Cell):
        def fn(_cell, inputs, output):
            keep_alive.append((inputs, output))
            if isinstance(cell, nn.Conv2d):
                produced[id(output)] = name
            if isinstance(cell, nn.BatchNorm2d):
                bn_input[name] = id(inputs[0])
            for t in inputs:
                readers.setdefault(id(t), []).append(name)
        return fn

    for name, cell in net.cells_and_names():
        if name and not cell.name_cells():  # leaf cells only
            handles.append(cell.register_forward_hook(hook(name, cell)))
    was_training = net.training
    net.set_train(False)
    try:
        keep_alive.append(net(ms.Tensor(np.asarray(sample[:2], dtype=np.float32))))
    finally:
        for h in handles:
            h.remove()
        net.set_train(was_training)
    pairs = {}
    for bn_name, tid in bn_input.items():
        conv_name = produced.get(tid)
        if conv_name is not None and len(readers.get(tid, [])) == 1:
            pairs[conv_name] = bn_name
    return pairs


def quantize(
    net: nn.Cell,
    policy: Policy,
    *,
    symmetric: bool = True,
    calib_x: np.ndarray | None = None,
    calib_batches: int = 4,
    batch_size: int = 64,
    fold_bn: bool = True,
    pairs: Mapping[str, str] | None = None,
    sample: np.ndarray | None = None,
    ema_decay: float = 0.95,
    weight_range: str = "mse",
) -> nn.Cell:
    """A quantization-aware copy of ``net`` under ``policy`` (``net`` itself is not changed).

    Every Conv2d/Dense with ``w_bits`` or ``a_bits`` below 32 becomes a QuantConv2d/QuantDense.
    With ``fold_bn`` a BatchNorm2d that directly follows such a conv is folded into it (inference
    statistics) and replaced by ``nn.Identity``; pairs come from ``pairs`` (``{conv: bn}``) or are
    traced with hooks on ``sample`` (default: ``calib_x``). With ``calib_x`` the input ranges are
    calibrated (min/max over ``calib_batches`` batches): post-training quantization. For QAT, call
    ``automc.training.train`` on the result afterwards (the observers then follow an EMA).
    ``weight_range``: ``"mse"`` (default) clips each channel's weight range to the factor that
    minimises its quantization error (much better at 2-4 bits), ``"minmax"`` covers the full range.
    """
    if weight_range not in WEIGHT_RANGES:
        raise ConfigError(f"weight_range {weight_range!r} is invalid; use one of {', '.join(WEIGHT_RANGES)}")
    layer_bits = validate_policy(net, policy)
    quantized = [n for n, (wb, ab) in layer_bits.items() if wb < FLOAT_BITS or ab < FLOAT_BITS]
    qnet = copy.deepcopy(net)
    qnet.set_train(False)
    cells = dict(qnet.cells_and_names())

    bn_of: dict[str, str] = {}
    if fold_bn and any(isinstance(c, nn.BatchNorm2d) for c in cells.values()):
        if pairs is not None:
            bn_of = dict(pairs)
            for conv_name, bn_name in bn_of.items():
                if not isinstance(cells.get(conv_name), nn.Conv2d) or not isinstance(cells.get(bn_name), nn.BatchNorm2d):
                    raise ConfigError(f"pairs[{conv_name!r}] = {bn_name!r} is not a (Conv2d, BatchNorm2d) pair of the network")
        else:
            data = sample if sample is not None else calib_x
            if data is None:
                raise CompressionError(
                    "the network has batch-norm layers to fold: pass calib_x= or sample= (to trace conv->bn pairs), "
                    "pairs={conv: bn}, or fold_bn=False"
                )
            bn_of = find_bn_pairs(qnet, data)

    for name in quantized:
        w_bits, a_bits = layer_bits[name]
        cell = cells[name]
        if isinstance(cell, _QUANT_TYPES):
            raise CompressionError(f"layer {name!r} is already quantized; quantize the float network instead")
        kwargs = dict(w_bits=w_bits, a_bits=a_bits, symmetric=symmetric, ema_decay=ema_decay, weight_range=weight_range)
        if isinstance(cell, nn.Conv2d):
            if name in bn_of:
                cell = fold_batchnorm(cell, cells[bn_of[name]])
                replace_cell(qnet, bn_of[name], nn.Identity())
            new = QuantConv2d(cell, **kwargs)
        else:
            new = QuantDense(cell, **kwargs)
        replace_cell(qnet, name, new)
    rename_parameters(qnet)
    if calib_x is not None:
        calibrate(qnet, calib_x, batches=calib_batches, batch_size=batch_size)
    return qnet


def calibrate(qnet: nn.Cell, x: np.ndarray, *, batches: int = 4, batch_size: int = 64) -> nn.Cell:
    """Reset the input observers and set them to min/max over the first ``batches`` batches of ``x``.

    Weights are fake-quantized during the pass; inputs are observed but not quantized.
    """
    qcells = [c for _, c in qnet.cells_and_names() if isinstance(c, _QUANT_TYPES)]
    n = min(len(x), batches * batch_size)
    if n == 0:
        raise ConfigError("calibration needs at least one sample (calib_x is empty)")
    was_training = qnet.training
    qnet.set_train(False)
    for c in qcells:
        c.a_ready.set_data(ms.Tensor(0.0, ms.float32))
        c.calibrating = True
    try:
        for start in range(0, n, batch_size):
            qnet(ms.Tensor(np.asarray(x[start : min(n, start + batch_size)], dtype=np.float32)))
    finally:
        for c in qcells:
            c.calibrating = False
        qnet.set_train(was_training)
    return qnet


def to_deploy_form(qnet: nn.Cell) -> nn.Cell:
    """A copy of ``qnet`` with every QuantConv2d/QuantDense replaced by its integer deployment form.

    Weights become int8 (<= 8 bits) or int16 codes with fp32 per-channel scale and zero point; input
    quantization stays an explicit quantize-dequantize with the calibrated scale. In inference mode
    the result computes the same function as ``qnet``, so it exports to MindIR as is.
    Raises ``DeployError`` if a layer quantizes its input but its range was never observed.
    """
    dnet = copy.deepcopy(qnet)
    dnet.set_train(False)
    for name, cell in list(dnet.cells_and_names()):
        if not isinstance(cell, _QUANT_TYPES):
            continue
        if cell.a_bits < FLOAT_BITS and float(cell.a_ready.asnumpy()) <= 0:
            raise DeployError(
                f"layer {name!r} quantizes its input to {cell.a_bits} bits but has no calibrated range; "
                "call quantize(..., calib_x=...) or calibrate() or fine-tune before converting"
            )
        replace_cell(dnet, name, DeployConv2d(cell) if isinstance(cell, QuantConv2d) else DeployDense(cell))
    rename_parameters(dnet)
    dnet.set_train(False)
    return dnet


def quant_params(net: nn.Cell) -> dict[str, dict]:
    """``{layer: {w_bits, a_bits, symmetric, w_scale, w_zero_point, a_scale, a_zero_point}}`` for every
    quantized layer of a quantization-aware or deployment-form network (plain lists/floats/ints, JSON-ready;
    scale entries are None where the layer stays float or its input range is not calibrated)."""
    out: dict[str, dict] = {}
    for name, cell in net.cells_and_names():
        if isinstance(cell, _QUANT_TYPES):
            w_scale = w_zero = a_scale = a_zero = None
            if cell.w_bits < FLOAT_BITS:
                s, z, _, _ = weight_qparams(cell.weight, cell.w_bits, cell.symmetric, cell.mse)
                w_scale, w_zero = s.asnumpy().ravel(), z.asnumpy().ravel()
            if cell.a_bits < FLOAT_BITS and float(cell.a_ready.asnumpy()) > 0:
                s, z, _, _ = act_qparams(cell.a_min, cell.a_max, cell.a_bits, cell.symmetric)
                a_scale, a_zero = float(s.asnumpy()), float(z.asnumpy())
        elif isinstance(cell, _DEPLOY_TYPES):
            w_scale = w_zero = a_scale = a_zero = None
            if cell.w_bits < FLOAT_BITS:
                w_scale = cell.w_scale.asnumpy().ravel()
                offset = 0.0 if cell.symmetric else float(2 ** (cell.w_bits - 1))
                w_zero = cell.w_zero_point.asnumpy().ravel() + offset
            if cell.a_bits < FLOAT_BITS:
                a_scale, a_zero = float(cell.a_scale.asnumpy()), float(cell.a_zero_point.asnumpy())
        else:
            continue
        out[name] = {
            "w_bits": int(cell.w_bits),
            "a_bits": int(cell.a_bits),
            "symmetric": bool(cell.symmetric),
            "w_scale": None if w_scale is None else [float(v) for v in w_scale],
            "w_zero_point": None if w_zero is None else [int(round(float(v))) for v in w_zero],
            "a_scale": a_scale,
            "a_zero_point": None if a_zero is None else int(round(a_zero)),
        }
    return out


def to_float_form(dnet: nn.Cell) -> nn.Cell:
    """A copy of a deployment-form network with every integer layer as a plain ``nn.Conv2d`` /
    ``nn.Dense`` holding its dequantized weight (codes x scale) and its bias; input quantization is
    dropped. The graph a runtime's quantizer starts from: ONNX QDQ export and Lite FULL_QUANT
    conversion quantize exactly these weights again, layer by layer."""
    fnet = copy.deepcopy(dnet)
    fnet.set_train(False)
    for name, cell in list(fnet.cells_and_names()):
        if not isinstance(cell, _DEPLOY_TYPES):
            continue
        weight = cell.dequantized_weight()
        if isinstance(cell, DeployConv2d):
            new = nn.Conv2d(cell.in_channels, cell.out_channels, cell.kernel_size, stride=cell.stride,
                            pad_mode=cell.pad_mode, padding=cell.padding, dilation=cell.dilation, group=cell.group,
                            has_bias=cell.has_bias, data_format=cell.data_format)
        else:
            new = nn.Dense(cell.in_channels, cell.out_channels, has_bias=cell.has_bias,
                           activation=cell.activation if cell.activation_flag else None)
        new.weight.set_data(ms.Tensor(weight))
        if cell.has_bias:
            new.bias.set_data(cell.bias.data.copy())
        replace_cell(fnet, name, new)
    rename_parameters(fnet)
    fnet.set_train(False)
    return fnet
