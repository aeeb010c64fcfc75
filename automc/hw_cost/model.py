"""The analytical cost model: per-layer roofline latency, energy, size, MACs and BitOPs.

Pure numpy over ``LayerTable.resolve(policies)`` (``(P, L)`` arrays), so thousands of
policies are costed per call without building a network. Per layer::

    compute_s = ops(padded to the compute tile) / peak(executed precision) / efficiency[class]
    memory_s  = (weight bytes at w_bits + activation bytes) / bandwidth / memory_efficiency
    layer_s   = max(compute_s, memory_s) + op_overhead[class]   (+ unfused BN/act passes)
                + repack_bytes / repack_bandwidth   (non-depthwise convs whose input channels are not a multiple of align.pack)
                + quantized_elements / quantize_rate (INT8 layers: their input and output elements converted)
    total     = sum(layer_s) + network_overhead
    energy    = static_power * layer_s + pJ_per_MAC(executed precision) * MACs + pJ_per_byte * DRAM bytes
                + pJ_per_MAC(widest precision) * converted INT8 elements   (+ static power over network_overhead)

Activations are stored at the executed width (int4/int8/fp16/fp32); tensors that fit the
on-chip buffer move at on-chip bandwidth (and cost no DRAM energy). A residual add fused into
its producer (``fuses_residual_add``) moves only its skip tensor. A measured LUT entry replaces a
layer's estimate.

Model size (``size_bytes``), exact and documented: per conv/dwconv/dense layer present,
``ceil(weights * w_bits / 8)`` (bit-packed, rounded up to whole bytes per layer) + 4 bytes
per bias (fp32; a folded batch-norm adds a bias) + 4 bytes per output channel (fp32 scale)
when ``w_bits < 32``. Pool, add, concat, shuffle, mul and act rows have no parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Sequence

import numpy as np

from automc.analysis.layer_table import COMPUTE_KINDS, LayerShapes, LayerTable
from automc.hw_cost.lut import LatencyLUT
from automc.hw_cost.specs import COST_CLASSES, PRECISION_BITS, DeviceSpec
from automc.policy import Policy

_CLASS_INDEX = {c: i for i, c in enumerate(COST_CLASSES)}
_MAX_BITS = 64


@dataclass(frozen=True)
class CostEstimate:
    """Costs of each policy on one device; per-policy arrays are ``(P,)``, per-layer ``(P, L)``."""

    device: str
    layer_names: tuple[str, ...]
    latency_ms: np.ndarray
    layer_latency_ms: np.ndarray
    energy_mj: np.ndarray
    layer_energy_mj: np.ndarray  # (P, L); energy_mj adds the static power over the network overhead
    size_bytes: np.ndarray
    macs: np.ndarray
    bitops: np.ndarray
    params: np.ndarray

    def __len__(self) -> int:
        return int(self.latency_ms.shape[0])

    def summary(self, index: int = 0) -> dict[str, float]:
        """Plain numbers of one policy (for MLflow metrics and reports)."""
        return {
            "latency_ms": float(self.latency_ms[index]),
            "energy_mj": float(self.energy_mj[index]),
            "size_bytes": int(self.size_bytes[index]),
            "macs": int(self.macs[index]),
            "bitops": int(self.bitops[index]),
            "params": int(self.params[index]),
        }


@dataclass(frozen=True)
class LayerTerms:
    """Roofline ingredients before device efficiencies are applied (used by calibration)."""

    cost_class: np.ndarray  # (L,) int index into COST_CLASSES
    present: np.ndarray  # (P, L) bool
    compute_s: np.ndarray  # (P, L) seconds at 100% of peak
    memory_s: np.ndarray  # (P, L) seconds at 100% of bandwidth
    unfused_memory_s: np.ndarray  # (P, L) extra BN/act passes when the device does not fuse
    unfused_ops: np.ndarray  # (P, L) number of those extra passes
    repack_bytes: np.ndarray  # (P, L) activation bytes repacked because channels miss align.pack
    quantized_elems: np.ndarray  # (P, L) input + output elements an INT8 layer quantizes / requantizes
    dram_bytes: np.ndarray  # (P, L)
    exec_bits: np.ndarray  # (P, L)
    req_bits: np.ndarray  # (P, L)
    size_bytes: np.ndarray  # (P, L) int64
    macs: np.ndarray  # (P, L)
    bitops: np.ndarray  # (P, L)
    params: np.ndarray  # (P, L)


@dataclass(frozen=True)
class DeviceParams:
    """The fitted/scaled knobs of the roofline, as arrays over ``COST_CLASSES``."""

    inv_efficiency: np.ndarray  # (C,)
    overhead_s: np.ndarray  # (C,)
    inv_memory_efficiency: float
    network_overhead_s: float
    repack_s_per_byte: float = 0.0
    quantize_s_per_elem: float = 0.0

    @classmethod
    def of(cls, spec: DeviceSpec) -> "DeviceParams":
        return cls(
            inv_efficiency=np.array([1.0 / spec.efficiency_of(c) for c in COST_CLASSES]),
            overhead_s=np.array([spec.overhead_us_of(c) * 1e-6 for c in COST_CLASSES]),
            inv_memory_efficiency=1.0 / spec.memory_efficiency,
            network_overhead_s=spec.network_overhead_us * 1e-6,
            repack_s_per_byte=1.0 / (spec.repack_gbps * 1e9) if spec.repack_gbps else 0.0,
            quantize_s_per_elem=1.0 / (spec.quantize_gelems * 1e9) if spec.quantize_gelems else 0.0,
        )


def _precision_tables(spec: DeviceSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per requested bit-width 0..64: executed bits, achievable peak ops/s (the datasheet peak
    times the precision's efficiency factor: ``(65,)`` when every cost class has the same
    factor, the common case and a 3x faster lookup, else ``(65, C)``), dynamic pJ per MAC."""
    cache = spec.__dict__.get("_automc_precision_cache")
    if cache is None:
        exec_bits = np.zeros(_MAX_BITS + 1, dtype=np.int64)
        peak = np.zeros((_MAX_BITS + 1, len(COST_CLASSES)))
        pj = np.zeros(_MAX_BITS + 1)
        for b in range(_MAX_BITS + 1):
            p = spec.exec_precision(max(b, 1))
            exec_bits[b] = PRECISION_BITS[p]
            peak[b] = [spec.peak_tops[p] * 1e12 * spec.precision_factor(p, c) for c in COST_CLASSES]
            pj[b] = spec.energy.pj_per_mac.get(p, 0.0)
        cache = (exec_bits, peak[:, 0].copy() if np.all(peak == peak[:, :1]) else peak, pj)
        object.__setattr__(spec, "_automc_precision_cache", cache)
    return cache


