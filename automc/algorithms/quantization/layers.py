"""Quantization-aware cells (training form) and their integer deployment form.

``QuantConv2d`` / ``QuantDense`` replace ``nn.Conv2d`` (depthwise included) / ``nn.Dense``. Each has
its own ``w_bits`` and ``a_bits`` (32 = float). The weight is fake-quantized per output channel on
every forward pass; the layer *input* is fake-quantized per tensor with a range held by an observer:
three non-trainable Parameters ``a_min``, ``a_max``, ``a_ready`` (so ranges survive checkpoints and
export). The observer follows an exponential moving average while training (QAT) and a running
min/max while ``calibrating`` (PTQ); in inference it is frozen.

``DeployConv2d`` / ``DeployDense`` hold the weight as int8/int16 codes plus fp32 per-channel scale and
zero point, dequantize in ``construct`` and quantize-dequantize the input with the frozen scale:
the same function as the quantization-aware cell in inference mode, without fake-quant nodes.

Batch-norm: ``fold_batchnorm(conv, bn)`` returns one float conv computing ``bn(conv(x))`` in inference
mode (moving statistics folded into weight and bias). ``quantize`` folds before quantizing, so QAT
fine-tunes the folded weights without a batch-norm (simple and exactly deployable; the batch
statistics are frozen at the float baseline's values).
"""

from __future__ import annotations

import numpy as np
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops

from automc.algorithms.quantization.quantizer import (
    act_qparams,
    check_bits,
    fake_quant,
    quantize_int,
    weight_qparams,
)
from automc.errors import ConfigError
from automc.policy import FLOAT_BITS

WEIGHT_RANGES = ("mse", "minmax")


