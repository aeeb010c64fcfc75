"""Published real-device latencies of standard networks: the data the device cost models are checked
and fitted against.

``automc/hw_cost/data/published_latency.csv`` holds one row per published figure: the network,
input size, batch, precision, runtime and version, threads, host, the latency, and where it was
read (``source_url``) with the sentence or table cell that holds the number (``quote``). Figures
published as throughput are stored as milliseconds per batch (``1000 * batch / throughput``);
``notes`` says so. :func:`profile_for` names the shipped device profile a row measures.

Runtimes on one device disagree (by 2x and more), so each device is fitted to one *reference
series* (one runtime on one host, the one a deployment on that device uses, see
``REFERENCE_SERIES``), and validated leave-one-network-out: each network predicted by a fit
that never saw it. Devices with few networks share their efficiency terms with their family
(the other devices' rows, each costed with its own peaks and bandwidths, at a lower weight).
The layer tables of the standard networks ship in ``data/published_tables.json`` (mindcv
networks traced at the published input size by ``benchmarks/hw_cost_published.py --build-tables``).
"""

from __future__ import annotations

import collections
import csv
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from automc.analysis.layer_table import LayerTable
from automc.errors import ConfigError
from automc.hw_cost.calibration import Sample, apply_profile, calibrate
from automc.hw_cost.registry import estimate, load_device
from automc.policy import Policy

DATA = Path(__file__).parent / "data" / "published_latency.csv"
TABLES = DATA.with_name("published_tables.json")

#: the device families of the mission; every row belongs to one
FAMILIES = ("ascend", "kirin-npu", "gpu", "arm-cpu", "android-nnapi")
PRECISIONS = ("fp32", "fp16", "int8", "mixed")

#: published hardware key -> shipped profile, for accelerators (thread count does not apply)
_ACCELERATORS = {"ascend310": "ascend310", "ascend910": "ascend910", "kirin990-npu": "kirin990-npu",
                 "t4": "t4", "a100": "a100", "jetson-orin-nano": "jetson-orin-nano"}
#: (published key, threads) -> shipped profile, for CPU cores
_CPUS = {("arm-a76", "1"): "arm-a76", ("arm-a76", "4"): "arm-a76-4t", ("arm-a72", "1"): "arm-a72"}


@dataclass(frozen=True)
class Measurement:
    """One published latency (milliseconds for one batch of ``batch`` inputs)."""

    family: str
    device: str
    network: str
    input_size: int
    batch: int
    precision: str
    runtime: str
    runtime_version: str
    threads: str  # as published: "1", "4", "multi", or empty for accelerators
    host: str
    latency_ms: float
    source_url: str
    quote: str
    notes: str

    @property
    def per_image_ms(self) -> float:
        return self.latency_ms / self.batch


def _parse(row: dict[str, str], where: str) -> Measurement:
    names = [f.name for f in fields(Measurement)]
    missing = [n for n in names if n not in row]
    if missing:
        raise ConfigError(f"{where}: missing column(s) {missing}; the header must be {','.join(names)}")
    values = {n: (row[n] or "").strip() for n in names}
    for required in ("family", "device", "network", "precision", "runtime", "latency_ms", "source_url", "quote"):
        if not values[required]:
            raise ConfigError(f"{where}: column {required!r} is empty; every figure needs it (and its source)")
    if values["family"] not in FAMILIES:
        raise ConfigError(f"{where}: family {values['family']!r} is not one of {', '.join(FAMILIES)}")
    if values["precision"] not in PRECISIONS:
        raise ConfigError(f"{where}: precision {values['precision']!r} is not one of {', '.join(PRECISIONS)}")
    if not values["source_url"].startswith(("http://", "https://")):
        raise ConfigError(f"{where}: source_url {values['source_url']!r} is not a web address")
    try:
        latency, size, batch = float(values["latency_ms"]), int(values["input_size"] or 224), int(values["batch"] or 1)
    except ValueError as exc:
        raise ConfigError(f"{where}: latency_ms, input_size and batch must be numbers ({exc})") from None
    if not latency > 0 or batch < 1:
        raise ConfigError(f"{where}: latency_ms must be > 0 and batch >= 1")
    return Measurement(**{**values, "latency_ms": latency, "input_size": size, "batch": batch})


def read_published(path: str | Path | None = None) -> list[Measurement]:
    """Every row of the published-latency CSV (the shipped one by default), validated: a row with
    an empty source, an unknown precision or a non-positive latency is refused with its line."""
    path = Path(path) if path is not None else DATA
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    with path.open(newline="") as fh:
        return [_parse(row, f"{path}:{line}") for line, row in enumerate(csv.DictReader(fh), start=2)]