def _ceil_to(x: np.ndarray, multiple: int) -> np.ndarray:
    if multiple <= 1:
        return x
    return -(-x // multiple) * multiple


def cost_classes(table: LayerTable) -> np.ndarray:
    """Cost class index of each row: the kind, with 1x1 convolutions as ``conv1x1``."""
    out = np.empty(len(table), dtype=np.int64)
    for i, (k, kh, kw) in enumerate(zip(table.kind, table.kh, table.kw)):
        # a concat or a shuffle copies every element, a gate multiplies every element, an unfused
        # activation maps every element: memory traffic like an element-wise add, the add class
        name = "conv1x1" if (k == "conv" and kh == 1 and kw == 1) else "add" if k in ("concat", "shuffle", "mul", "act") else str(k)
        out[i] = _CLASS_INDEX[name]
    return out


def layer_size_bytes(shapes: LayerShapes, weights: np.ndarray | None = None) -> np.ndarray:
    """Exact stored bytes per layer ``(P, L)`` (see the module docstring for the rule)."""
    w_bits = np.minimum(shapes.w_bits, 32)
    weights = shapes.weights if weights is None else weights
    weight_bytes = -(-(weights * w_bits) // 8)
    bias_bytes = 4 * shapes.biases
    is_compute = np.isin(shapes.kind, COMPUTE_KINDS)[None, :] & shapes.present
    scale_bytes = np.where(is_compute & (shapes.w_bits < 32), 4 * shapes.cout, 0)
    return (weight_bytes + bias_bytes + scale_bytes).astype(np.int64)


def _static(a: np.ndarray) -> np.ndarray:
    """A column no policy changes as ``(1, L)``: ``resolve`` returns those as stride-0 views, and
    computing on one row instead of ``P`` identical ones is most of the model's speed."""
    return a[:1] if a.ndim == 2 and a.shape[0] > 1 and a.strides[0] == 0 else a


def layer_terms(table: LayerTable, shapes: LayerShapes, spec: DeviceSpec) -> LayerTerms:
    """Per-layer compute/memory seconds at full peak/bandwidth and the static costs."""
    exec_tab, peak_tab, _ = _precision_tables(spec)
    kind = shapes.kind
    is_compute = np.isin(kind, COMPUTE_KINDS)[None, :]
    is_dw = (kind == "dwconv")[None, :]
    is_pool = (kind == "pool")[None, :]
    is_add = (kind == "add")[None, :]
    full = shapes.cin.shape
    present = _static(shapes.present)
    if spec.elides_concat:  # the runtime writes the concat's inputs into its output: no copy, no op
        present = present & (kind != "concat")[None, :]
    if spec.fuses_complex_activations or not spec.fuses_conv_bn_act:  # fused, or charged as an unfused pass
        present = present & (kind != "act")[None, :]
    kh, kw, h_in, w_in, h_out, w_out = (_static(a) for a in (shapes.kh, shapes.kw, shapes.h_in, shapes.w_in,
                                                              shapes.h_out, shapes.w_out))

    req_bits = np.where(is_compute, np.maximum(shapes.w_bits, shapes.a_bits), shapes.a_bits)
    req_bits = np.clip(req_bits, 1, _MAX_BITS)
    cls = cost_classes(table)
    exec_bits = exec_tab[req_bits]
    peak = peak_tab[req_bits] if peak_tab.ndim == 1 else peak_tab[req_bits, cls[None, :]]

    a_cin, a_cout, a_hw = spec.align["cin"], spec.align["cout"], spec.align["hw"]
    groups = np.maximum(shapes.groups, 1)
    cin_g = shapes.cin // groups
    cout_g = np.maximum(shapes.cout // groups, 1)
    hw_out = h_out * w_out
    hw_pad = _ceil_to(hw_out, a_hw)
    k_area = kh * kw
    ch_pad = _ceil_to(shapes.cout, a_cout)
    # ops per layer by kind: dense/grouped conv and dense layers (tiles padded), depthwise, pool, add
    ops = np.where(is_compute & ~is_dw, 2 * groups * _ceil_to(cout_g, a_cout) * _ceil_to(cin_g, a_cin), 0)
    ops = (ops + np.where(is_dw, 2 * ch_pad, 0)) * (k_area * hw_pad)
    is_eltwise = is_add | np.isin(kind, ("mul", "act"))[None, :]
    ops = ops + ch_pad * np.where(is_pool, np.maximum(hw_out * k_area, h_in * w_in), np.where(is_eltwise, hw_out, 0))
    compute_s = np.where(present, ops / peak, 0.0)

    weights = np.where(is_compute & present, shapes.cout * cin_g * k_area, 0)
    size = layer_size_bytes(shapes, weights)
    act_bytes_per = exec_bits / 8.0
    out_elems = shapes.cout * hw_out
    in_elems = np.where(is_add, 2 * out_elems, shapes.cin * (h_in * w_in))
    in_bytes = in_elems * act_bytes_per
    out_bytes = out_elems * act_bytes_per
    act_bytes = in_bytes + out_bytes
    pack = spec.align.get("pack", 1)
    # a conv reading a ragged channel count gathers its im2col patches with a scalar tail loop;
    # a depthwise conv has no im2col (it runs channel blocks in place) and pays nothing extra
    ragged_in = is_compute & ~is_dw & present & (shapes.cin % pack != 0) & (kind != "dense")[None, :]
    repack_bytes = np.where(ragged_in, shapes.cin * (k_area * hw_out) * act_bytes_per, 0.0) if pack > 1 else np.zeros(full)
    # an INT8 layer quantizes its input and requantizes (or dequantizes) its output, element by element
    quantized_elems = np.where(is_compute & present & (exec_bits <= 8), in_elems + out_elems, 0).astype(np.float64)
    fits = act_bytes <= spec.onchip_buffer_kib * 1024.0
    bw = spec.memory_bandwidth_gbps * 1e9
    memory_s = np.where(present, size / bw + act_bytes / np.where(fits, spec.onchip_bw_gbps * 1e9, bw), 0.0)
    dram_bytes = np.where(present, size + np.where(fits, 0.0, act_bytes), 0.0)
    if spec.fuses_residual_add:  # the add runs in its producer's epilogue: no pass of its own; its op overhead stays
        compute_s = np.where(is_add, 0.0, compute_s)
        memory_s = np.where(is_add, 0.0, memory_s)
        # the epilogue reads the skip tensor; the sum is the producer's own output write
        dram_bytes = np.where(is_add & present, np.where(fits, 0.0, out_bytes), dram_bytes)
    present = np.broadcast_to(present, full)

    if spec.fuses_conv_bn_act:
        unfused_ops = np.zeros(full)
        unfused_memory_s = np.zeros(full)
    else:
        passes = (table.has_bn.astype(np.int64) + table.has_act.astype(np.int64))[None, :]
        unfused_ops = np.where(is_compute & present, passes, 0).astype(np.float64)
        unfused_memory_s = unfused_ops * 2 * out_bytes / np.where(fits, spec.onchip_bw_gbps * 1e9, bw)

    macs = weights * hw_out
    return LayerTerms(
        cost_class=cls,
        present=present,
        compute_s=compute_s,
        memory_s=memory_s,
        unfused_memory_s=unfused_memory_s,
        unfused_ops=unfused_ops,
        repack_bytes=repack_bytes,
        quantized_elems=np.broadcast_to(quantized_elems, full),
        dram_bytes=dram_bytes,
        exec_bits=exec_bits,
        req_bits=req_bits,
        size_bytes=size,
        macs=macs,
        bitops=macs * np.minimum(shapes.w_bits, 32) * np.minimum(shapes.a_bits, 32),
        params=weights + np.where(is_compute & present & shapes.has_bias, shapes.cout, 0),
    )


def layer_seconds(terms: LayerTerms, params: DeviceParams) -> np.ndarray:
    """Roofline latency per layer ``(P, L)`` in seconds for the given device knobs."""
    cls = terms.cost_class
    compute = terms.compute_s * params.inv_efficiency[cls][None, :]
    memory = terms.memory_s * params.inv_memory_efficiency
    t = np.maximum(compute, memory) + params.overhead_s[cls][None, :]
    t = t + terms.unfused_memory_s * params.inv_memory_efficiency + terms.unfused_ops * params.overhead_s[_CLASS_INDEX["add"]]
    t = t + terms.repack_bytes * params.repack_s_per_byte + terms.quantized_elems * params.quantize_s_per_elem
    return np.where(terms.present, t, 0.0)


def network_seconds(terms: LayerTerms, params: DeviceParams) -> np.ndarray:
    """Roofline latency per policy ``(P,)`` in seconds: its layers plus the fixed cost per inference."""
    return layer_seconds(terms, params).sum(axis=1) + params.network_overhead_s


def _as_policies(policies: Policy | Sequence[Policy] | None) -> list[Policy]:
    if policies is None:
        return [Policy()]
    if isinstance(policies, Policy):
        return [policies]
    return list(policies)


#: Policies costed per numpy pass: (CHUNK, L) arrays stay in the CPU cache, which makes the
#: model about 1.7x faster on 10,000 policies than one pass over all of them.
CHUNK = 512


def estimate(
    table: LayerTable,
    policies: Policy | Sequence[Policy] | None,
    spec: DeviceSpec,
    *,
    lut: LatencyLUT | None = None,
) -> CostEstimate:
    """Latency, energy, size, MACs, BitOPs and params of each policy on the device ``spec``.

    ``lut`` overrides the device's own measured table, if any. ``automc.hw_cost.estimate``
    also takes a device name or YAML path.
    """
    pols = _as_policies(policies)
    if len(pols) <= CHUNK:
        return _estimate(table, pols, spec, lut)
    parts = [_estimate(table, pols[i : i + CHUNK], spec, lut) for i in range(0, len(pols), CHUNK)]
    arrays = [f.name for f in fields(CostEstimate) if f.name not in ("device", "layer_names")]
    return CostEstimate(
        device=parts[0].device,
        layer_names=parts[0].layer_names,
        **{name: np.concatenate([getattr(part, name) for part in parts]) for name in arrays},
    )


def _estimate(table: LayerTable, policies: list[Policy], spec: DeviceSpec, lut: LatencyLUT | None) -> CostEstimate:
    shapes = table.resolve(policies)
    terms = layer_terms(table, shapes, spec)
    layer_ms = layer_seconds(terms, DeviceParams.of(spec)) * 1e3
    table_lut = lut if lut is not None else spec.lut
    if table_lut is not None and len(table_lut):
        measured = table_lut.lookup(shapes, terms.req_bits)
        layer_ms = np.where(np.isnan(measured) | ~terms.present, layer_ms, measured)
    overhead_ms = spec.network_overhead_us * 1e-3
    latency_ms = layer_ms.sum(axis=1) + overhead_ms
    _, _, pj_tab = _precision_tables(spec)
    # converting an element to or from INT8 is one scale multiply-add at the device's widest precision
    convert_pj = max(spec.energy.pj_per_mac.values(), default=0.0)
    layer_pj = (pj_tab[terms.req_bits] * terms.macs + spec.energy.pj_per_dram_byte * terms.dram_bytes
                + convert_pj * terms.quantized_elems)
    layer_energy_mj = spec.energy.static_power_w * layer_ms + layer_pj * 1e-9
    energy_mj = layer_energy_mj.sum(axis=1) + spec.energy.static_power_w * overhead_ms
    return CostEstimate(
        device=spec.name,
        layer_names=table.names,
        latency_ms=latency_ms,
        layer_latency_ms=layer_ms,
        energy_mj=energy_mj,
        layer_energy_mj=layer_energy_mj,
        size_bytes=terms.size_bytes.sum(axis=1),
        macs=terms.macs.sum(axis=1),
        bitops=terms.bitops.sum(axis=1),
        params=terms.params.sum(axis=1),
    )
