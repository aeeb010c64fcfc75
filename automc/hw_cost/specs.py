"""Device specifications: the ``DeviceSpec`` record and its YAML form (plain data).

A device file lists peak throughput per precision, memory bandwidth, on-chip buffer size,
per-op overheads, the tile/lane alignment of the compute units and the efficiency factors
the roofline model uses; every published number cites its source under ``sources:``.
Built-in devices live in ``automc/hw_cost/devices/<name>.yaml``. A file may name a fitted
calibration profile (``profile:``); ``read_device`` returns its path, and the device registry
(``automc.hw_cost.registry``) applies it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from automc.errors import ConfigError
from automc.hw_cost.lut import LatencyLUT, load_lut

DEVICES_DIR = Path(__file__).with_name("devices")

#: Precisions a device may list, with their bit-widths (the executed width of a layer).
PRECISION_BITS = {"int4": 4, "int8": 8, "fp16": 16, "fp32": 32}
#: Calibration classes: layer kinds, with 1x1 convolutions apart from k x k ones.
COST_CLASSES = ("conv", "conv1x1", "dwconv", "dense", "pool", "add")

_REQUIRED = ("name", "kind", "peak_tops", "memory_bandwidth_gbps", "onchip_buffer_kib", "launch_overhead_us", "align")
_OPTIONAL = (
    "description",
    "onchip_bandwidth_gbps",
    "fuses_conv_bn_act",
    "elides_concat",
    "fuses_residual_add",
    "fuses_complex_activations",
    "efficiency",
    "precision_efficiency",
    "memory_efficiency",
    "op_overhead_us",
    "network_overhead_us",
    "repack_gbps",
    "quantize_gelems",
    "energy",
    "lut",
    "sources",
    "notes",
    "calibrated_from",
    "calibration",
    "profile",
)
_DEVICE_KINDS = ("cpu", "gpu", "npu", "fpga", "asic")
_DEFAULT_EFFICIENCY = {"conv": 0.5, "conv1x1": 0.5, "dwconv": 0.15, "dense": 0.3, "pool": 0.05, "add": 0.05}


@dataclass(frozen=True)
class EnergySpec:
    """Energy terms: static power while busy, dynamic energy per MAC and per DRAM byte."""

    static_power_w: float = 0.0
    pj_per_mac: Mapping[str, float] = field(default_factory=dict)
    pj_per_dram_byte: float = 0.0


def precision_factor(precision_efficiency: Mapping[str, Any], precision: str, cost_class: str) -> float:
    """The factor ``precision_efficiency`` (``precision -> number`` or ``-> {class -> number}``)
    puts on ``cost_class`` at ``precision``: 1 where it names none."""
    value = precision_efficiency.get(precision, 1.0)
    return float(value.get(cost_class, 1.0) if isinstance(value, Mapping) else value)


@dataclass(frozen=True)
class DeviceSpec:
    """One device as the cost model sees it (all throughput figures are dense, no sparsity).

    ``peak_tops`` maps a precision (``fp32``/``fp16``/``int8``/``int4``) to peak tera-ops/s
    (1 MAC = 2 ops); a precision the device lacks is absent. A layer runs at the fastest listed
    precision at least as wide as ``max(w_bits, a_bits)`` (e.g. 4-bit weights run at INT8 on
    a device without INT4, but are stored and moved as 4-bit); wider than every listed one
    falls back to the widest (fp32 models run at fp16 on an fp16-only NPU).
    ``align`` gives the compute tile: ``cin``/``cout`` channel multiples and ``hw`` output
    pixel multiples that convolutions and dense layers are padded to (16x16x16 cubes on Da
    Vinci, 8-wide tensor-core/NEON lanes), so latency steps with channel count.
    ``efficiency`` is the achieved fraction of peak per cost class, ``precision_efficiency`` a
    factor on it per executed precision, one number or one per cost class (default 1: INT8
    kernels rarely reach the INT8 peak's share that FP32 kernels reach of theirs, some classes
    less than others, so INT8/FP32 speed-ups fall short of the peak ratio and differ by network),
    ``memory_efficiency`` the achieved fraction of bandwidth, ``op_overhead_us`` the fixed cost
    per op per class (defaults to ``launch_overhead_us``), ``network_overhead_us`` a fixed cost per inference,
    ``elides_concat`` says the runtime writes a concat's inputs straight into its output buffer
    (TensorRT does), so a concat row costs nothing there; ``fuses_residual_add`` says a residual
    add runs in the epilogue of the convolution producing one of its operands (TensorRT's and
    CANN's conv + element-wise fusions), so it makes no pass over memory of its own: what an add
    row still costs is its fixed cost per op (``op_overhead_us.add``, fitted by calibration);
    ``fuses_complex_activations: false``
    says only clamps (ReLU, ReLU6) run inside a conv's epilogue, so hard-swish, sigmoid and swish
    (the table's ``act`` rows) are element-wise ops of their own;
    ``align.pack`` is the channel block of the runtime's tensor layout (NC8HW8 for AVX, NC4HW4
    for NEON): a conv reading a channel count that is not a multiple of it gathers its im2col
    patches (input channels x kernel area x output pixels) at ``repack_gbps`` on top of its
    compute (measured on MindSpore Lite here: a pruned ResNet-20 with ragged channel counts
    can be slower than the unpruned one).
    ``quantize_gelems`` is the rate (billions of elements per second) at which an INT8 layer's
    runtime converts its input and output (quantize the input, requantize or dequantize the
    output): a cost per activation element, not per MAC, so INT8 gains most on layers with many
    MACs per element (ResNet-50's convolutions) and least on MobileNetV2's thin ones; None: free.
    """

    name: str
    kind: str
    peak_tops: Mapping[str, float]
    memory_bandwidth_gbps: float
    onchip_buffer_kib: float
    launch_overhead_us: float
    align: Mapping[str, int]
    description: str = ""
    onchip_bandwidth_gbps: float | None = None
    fuses_conv_bn_act: bool = True
    elides_concat: bool = False
    fuses_residual_add: bool = False
    fuses_complex_activations: bool = True
    efficiency: Mapping[str, float] = field(default_factory=dict)
    precision_efficiency: Mapping[str, float | Mapping[str, float]] = field(default_factory=dict)
    memory_efficiency: float = 0.7
    op_overhead_us: Mapping[str, float] = field(default_factory=dict)
    network_overhead_us: float = 0.0
    repack_gbps: float | None = None
    quantize_gelems: float | None = None
    energy: EnergySpec = field(default_factory=EnergySpec)
    lut: LatencyLUT | None = None
    sources: Mapping[str, Any] = field(default_factory=dict, compare=False)
    notes: str = ""
    calibrated_from: str = ""
    #: a device fitted to a user's measurements (``automc calibrate``): its base device, the rows,
    #: the fitted factors and the in-sample and leave-one-out errors, as written (plain data)
    calibration: Mapping[str, Any] = field(default_factory=dict, compare=False)
    path: str = field(default="", compare=False)

    # ------------------------------------------------------------ derived values
    def efficiency_of(self, cost_class: str) -> float:
        if cost_class in self.efficiency:
            return float(self.efficiency[cost_class])
        if cost_class == "conv1x1" and "conv" in self.efficiency:
            return float(self.efficiency["conv"])
        return _DEFAULT_EFFICIENCY[cost_class]

    def precision_factor(self, precision: str, cost_class: str) -> float:
        """The factor on ``cost_class``'s efficiency when it runs at ``precision`` (1 if not given)."""
        return precision_factor(self.precision_efficiency, precision, cost_class)

    def overhead_us_of(self, cost_class: str) -> float:
        if cost_class in self.op_overhead_us:
            return float(self.op_overhead_us[cost_class])
        if cost_class == "conv1x1" and "conv" in self.op_overhead_us:
            return float(self.op_overhead_us["conv"])
        return float(self.launch_overhead_us)

    @property
    def mean_op_overhead_us(self) -> float:
        """The fixed cost per op averaged over the cost classes (the fitted ones where a profile applies)."""
        return sum(self.overhead_us_of(c) for c in COST_CLASSES) / len(COST_CLASSES)

    @property
    def onchip_bw_gbps(self) -> float:
        """Bandwidth for tensors that fit on chip; 4x DRAM bandwidth when not given (assumption)."""
        return float(self.onchip_bandwidth_gbps or 4.0 * self.memory_bandwidth_gbps)

    def exec_precision(self, bits: int) -> str:
        """Precision a layer asking for ``bits`` (max of weight and activation bits) runs at: the
        narrowest listed one that holds them. A runtime runs the kernels of the precision a model
        was converted to, even where they are slower than wider ones (MindSpore Lite's x86 int8
        kernels are ~12x slower than its fp32 ones: ``host-cpu``); on every other shipped device the
        narrowest is also the fastest."""
        wide_enough = [p for p in self.peak_tops if PRECISION_BITS[p] >= bits]
        if not wide_enough:
            return max(self.peak_tops, key=lambda p: PRECISION_BITS[p])
        return min(wide_enough, key=lambda p: PRECISION_BITS[p])

    def with_updates(self, **changes: Any) -> "DeviceSpec":
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The YAML form (without the LUT object, which is saved separately)."""
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "description": self.description,
            "peak_tops": dict(self.peak_tops),
            "memory_bandwidth_gbps": self.memory_bandwidth_gbps,
            "onchip_buffer_kib": self.onchip_buffer_kib,
            "launch_overhead_us": self.launch_overhead_us,
            "align": dict(self.align),
            "fuses_conv_bn_act": self.fuses_conv_bn_act,
            "elides_concat": self.elides_concat,
            "fuses_residual_add": self.fuses_residual_add,
            "fuses_complex_activations": self.fuses_complex_activations,
            "efficiency": dict(self.efficiency),
            "precision_efficiency": _plain(self.precision_efficiency),
            "memory_efficiency": self.memory_efficiency,
            "op_overhead_us": dict(self.op_overhead_us),
            "network_overhead_us": self.network_overhead_us,
            "repack_gbps": self.repack_gbps,
            "quantize_gelems": self.quantize_gelems,
            "energy": {
                "static_power_w": self.energy.static_power_w,
                "pj_per_mac": dict(self.energy.pj_per_mac),
                "pj_per_dram_byte": self.energy.pj_per_dram_byte,
            },
        }
        if self.onchip_bandwidth_gbps is not None:
            out["onchip_bandwidth_gbps"] = self.onchip_bandwidth_gbps
        if self.notes:
            out["notes"] = self.notes
        if self.calibrated_from:
            out["calibrated_from"] = self.calibrated_from
        if self.sources:
            out["sources"] = _plain(self.sources)
        if self.calibration:
            out["calibration"] = _plain(self.calibration)
        return out


def _plain(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


# ------------------------------------------------------------------ parsing
def _number(data: Mapping[str, Any], key: str, where: str, *, positive: bool = True) -> float:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where}: field {key!r} must be a number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ConfigError(f"{where}: field {key!r} must be {'> 0' if positive else '>= 0'}, got {value!r}")
    return float(value)


def _number_map(value: Any, key: str, where: str, allowed: tuple[str, ...], *, allow_null: bool = False) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: field {key!r} must be a mapping of {', '.join(allowed)} to numbers")
    out = {}
    for k, v in value.items():
        if k not in allowed:
            raise ConfigError(f"{where}: unknown entry {key}.{k}; valid entries: {', '.join(allowed)}")
        if v is None and allow_null:
            continue
        out[k] = _number({f"{key}.{k}": v}, f"{key}.{k}", where, positive=False)
    return out


def _precision_efficiency(value: Any, where: str) -> dict[str, Any]:
    """``precision -> factor`` or ``precision -> {cost class -> factor}`` (the classes not named
    keep 1), every factor > 0."""
    key = "precision_efficiency"
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: field {key!r} must be a mapping of {', '.join(PRECISION_BITS)} to numbers "
                          "or to mappings of cost class to numbers")
    out: dict[str, Any] = {}
    for p, v in value.items():
        if p not in PRECISION_BITS:
            raise ConfigError(f"{where}: unknown entry {key}.{p}; valid entries: {', '.join(PRECISION_BITS)}")
        if isinstance(v, Mapping):
            out[p] = _number_map(v, f"{key}.{p}", where, COST_CLASSES)
            named = {f"{p}.{c}": f for c, f in out[p].items()}
        else:
            out[p] = _number({f"{key}.{p}": v}, f"{key}.{p}", where, positive=False)
            named = {p: out[p]}
        for name, f in named.items():
            if f <= 0:
                raise ConfigError(f"{where}: field '{key}.{name}' must be > 0 (a factor on efficiency), got {f!r}")
    return out


def spec_from_dict(data: Mapping[str, Any], *, where: str = "<dict>", base_dir: Path | None = None) -> DeviceSpec:
    """Validate a device mapping (the YAML content) and build the ``DeviceSpec``.

    Every problem raises one-line ``ConfigError`` naming the field and ``where`` (the file).
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: a device file must be a YAML mapping with fields {', '.join(_REQUIRED)}")
    unknown = sorted(set(data) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise ConfigError(
            f"{where}: unknown field {unknown[0]!r}; valid fields: {', '.join(_REQUIRED + _OPTIONAL)}"
        )
    for key in _REQUIRED:
        if key not in data or data[key] is None:
            raise ConfigError(f"{where}: missing required field {key!r}")
    kind = str(data["kind"])
    if kind not in _DEVICE_KINDS:
        raise ConfigError(f"{where}: field 'kind' must be one of {', '.join(_DEVICE_KINDS)}, got {kind!r}")
    peak = _number_map(data["peak_tops"], "peak_tops", where, tuple(PRECISION_BITS), allow_null=True)
    peak = {k: v for k, v in peak.items() if v > 0}
    if not peak:
        raise ConfigError(f"{where}: field 'peak_tops' needs at least one precision with a positive figure")
    align_raw = data["align"]
    if not isinstance(align_raw, Mapping):
        raise ConfigError(f"{where}: field 'align' must be a mapping with cin, cout, hw, pack (positive integers)")
    align = {}
    for k in ("cin", "cout", "hw", "pack"):
        v = align_raw.get(k, 1)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"{where}: field 'align.{k}' must be a positive integer, got {v!r}")
        align[k] = v
    extra = sorted(set(align_raw) - {"cin", "cout", "hw", "pack"})
    if extra:
        raise ConfigError(f"{where}: unknown entry align.{extra[0]}; valid entries: cin, cout, hw, pack")

    efficiency = _number_map(data.get("efficiency") or {}, "efficiency", where, COST_CLASSES)
    for k, v in efficiency.items():
        if v <= 0:
            raise ConfigError(f"{where}: field 'efficiency.{k}' must be > 0 (fraction of peak), got {v!r}")
    precision_efficiency = _precision_efficiency(data.get("precision_efficiency") or {}, where)
    op_overhead = _number_map(data.get("op_overhead_us") or {}, "op_overhead_us", where, COST_CLASSES)

    energy_raw = data.get("energy") or {}
    if not isinstance(energy_raw, Mapping):
        raise ConfigError(f"{where}: field 'energy' must be a mapping (static_power_w, pj_per_mac, pj_per_dram_byte)")
    bad = sorted(set(energy_raw) - {"static_power_w", "pj_per_mac", "pj_per_dram_byte"})
    if bad:
        raise ConfigError(f"{where}: unknown entry energy.{bad[0]}; valid entries: static_power_w, pj_per_mac, pj_per_dram_byte")
    energy = EnergySpec(
        static_power_w=_number(energy_raw, "static_power_w", f"{where}: energy", positive=False) if "static_power_w" in energy_raw else 0.0,
        pj_per_mac=_number_map(energy_raw.get("pj_per_mac") or {}, "energy.pj_per_mac", where, tuple(PRECISION_BITS), allow_null=True),
        pj_per_dram_byte=_number(energy_raw, "pj_per_dram_byte", f"{where}: energy", positive=False) if "pj_per_dram_byte" in energy_raw else 0.0,
    )

    mem_eff = _number(data, "memory_efficiency", where) if "memory_efficiency" in data else 0.7
    flags = {key: data.get(key, default) for key, default in
             (("fuses_conv_bn_act", True), ("elides_concat", False), ("fuses_residual_add", False),
              ("fuses_complex_activations", True))}
    for key, flag in flags.items():
        if not isinstance(flag, bool):
            raise ConfigError(f"{where}: field {key!r} must be true or false, got {flag!r}")
    sources = data.get("sources") or {}
    if not isinstance(sources, (Mapping, list)):
        raise ConfigError(f"{where}: field 'sources' must be a mapping of field -> list of sources, or a list")
    calibration = data.get("calibration") or {}
    if not isinstance(calibration, Mapping):
        raise ConfigError(f"{where}: field 'calibration' must be a mapping (what `automc calibrate` writes)")

    lut = None
    if data.get("lut"):
        lut_path = Path(str(data["lut"])).expanduser()
        if not lut_path.is_absolute() and base_dir is not None:
            lut_path = base_dir / lut_path
        lut = load_lut(lut_path)

    return DeviceSpec(
        name=str(data["name"]),
        kind=kind,
        description=str(data.get("description") or ""),
        peak_tops=peak,
        memory_bandwidth_gbps=_number(data, "memory_bandwidth_gbps", where),
        onchip_buffer_kib=_number(data, "onchip_buffer_kib", where, positive=False),
        onchip_bandwidth_gbps=_number(data, "onchip_bandwidth_gbps", where) if data.get("onchip_bandwidth_gbps") else None,
        launch_overhead_us=_number(data, "launch_overhead_us", where, positive=False),
        align=align,
        **flags,
        efficiency=efficiency,
        precision_efficiency=precision_efficiency,
        memory_efficiency=mem_eff,
        op_overhead_us=op_overhead,
        network_overhead_us=_number(data, "network_overhead_us", where, positive=False) if "network_overhead_us" in data else 0.0,
        repack_gbps=_number(data, "repack_gbps", where) if data.get("repack_gbps") is not None else None,
        quantize_gelems=_number(data, "quantize_gelems", where) if data.get("quantize_gelems") is not None else None,
        energy=energy,
        lut=lut,
        sources=sources if isinstance(sources, Mapping) else {"spec": sources},
        notes=str(data.get("notes") or ""),
        calibrated_from=str(data.get("calibrated_from") or ""),
        calibration=calibration,
    )


def read_device(path: str | Path) -> tuple[DeviceSpec, Path | None]:
    """The spec a device YAML file states (the datasheet), and the path of the calibration
    profile it names (``profile:``, relative to the file), if any."""
    import yaml

    path = Path(path).expanduser()
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    spec = replace(spec_from_dict(data, where=str(path), base_dir=path.parent), path=str(path))
    profile = Path(str(data["profile"])).expanduser() if data.get("profile") else None
    return spec, (path.parent / profile if profile is not None else None)