def profile_for(m: Measurement) -> str | None:
    """The shipped device profile ``m`` measures, or None (a device automc ships no profile for,
    or a thread count no profile models)."""
    if m.device in _ACCELERATORS:
        return _ACCELERATORS[m.device]
    return _CPUS.get((m.device, m.threads))


# ------------------------------------------------------------------ fitting the shipped profiles
#: published network name -> (mindcv architecture, input size) of its layer table
NETWORKS = {
    "resnet18": ("resnet18", 224), "resnet34": ("resnet34", 224), "resnet50": ("resnet50", 224),
    "resnet101": ("resnet101", 224), "resnet152": ("resnet152", 224),
    "mobilenetv1": ("mobilenet_v1_100", 224), "mobilenetv2": ("mobilenet_v2_100", 224),
    "mobilenetv3_large": ("mobilenet_v3_large_100", 224), "mobilenetv3_small": ("mobilenet_v3_small_100", 224),
    "squeezenet1_0": ("squeezenet1_0", 224), "squeezenet1_1": ("squeezenet1_1", 224),
    "shufflenetv2_x1_0": ("shufflenet_v2_x1_0", 224), "vgg16": ("vgg16", 224), "vgg19": ("vgg19", 224),
    "densenet121": ("densenet121", 224), "googlenet": ("googlenet", 224), "inceptionv3": ("inception_v3", 299),
    "efficientnet_b0": ("efficientnet_b0", 224), "ghostnet": ("ghostnet_100", 224), "mnasnet": ("mnasnet_100", 224),
}
BITS = {"fp32": 32, "fp16": 16, "int8": 8}
#: published single-kernel name -> its one layer (the input size is the row's): small-input checks
#: of a fit's fixed cost per op, which 224x224 networks leave loose
KERNELS = {
    "conv3x3s2_3to8": dict(kind="conv", cin=3, cout=8, kh=3, kw=3, stride=2),
    "conv3x3s2_3to16": dict(kind="conv", cin=3, cout=16, kh=3, kw=3, stride=2),
    "conv3x3s2_32to32": dict(kind="conv", cin=32, cout=32, kh=3, kw=3, stride=2),
}