def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new ``nn.Conv2d`` (with bias) equal to ``bn(conv(x))`` with ``bn`` in inference mode."""
    w = conv.weight.asnumpy().astype(np.float64)
    b = conv.bias.asnumpy().astype(np.float64) if conv.has_bias else np.zeros(w.shape[0])
    gamma = bn.gamma.asnumpy().astype(np.float64)
    beta = bn.beta.asnumpy().astype(np.float64)
    mean = bn.moving_mean.asnumpy().astype(np.float64)
    var = bn.moving_variance.asnumpy().astype(np.float64)
    factor = gamma / np.sqrt(var + float(bn.eps))
    folded = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        pad_mode=conv.pad_mode,
        padding=conv.padding,
        dilation=conv.dilation,
        group=conv.group,
        has_bias=True,
        data_format=conv.data_format,
    )
    folded.weight.set_data(Tensor((w * factor.reshape((-1,) + (1,) * (w.ndim - 1))).astype(np.float32)))
    folded.bias.set_data(Tensor((beta + (b - mean) * factor).astype(np.float32)))
    return folded


#: what a quantized or deployment cell takes over from the cell it replaces: shapes and ops
_CONV_ATTRS = ("in_channels", "out_channels", "kernel_size", "stride", "pad_mode", "padding", "dilation", "group",
               "data_format", "conv2d", "bias_add")
_DENSE_ATTRS = ("in_channels", "out_channels", "activation_flag", "activation")


class _InputQuant(nn.Cell):
    """Shared parts: bit-widths, input observer and the fake-quant of input and weight."""

    _COPIED: tuple[str, ...] = ()  # _CONV_ATTRS or _DENSE_ATTRS
    _SHAPE = ""  # the repr of the layer's shape, formatted with c=self

    def __init__(self, layer: nn.Cell, *, w_bits: int, a_bits: int, symmetric: bool = True, ema_decay: float = 0.95,
                 weight_range: str = "mse"):
        """Take over ``layer``'s ``_COPIED`` attributes, weight and bias; set up the bit-widths and the
        input observer."""
        super().__init__()
        for attr in self._COPIED:
            setattr(self, attr, getattr(layer, attr))
        self.has_bias = bool(layer.has_bias)
        self.weight = Parameter(layer.weight.data.copy(), name="weight")
        if self.has_bias:
            self.bias = Parameter(layer.bias.data.copy(), name="bias")
        self.w_bits = check_bits(w_bits, where="w_bits")
        self.a_bits = check_bits(a_bits, where="a_bits")
        self.symmetric = bool(symmetric)
        if weight_range not in WEIGHT_RANGES:
            raise ConfigError(f"weight_range {weight_range!r} is invalid; use one of {', '.join(WEIGHT_RANGES)}")
        self.weight_range = weight_range
        self.mse = weight_range == "mse"
        self.ema_decay = float(ema_decay)
        self.calibrating = False
        self.a_min = Parameter(Tensor(0.0, ms.float32), name="a_min", requires_grad=False)
        self.a_max = Parameter(Tensor(0.0, ms.float32), name="a_max", requires_grad=False)
        self.a_ready = Parameter(Tensor(0.0, ms.float32), name="a_ready", requires_grad=False)

    def _observe(self, x, minmax: bool):
        cur_min = ops.stop_gradient(x.min())
        cur_max = ops.stop_gradient(x.max())
        ready = self.a_ready > 0
        if minmax:
            new_min = ops.where(ready, ops.minimum(self.a_min, cur_min), cur_min)
            new_max = ops.where(ready, ops.maximum(self.a_max, cur_max), cur_max)
        else:
            d = self.ema_decay
            new_min = ops.where(ready, d * self.a_min + (1 - d) * cur_min, cur_min)
            new_max = ops.where(ready, d * self.a_max + (1 - d) * cur_max, cur_max)
        ops.assign(self.a_min, new_min)
        ops.assign(self.a_max, new_max)
        ops.assign(self.a_ready, ops.ones_like(self.a_ready))
        return new_min, new_max

    def _quant_input(self, x):
        if self.a_bits >= FLOAT_BITS:
            return x
        if self.calibrating:
            self._observe(x, True)
            return x
        if self.training:
            a_min, a_max = self._observe(x, False)
            scale, zero, qmin, qmax = act_qparams(a_min, a_max, self.a_bits, self.symmetric)
            return fake_quant(x, scale, zero, qmin, qmax, ste=True, clip_grad=True)
        scale, zero, qmin, qmax = act_qparams(self.a_min, self.a_max, self.a_bits, self.symmetric)
        xq = fake_quant(x, scale, zero, qmin, qmax, ste=False)
        return ops.where(self.a_ready > 0, xq, x)

    def _quant_weight(self):
        if self.w_bits >= FLOAT_BITS:
            return self.weight
        scale, zero, qmin, qmax = weight_qparams(self.weight, self.w_bits, self.symmetric, self.mse)
        return fake_quant(self.weight, scale, zero, qmin, qmax, ste=self.training, clip_grad=False)

    def extend_repr(self) -> str:
        return (
            f"{self._SHAPE.format(c=self)}, w_bits={self.w_bits}, a_bits={self.a_bits}, symmetric={self.symmetric}, "
            f"weight_range={self.weight_range}"
        )


class QuantConv2d(_InputQuant):
    """``nn.Conv2d`` with per-channel weight and per-tensor input fake quantization."""

    _COPIED = _CONV_ATTRS
    _SHAPE = "{c.in_channels}, {c.out_channels}, kernel_size={c.kernel_size}, group={c.group}"

    def construct(self, x):
        return _conv_forward(self, self._quant_input(x), self._quant_weight())


class QuantDense(_InputQuant):
    """``nn.Dense`` with per-output-unit weight and per-tensor input fake quantization."""

    _COPIED = _DENSE_ATTRS
    _SHAPE = "in_channels={c.in_channels}, out_channels={c.out_channels}"

    def construct(self, x):
        return _dense_forward(self, self._quant_input(x), self._quant_weight())


def _conv_forward(cell, x, w):
    out = cell.conv2d(x, w)
    if cell.has_bias:
        out = cell.bias_add(out, cell.bias)
    return out


def _dense_forward(cell, x, w):
    x_shape = x.shape
    if len(x_shape) != 2:
        x = x.reshape((-1, x_shape[-1]))
    x = ops.matmul(x, w.T)
    if cell.has_bias:
        x = x + cell.bias
    if cell.activation_flag:
        x = cell.activation(x)
    if len(x_shape) != 2:
        x = x.reshape(x_shape[:-1] + (x.shape[-1],))
    return x


# --------------------------------------------------------------------------- deployment form
class _DeployBase(nn.Cell):
    """Integer weights (codes + per-channel fp32 scale/zero point) and a frozen input QDQ."""

    _COPIED: tuple[str, ...] = ()  # _CONV_ATTRS or _DENSE_ATTRS

    def __init__(self, qcell: _InputQuant):
        super().__init__()
        for attr in self._COPIED:
            setattr(self, attr, getattr(qcell, attr))
        self.has_bias = qcell.has_bias
        if self.has_bias:
            self.bias = Parameter(qcell.bias.data.copy(), name="bias", requires_grad=False)
        self.w_bits, self.a_bits, self.symmetric = qcell.w_bits, qcell.a_bits, qcell.symmetric
        self.weight_range = qcell.weight_range
        if self.w_bits < FLOAT_BITS:
            scale, zero, qmin, qmax = weight_qparams(qcell.weight, self.w_bits, self.symmetric, qcell.mse)
            codes = quantize_int(qcell.weight, scale, zero, qmin, qmax).asnumpy()
            # Asymmetric codes live in [0, 2^b-1]; shift by 2^(b-1) so they fit a signed b-bit type.
            offset = 0.0 if self.symmetric else float(2 ** (self.w_bits - 1))
            int_type = np.int8 if self.w_bits <= 8 else np.int16
            self.w_int = Parameter(Tensor((codes - offset).astype(int_type)), name="w_int", requires_grad=False)
            self.w_scale = Parameter(Tensor(scale.asnumpy()), name="w_scale", requires_grad=False)
            self.w_zero_point = Parameter(Tensor(zero.asnumpy() - offset), name="w_zero_point", requires_grad=False)
        else:
            self.weight = Parameter(qcell.weight.data.copy(), name="weight", requires_grad=False)
        if self.a_bits < FLOAT_BITS:
            scale, zero, qmin, qmax = act_qparams(qcell.a_min, qcell.a_max, self.a_bits, self.symmetric)
            self.a_scale = Parameter(Tensor(scale.asnumpy()), name="a_scale", requires_grad=False)
            self.a_zero_point = Parameter(Tensor(zero.asnumpy()), name="a_zero_point", requires_grad=False)
            self.a_qmin = Parameter(Tensor(qmin.asnumpy()), name="a_qmin", requires_grad=False)
            self.a_qmax = Parameter(Tensor(qmax.asnumpy()), name="a_qmax", requires_grad=False)

    def _weight(self):
        if self.w_bits >= FLOAT_BITS:
            return self.weight
        return (ops.cast(self.w_int, ms.float32) - self.w_zero_point) * self.w_scale

    def dequantized_weight(self) -> np.ndarray:
        """The weight this layer computes with: codes x scale (float32), or the float weight."""
        return self._weight().asnumpy().astype(np.float32)

    def _input(self, x):
        if self.a_bits >= FLOAT_BITS:
            return x
        q = ops.clamp(ops.round(x / self.a_scale) + self.a_zero_point, self.a_qmin, self.a_qmax)
        return (q - self.a_zero_point) * self.a_scale

    def extend_repr(self) -> str:
        return f"w_bits={self.w_bits}, a_bits={self.a_bits}, symmetric={self.symmetric}"


class DeployConv2d(_DeployBase):
    _COPIED = _CONV_ATTRS

    def construct(self, x):
        return _conv_forward(self, self._input(x), self._weight())


class DeployDense(_DeployBase):
    _COPIED = _DENSE_ATTRS

    def construct(self, x):
        return _dense_forward(self, self._input(x), self._weight())
