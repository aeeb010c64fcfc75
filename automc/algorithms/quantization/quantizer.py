"""Fake quantization with plain MindSpore ops (runs on CPU, GPU and Ascend; PyNative and graph mode).

Grids
-----
Weights, symmetric   signed narrow range ``[-(2^(b-1)-1), 2^(b-1)-1]``, zero point 0, one scale per
                     output channel: ``max|w| / qmax`` (or, with ``mse=True``, that range shrunk by
                     the factor that minimises the channel's squared error: clips outliers).
Weights, asymmetric  ``[0, 2^b-1]``, per-channel scale and integer zero point covering ``[min, max]``
                     (the range is widened to include 0 so that 0 is exact).
Inputs, symmetric    zero point 0; unsigned grid ``[0, 2^b-1]`` when the observed minimum is >= 0
                     (e.g. after ReLU), otherwise the signed narrow grid. One scale per tensor.
Inputs, asymmetric   ``[0, 2^b-1]`` with a per-tensor zero point.

Gradients use the straight-through estimator: the forward value is the quantize-dequantize result,
the backward pass sees identity (weights) or a clip to the representable range (inputs: gradient
1 inside, 0 outside). In inference mode the plain quantize-dequantize value is returned, so the
deployment form (integer weights + scales) computes bit-for-bit the same function.
"""

from __future__ import annotations

from mindspore import ops

from automc.algorithms.quantization._bits import MAX_BITS, MIN_BITS, VALID_BITS_TEXT, check_bits  # noqa: F401

_EPS = 1e-12


def signed_qmax(bits: int) -> int:
    return 2 ** (bits - 1) - 1


def unsigned_qmax(bits: int) -> int:
    return 2**bits - 1


def _channel_view(t, n_dims: int):
    """(C,) -> (C, 1, 1, ...) so it broadcasts against a weight of ``n_dims`` dimensions."""
    return t.reshape((-1,) + (1,) * (n_dims - 1))


MSE_ALPHAS = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.6, 0.5, 0.4, 0.3)


def weight_qparams(w, bits: int, symmetric: bool, mse: bool = False):
    """Per-output-channel (axis 0) ``scale, zero_point, qmin, qmax``; tensors shaped (C, 1, ...).

    The grid covers each channel's range (``mse=False``), or that range shrunk by the factor of
    ``MSE_ALPHAS`` that minimises the channel's squared quantization error (``mse=True``: clips
    outliers, which matters at 2-4 bits; 1.0 is a candidate, so the error never grows).
    """
    w = ops.stop_gradient(w)
    flat = w.reshape((w.shape[0], -1))
    n = w.ndim
    if symmetric:
        qmax = float(signed_qmax(bits))
        qmin = -qmax
        lo = -ops.abs(flat).max(axis=1)
        hi = -lo
    else:
        qmin, qmax = 0.0, float(unsigned_qmax(bits))
        lo = ops.minimum(flat.min(axis=1), 0.0)
        hi = ops.maximum(flat.max(axis=1), 0.0)
    if mse:
        alphas = ops.stack([ops.full_like(lo, a) for a in MSE_ALPHAS])  # (K, C)
        scale_k = ops.maximum((hi - lo) * alphas / (qmax - qmin), _EPS)
        zero_k = ops.clamp(ops.round(-lo * alphas / scale_k), 0.0, qmax) if not symmetric else ops.zeros_like(scale_k)
        s3, z3 = scale_k.expand_dims(2), zero_k.expand_dims(2)
        err = ((dequantize(quantize_int(flat.expand_dims(0), s3, z3, qmin, qmax), s3, z3) - flat) ** 2).sum(axis=2)
        pick = ops.one_hot(err.argmin(axis=0), len(MSE_ALPHAS), ops.ones((), w.dtype), ops.zeros((), w.dtype)).T
        scale, zero = (scale_k * pick).sum(axis=0), (zero_k * pick).sum(axis=0)
    else:
        scale = ops.maximum((hi - lo) / (qmax - qmin), _EPS)
        zero = ops.zeros_like(scale) if symmetric else ops.clamp(ops.round(-lo / scale), 0.0, qmax)
    return _channel_view(scale, n), _channel_view(zero, n), qmin, qmax


def act_qparams(a_min, a_max, bits: int, symmetric: bool):
    """Per-tensor ``scale, zero_point, qmin, qmax`` (scalar tensors) from an observed range."""
    a_min = ops.stop_gradient(a_min)
    a_max = ops.stop_gradient(a_max)
    u_max = float(unsigned_qmax(bits))
    if symmetric:
        s_max = float(signed_qmax(bits))
        nonneg = a_min >= 0
        qmax = ops.where(nonneg, ops.full_like(a_max, u_max), ops.full_like(a_max, s_max))
        qmin = ops.where(nonneg, ops.zeros_like(a_max), -qmax)
        absmax = ops.maximum(ops.abs(a_min), ops.abs(a_max))
        scale = ops.maximum(absmax / qmax, _EPS)
        return scale, ops.zeros_like(scale), qmin, qmax
    lo = ops.minimum(a_min, 0.0)
    hi = ops.maximum(a_max, 0.0)
    scale = ops.maximum((hi - lo) / u_max, _EPS)
    zero = ops.clamp(ops.round(-lo / scale), 0.0, u_max)
    return scale, zero, ops.zeros_like(scale), ops.full_like(scale, u_max)


def quantize_int(x, scale, zero, qmin, qmax):
    """Integer codes (as float values) of ``x`` on the grid."""
    return ops.clamp(ops.round(x / scale) + zero, qmin, qmax)


def dequantize(q, scale, zero):
    return (q - zero) * scale


def fake_quant(x, scale, zero, qmin, qmax, *, ste: bool, clip_grad: bool = True):
    """Quantize-dequantize ``x``. With ``ste`` the gradient passes straight through: everywhere
    (``clip_grad=False``, used for weights, which lie inside their range by construction) or
    only inside the representable range (``clip_grad=True``, used for inputs)."""
    deq = dequantize(quantize_int(x, scale, zero, qmin, qmax), scale, zero)
    if not ste:
        return deq
    if clip_grad:
        lo = ops.stop_gradient((qmin - zero) * scale)
        hi = ops.stop_gradient((qmax - zero) * scale)
        x = ops.minimum(ops.maximum(x, lo), hi)
    return x + ops.stop_gradient(deq - x)