def kernel_table(name: str, size: int):
    """The one-layer table of published kernel ``name`` (``KERNELS``) on a ``size`` x ``size`` input."""
    layer = KERNELS[name]
    out = -(-size // layer["stride"])
    return LayerTable.from_rows([dict(name=name, h_in=size, w_in=size, h_out=out, w_out=out, **layer)],
                                input_shape=(layer["cin"], size, size))

#: profile -> (runtime, words of its version, words of the host) of the series it is fitted to, and why
REFERENCE_SERIES = {
    "ascend310": ("acl-om", "", "Atlas 300I"),  # CANN's own runtime, device time per chip (no framework in the way)
    "ascend910": ("acl-om", "", ""),  # one network (ModelZoo's MnasNet): fitted with the 310's rows, its own held out
    "kirin990-npu": ("paddle-lite+hiai", "v2.8", "Mate 30"),  # the HiAI DDK series with the most networks
    "t4": ("paddle-inference+tensorrt", "", ""),  # TensorRT engines (Paddle's subgraph), fp32/fp16 of 19 networks (PaddleClas)
    "a100": ("tensorrt", "8.4", ""),  # TensorRT trtexec at batch 1, fp32 and int8 (NVIDIA's own examples)
    "jetson-orin-nano": ("tensorrt", ">=8.6", ""),  # TensorRT at batch 1, fp32/fp16/int8 of 6 networks (ArtTRT)
    "arm-a76": ("paddle-lite", "v2.11", "Snapdragon 855"),  # 1 big core, fp32/fp16/int8 of 5 networks
    "arm-a76-4t": ("ncnn", "", "Snapdragon 855+"),  # 4 big cores, fp16/int8 of 9 networks
    "arm-a72": ("ncnn", "", "Raspberry Pi 4"),  # the board of the NB201 raspi4 latencies, fp32/int8 of 9 networks
}
#: devices that share efficiency terms when one has few networks
FAMILY = {"t4": "gpu", "a100": "gpu", "jetson-orin-nano": "gpu", "arm-a76": "arm", "arm-a76-4t": "arm",
          "arm-a72": "arm", "ascend310": "ascend", "ascend910": "ascend", "kirin990-npu": "kirin-npu"}
#: fewer networks than this in the reference series: the family's rows join the fit
FEW_NETWORKS = 5
FAMILY_WEIGHT = 0.3
#: pull of the per-class terms towards the tied fit (calibrate's prior_weight)
PRIOR_FEW, PRIOR_MANY = 1.0, 0.01
#: physical caps on fitted fractions of peak (on CPUs and GPUs, 3x3 convolutions may beat peak by
#: Winograd's 2.25x fewer multiplies; an NPU's cube multiplies every MAC) and of DRAM bandwidth
MAX_EFFICIENCY = {"conv": 2.25, "conv1x1": 1.0, "dwconv": 1.0, "dense": 1.0, "pool": 1.0, "add": 1.0}
MAX_EFFICIENCY_NPU = {**MAX_EFFICIENCY, "conv": 1.0}
MAX_MEMORY_EFFICIENCY = 1.0
#: converting an element to or from INT8 takes at most the time of this many multiply-adds at the
#: peak of the precision an fp32 model runs at. Fits to every row land at 11 (A76), 17 (A76, 4
#: threads) and 22 (Jetson); a fit that never saw a network whose INT8 time is mostly conversions
#: buys its fit with them: the A72 without MobileNetV1 reached 170 (13 cycles per element, the
#: A76 needs 1.4) and predicted MobileNetV1's INT8 speed-up at 0.92x against 1.47x published.
#: 64 of 16/32/64/128 tried on the held-out fits: 16 and 32 cost the A72 a network within
#: +-25 %, 128 leaves the MobileNetV1 miss.
MAX_CONVERSION_MACS = 64
#: the benchmark's tolerance: a prediction within 25 % of published counts as agreeing with it
TOLERANCE = 0.25
#: a published point the fit misses by more than the benchmark's tolerance counts less
#: (Huber weights, ``calibrate(robust_scale=...)``): series stitched from several software
#: versions hold figures no model reconciles (A100: Inception-v3 FP32 faster than ResNet-50;
#: Jetson: ResNet-152 FP32 8 % slower than ResNet-101 with 1.5x its MACs)
ROBUST_SCALE = float(np.log(1 + TOLERANCE))

Points = Mapping[tuple[str, str], float]  # (network, precision) -> ms per image


def series_label(profile: str) -> str:
    runtime, version, host = REFERENCE_SERIES[profile]
    return " ".join(x for x in (runtime, version) if x) + (f" on {host}" if host else "")


def in_reference_series(m: Measurement) -> bool:
    profile = profile_for(m)
    if profile not in REFERENCE_SERIES or m.batch != 1 or m.network not in NETWORKS or m.precision not in BITS:
        return False
    runtime, version, host = REFERENCE_SERIES[profile]
    return m.runtime == runtime and version in m.runtime_version and host in m.host


def reference_points(rows: list[Measurement] | None = None) -> dict[str, dict[tuple[str, str], float]]:
    """profile -> (network, precision) -> published ms per image in its reference series (the
    median where the series publishes a figure twice)."""
    grouped = collections.defaultdict(list)
    for m in rows if rows is not None else read_published():
        if in_reference_series(m):
            grouped[(profile_for(m), m.network, m.precision)].append(m.per_image_ms)
    out: dict[str, dict] = collections.defaultdict(dict)
    for (profile, net, prec), values in sorted(grouped.items()):
        out[profile][(net, prec)] = float(np.median(values))
    return dict(out)


def load_tables(path: Path = TABLES) -> dict:
    """The shipped layer tables of the published networks (name -> ``LayerTable``)."""
    if not path.is_file():
        return {}
    return {k: LayerTable.from_dict(v) for k, v in json.loads(path.read_text()).items()}


def precision_policy(table, precision: str):
    """Every layer at ``precision`` (fp32: the unchanged network)."""
    bits = BITS[precision]
    names = table.compressible
    return Policy() if bits == 32 else Policy.from_dict({"w_bits": {n: bits for n in names},
                                                        "a_bits": {n: bits for n in names}})


def predict(device, tables: Mapping, keys) -> dict[tuple[str, str], float]:
    """Predicted ms per image of each ``(network, precision)`` on ``device`` (a name or spec)."""
    return {(n, p): float(estimate(tables[n], precision_policy(tables[n], p), device).latency_ms[0]) for n, p in keys}


def fit(profile: str, points: Mapping[str, Points], tables: Mapping, *, exclude: str | None = None, source: str = "",
        extra: Sequence = ()):
    """The calibration profile of ``profile`` fitted to its reference points (all but network
    ``exclude``, everywhere), with its family's points when it has few networks, and ``extra``
    samples (``calibration.Sample``; with a ``series`` name for another runtime measured on the
    same hardware, which keeps its own per-op and per-inference costs)."""
    def samples(dev: str, weight: float, precisions=tuple(BITS)):
        spec = load_device(dev, datasheet=True)
        return [(Sample(tables[n], ms, precision_policy(tables[n], p), spec), weight)
                for (n, p), ms in points.get(dev, {}).items() if n in tables and n != exclude and p in precisions]

    own = samples(profile, 1.0)
    few = len({n for n, _ in points.get(profile, {}) if n in tables and n != exclude}) < FEW_NETWORKS
    if few:  # the family's fp32 points (an NPU without fp32: its own precisions): shared class terms;
        # speed-ups at lower precisions stay the device's own
        measured = {p for _, p in points.get(profile, {})}
        shared = ("fp32",) if "fp32" in measured else tuple(measured)
        own += [s for dev, fam in FAMILY.items() if fam == FAMILY[profile] and dev != profile
                for s in samples(dev, FAMILY_WEIGHT, shared)]
    own += [(s, 1.0) for s in extra]
    # few networks: the per-class terms stay near the tied fit (one compute, one memory scale)
    spec = load_device(profile, datasheet=True)
    # a CPU runtime runs in-process: no transfer to a device, no driver call; its fixed cost per
    # inference is the graph walk (the per-op overheads). With every published network at
    # 224x224 or more, a free intercept would absorb input-size costs that do not carry over to
    # small inputs (1 ms on the A76, 20x LeNet's latency); accelerators keep theirs (transfers, driver)
    return calibrate(spec, [s for s, _ in own], weights=[w for _, w in own],
                     fit_network_overhead=spec.kind != "cpu", prior_weight=PRIOR_FEW if few else PRIOR_MANY,
                     max_efficiency=MAX_EFFICIENCY_NPU if spec.kind == "npu" else MAX_EFFICIENCY,
                     max_memory_efficiency=MAX_MEMORY_EFFICIENCY, robust_scale=ROBUST_SCALE,
                     min_quantize_gelems=conversion_floor_gelems(spec),
                     source=source or f"published batch-1 latencies, {series_label(profile)}"
                     + (f" (+ {FAMILY[profile]} family {'/'.join(shared)} rows)" if few else ""))


def conversion_floor_gelems(spec) -> float:
    """The slowest INT8 conversion rate a fit may reach on ``spec`` (billions of elements per
    second): one element per ``MAX_CONVERSION_MACS`` multiply-adds at the peak an fp32 model runs at."""
    return spec.peak_tops[spec.exec_precision(32)] * 1e12 / 2 / MAX_CONVERSION_MACS / 1e9


def leave_one_network_out(profile: str, points: Mapping[str, Points], tables: Mapping) -> dict[tuple[str, str], float]:
    """Each of the profile's reference points predicted by a fit that never saw its network."""
    own = {k: v for k, v in points[profile].items() if k[0] in tables}
    out = {}
    for held in sorted({n for n, _ in own}):
        spec = apply_profile(load_device(profile, datasheet=True), fit(profile, points, tables, exclude=held))
        out.update(predict(spec, tables, [k for k in own if k[0] == held]))
    return out


def agreement(pred: Mapping, points: Points) -> dict[str, float]:
    """Share within +-25 % and within 2x, and the Spearman correlation over networks (of the
    most measured precision), of predictions against published points."""
    from scipy.stats import spearmanr

    keys = [k for k in points if k in pred]
    ratio = np.array([pred[k] / points[k] for k in keys])
    by_prec = collections.Counter(p for _, p in keys)
    main = by_prec.most_common(1)[0][0] if keys else ""
    same = [k for k in keys if k[1] == main]
    rho = float(spearmanr([pred[k] for k in same], [points[k] for k in same])[0]) if len(same) >= 3 else float("nan")
    return {"measurements": float(len(keys)), "networks": float(len({n for n, _ in keys})),
            "within_25pct": float(np.mean(np.abs(ratio - 1) <= TOLERANCE)) if keys else float("nan"),
            "within_2x": float(np.mean((ratio <= 2) & (ratio >= 0.5))) if keys else float("nan"),
            "spearman": rho}
