"""Real timing on this machine, and the ``host-cpu`` device calibrated from micro-benchmarks.

``host-cpu`` models this CPU running exported ``.ms`` models in MindSpore Lite (1 thread), the
deployment runtime. ``time_networks`` exports networks and times them there, interleaved so
that the machine's speed drift cancels (``lite_latencies_ms``); ``measure_latency_ms`` times a
cell compiled by MindSpore itself, paired with a reference op. ``calibrate_host`` times a set
of single-op networks (conv, 1x1 conv, depthwise, dense, pool, add; aligned and unaligned
channel counts), fits ``host-cpu`` to them and caches the profile under
``~/.cache/automc/hw_cost/`` keyed by machine (``automc._files.cache_root``: ``AUTOMC_CACHE_DIR``
overrides), so ``get_device("host-cpu")`` is calibrated from then on. MindSpore is imported only when timing.
"""

from __future__ import annotations

import hashlib
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from automc._files import cache_root
from automc.analysis.layer_table import LayerTable
from automc.deploy import bench_ms, convert_to_ms, ensure_toolchain, export_mindir
from automc.errors import ConfigError
from automc.hw_cost.calibration import apply_profile, calibrate, load_profile, save_profile
from automc.hw_cost.specs import DEVICES_DIR, DeviceSpec, read_device
from automc.policy import Policy
from automc.training import use_host_blocking_run


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown-cpu"


def machine_key() -> str:
    """Short hash of CPU model, core count, architecture and MindSpore version."""
    try:
        from importlib.metadata import version

        ms_version = version("mindspore")
    except Exception:  # noqa: BLE001 - not installed: key still useful
        ms_version = "none"
    text = f"{platform.machine()}|{_cpu_model()}|{os.cpu_count()}|{ms_version}"
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def cache_dir() -> Path:
    return cache_root() / "hw_cost"


def host_profile_path() -> Path:
    return cache_dir() / f"host-cpu-{machine_key()}.yaml"


def cached_host_profile(base_spec: DeviceSpec) -> DeviceSpec | None:
    """The calibrated host spec if a profile for this machine is cached, else None."""
    path = host_profile_path()
    if not path.exists():
        return None
    try:
        profile = load_profile(path)
    except ConfigError:
        return None
    return apply_profile(base_spec, profile)


# ------------------------------------------------------------------ timing
#: The fixed network every measurement is paired with (a conv+BN+ReLU op, ~0.3 ms here).
REFERENCE_OP = ("conv", 16, 16, 3, 1, 32)


def _compiled(net: Any, shape: tuple[int, ...], seed: int):
    """A zero-argument callable running ``net`` compiled, in inference mode, to a host array."""
    import mindspore as ms

    use_host_blocking_run()
    x = ms.Tensor(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))
    net.set_train(False)
    fn = ms.jit(net.construct)

    def call() -> None:
        out = fn(x)
        (out[0] if isinstance(out, (tuple, list)) else out).asnumpy()

    return call


def _seconds(call) -> float:
    t0 = time.perf_counter()
    call()
    return time.perf_counter() - t0


class _Reference:
    """The reference network and its latency in this process's fast phase (5th percentile)."""

    _instance: "_Reference | None" = None

    def __init__(self, calls: int = 400) -> None:
        kind, cin, cout, k, stride, hw = REFERENCE_OP
        self.call = _compiled(micro_network(kind, cin, cout, k, stride, hw), (1, cin, hw, hw), seed=0)
        for _ in range(5):
            self.call()
        self.ms = float(np.percentile([_seconds(self.call) for _ in range(calls)], 5) * 1e3)

    @classmethod
    def get(cls) -> "_Reference":
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance


def measure_latency_ms(
    net: Any,
    input_shape: Sequence[int],
    *,
    repeats: int = 30,
    warmup: int = 3,
    paired: bool = True,
    seed: int = 0,
) -> float:
    """Batch-1 inference latency of a MindSpore ``nn.Cell`` in milliseconds.

    ``input_shape`` is ``(C, H, W)`` (batch 1 is added) or a full shape with batch. The
    network runs compiled (``mindspore.jit``) in inference mode after ``warmup`` calls.

    Shared and virtual machines change speed by up to 2x within a second (measured on the
    2-core CI machines), so a plain median of repeats is not reproducible to 10 %. With
    ``paired`` (the default) each call is bracketed by two calls of a fixed reference op and
    the result is ``median(t_net / t_reference) x reference latency``, the reference latency
    being its 5th percentile over 400 calls, taken once per process: the ratio cancels the
    drift, and repeated runs agree to a few percent. ``paired=False`` returns the plain
    median of ``repeats`` calls.
    """
    if repeats < 1 or warmup < 0:
        raise ConfigError(f"measure_latency_ms: repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
    shape = tuple(int(s) for s in input_shape)
    if len(shape) in (1, 3):
        shape = (1, *shape)
    call = _compiled(net, shape, seed)
    for _ in range(max(warmup, 1)):
        call()
    if not paired:
        return float(np.median([_seconds(call) for _ in range(repeats)]) * 1e3)
    ref = _Reference.get()
    ratios = []
    for _ in range(repeats):
        before = _seconds(ref.call)
        t = _seconds(call)
        ratios.append(2.0 * t / (before + _seconds(ref.call)))
    return float(np.median(ratios) * ref.ms)


# ------------------------------------------------------------------ timing in MindSpore Lite
RUNTIMES = ("lite", "mindspore")


def _median_polish(log_t: np.ndarray, iterations: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Row and column effects of ``log_t ~ row + col`` by median polish (robust two-way fit)."""
    col = np.median(log_t, axis=0)
    row = np.zeros(log_t.shape[0])
    for _ in range(iterations):
        row = np.median(log_t - col[None, :], axis=1)
        col = np.median(log_t - row[:, None], axis=0)
    return row, col


def lite_latencies_ms(
    networks: Sequence[tuple[Any, Sequence[int]]],
    *,
    rounds: int = 30,
    calls: int = 5,
    processes: int = 3,
    threads: int = 1,
    workdir: str | Path | None = None,
) -> np.ndarray:
    """Batch-1 latency of each ``(net, input_shape)`` run as a float ``.ms`` in MindSpore Lite.

    Every network is exported (MindIR -> .ms, the deployment path of ``automc export``), then
    all of them are timed together, interleaved: ``processes`` runs of the Lite benchmark, each
    ``rounds`` rounds over every model in a shuffled order, each entry the fastest of ``calls``
    warm predictions. A median polish of the log times removes the per-round speed of the
    machine (shared machines drift by 10-20 % within seconds); a network's latency is its
    column effect at the median round speed, averaged (geometric mean) over the processes.
    Measured repeatability on 2 shared cores: 1-6 % standard deviation per network.
    """
    from concurrent.futures import ThreadPoolExecutor

    toolchain = ensure_toolchain()
    with tempfile.TemporaryDirectory(prefix="automc-host-") as tmp:
        root = Path(workdir) if workdir is not None else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        mindirs = []
        for i, (net, shape) in enumerate(networks):
            shape = tuple(int(s) for s in shape)
            x = np.random.default_rng(i).standard_normal((1, *shape) if len(shape) in (1, 3) else shape)
            net.set_train(False)
            mindirs.append(export_mindir(net, x.astype(np.float32), root / f"net{i}.mindir"))
        with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:  # converters are subprocesses
            paths = list(pool.map(lambda i: convert_to_ms(mindirs[i], root / f"net{i}.ms", toolchain=toolchain),
                                  range(len(mindirs))))
        level = []
        for _ in range(processes):
            table = bench_ms(paths, rounds=rounds, calls=calls, threads=threads, toolchain=toolchain)
            row, col = _median_polish(np.log(table))
            level.append(col + np.median(row))
    return np.exp(np.mean(level, axis=0))


def time_networks(
    networks: Sequence[tuple[Any, Sequence[int]]], *, runtime: str = "lite", **options: Any
) -> np.ndarray:
    """Latencies in ms of ``(net, input_shape)`` pairs on this machine, in ``runtime``.

    ``"lite"`` (the default and what ``host-cpu`` models): the exported ``.ms`` in MindSpore
    Lite, 1 thread, see ``lite_latencies_ms``; ``"mindspore"``: the cell compiled by MindSpore,
    see ``measure_latency_ms``. ``options`` go to the chosen function.
    """
    if runtime == "lite":
        return lite_latencies_ms(networks, **options)
    if runtime == "mindspore":
        return np.array([measure_latency_ms(net, shape, **options) for net, shape in networks])
    raise ConfigError(f"unknown runtime {runtime!r}; valid runtimes: {', '.join(RUNTIMES)}")


# ------------------------------------------------------------------ micro-benchmarks
#: (kind, cin, cout, k, stride, hw_in) of the small networks used to calibrate host-cpu: single
#: ops with aligned and ragged channel counts, three spatial sizes, strides, 1x1 and depthwise,
#: and ``conv2`` pairs, where the second conv reads a ragged tensor written by the first (the
#: case that costs extra in Lite and that single ops do not show).
MICRO_BENCHMARKS: tuple[tuple[str, int, int, int, int, int], ...] = (
    ("conv", 3, 16, 3, 1, 32),
    ("conv", 16, 16, 3, 1, 32),
    ("conv", 11, 21, 3, 1, 32),
    ("conv", 16, 32, 3, 2, 32),
    ("conv", 32, 64, 3, 1, 32),
    ("conv", 32, 32, 3, 1, 16),
    ("conv", 27, 45, 3, 1, 16),
    ("conv", 64, 64, 3, 1, 16),
    ("conv", 64, 64, 3, 1, 8),
    ("conv", 50, 37, 3, 1, 8),
    ("conv", 128, 128, 3, 1, 8),
    ("conv", 16, 32, 1, 1, 32),
    ("conv", 24, 144, 1, 1, 16),
    ("conv", 64, 64, 1, 1, 16),
    ("conv", 144, 40, 1, 1, 8),
    ("conv", 128, 256, 1, 1, 8),
    ("conv2", 16, 16, 3, 1, 16),
    ("conv2", 16, 15, 3, 1, 16),
    ("conv2", 16, 13, 3, 1, 32),
    ("conv2", 16, 21, 3, 1, 16),
    ("conv2", 32, 27, 3, 1, 16),
    ("conv2", 32, 32, 3, 1, 16),
    ("conv2", 64, 50, 3, 1, 8),
    ("conv2", 16, 29, 3, 2, 32),
    ("dwconv", 32, 32, 3, 1, 32),
    ("dwconv", 96, 96, 3, 1, 16),
    ("dwconv", 71, 71, 3, 1, 16),
    ("dwconv", 144, 144, 3, 2, 16),
    ("dwconv", 384, 384, 3, 1, 4),
    ("dense", 64, 10, 1, 1, 1),
    ("dense", 1280, 1000, 1, 1, 1),
    ("pool", 16, 16, 3, 1, 32),
    ("pool", 64, 64, 8, 8, 8),
    ("add", 16, 16, 1, 1, 32),
    ("add", 64, 64, 1, 1, 16),
)


def micro_table(kind: str, cin: int, cout: int, k: int, stride: int, hw: int) -> LayerTable:
    """The layer table of a micro-benchmark: one op, or for ``conv2`` two stacked convolutions
    ``cin -> cout -> cout`` (the second reads what the first wrote, as inside a network)."""
    pad = k // 2 if kind in ("conv", "conv2", "dwconv") else 0
    h_out = (hw + 2 * pad - k) // stride + 1 if kind != "add" else hw
    row = dict(name="op", kind=kind, cin=cin, cout=cout, kh=k, kw=k, stride=stride, h_in=hw, w_in=hw, h_out=h_out, w_out=h_out)
    if kind == "dwconv":
        row["groups"] = cin
    if kind == "dense":
        row.update(kh=1, kw=1, h_in=1, w_in=1, h_out=1, w_out=1, has_bias=True)
    if kind in ("conv", "conv2", "dwconv"):
        row.update(has_bn=True, has_act=True)
    rows = [row]
    if kind == "conv2":
        rows = [{**row, "name": "op1", "kind": "conv"},
                {**row, "name": "op2", "kind": "conv", "cin": cout, "stride": 1, "h_in": h_out, "w_in": h_out}]
    return LayerTable.from_rows(rows, input_shape=(cin, hw, hw) if kind != "dense" else (cin,))


def micro_network(kind: str, cin: int, cout: int, k: int, stride: int, hw: int):
    """A MindSpore cell with exactly the ops of ``micro_table`` (convs with BN + ReLU)."""
    import mindspore.nn as nn
    import mindspore.ops as ops

    if kind == "conv2":
        return nn.SequentialCell([micro_network("conv", cin, cout, k, stride, hw),
                                  micro_network("conv", cout, cout, k, 1, (hw + 2 * (k // 2) - k) // stride + 1)])
    if kind in ("conv", "dwconv"):
        group = cin if kind == "dwconv" else 1
        return nn.SequentialCell(
            [
                nn.Conv2d(cin, cout, k, stride=stride, pad_mode="pad", padding=k // 2, group=group, has_bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
            ]
        )
    if kind == "dense":
        return nn.Dense(cin, cout)
    if kind == "pool":
        return nn.AvgPool2d(kernel_size=k, stride=stride, pad_mode="valid" if stride == k else "same")

    class _Add(nn.Cell):
        def construct(self, x):
            return ops.add(x, x)

    return _Add()


def micro_benchmarks() -> list[tuple[LayerTable, Any, tuple[int, ...]]]:
    """``(table, network, input_shape)`` of every ``MICRO_BENCHMARKS`` op."""
    out = []
    for kind, cin, cout, k, stride, hw in MICRO_BENCHMARKS:
        shape = (cin,) if kind == "dense" else (cin, hw, hw)
        out.append((micro_table(kind, cin, cout, k, stride, hw), micro_network(kind, cin, cout, k, stride, hw), shape))
    return out


def host_base_spec() -> DeviceSpec:
    """The uncalibrated ``host-cpu`` spec from its YAML."""
    spec, _ = read_device(DEVICES_DIR / "host-cpu.yaml")
    return spec


#: The micro-benchmarks' total weight in ``fit_host``, relative to the whole networks together.
MICRO_WEIGHT = 0.25


def fit_host(samples: Sequence[tuple], *, n_micro: int = 0, runtime: str = "lite", save: bool = True):
    """Calibrate ``host-cpu`` to measured ``(table, latency_ms[, policy])`` samples; saves the
    profile as this machine's cached one (``save``) and returns the calibrated spec.

    The first ``n_micro`` samples are single-op micro-benchmarks: together they weigh a
    quarter of the whole networks that follow (when there are any), so that many tiny ops do
    not drown the networks that show how ops compose (held-out check, 34 calibration networks:
    91.7 % within 10 % for any micro weight from 0.03 to 0.5 of the networks, 89.6 % at 1).
    """
    base = host_base_spec()
    n_nets = len(samples) - n_micro
    weights = [MICRO_WEIGHT * n_nets / n_micro if n_micro and n_nets else 1.0] * n_micro + [1.0] * n_nets
    profile = calibrate(base, samples, weights=weights,
                        source=f"{len(samples)} networks timed on this machine ({runtime} runtime)")
    profile = type(profile)(**{**profile.to_dict(), "machine": f"{_cpu_model()} x{os.cpu_count()} ({machine_key()})"})
    if save:
        save_profile(profile, host_profile_path())
    return apply_profile(base, profile)


def calibrate_host(*, force: bool = False, runtime: str = "lite", extra: Sequence[tuple] = (), **timing: Any):
    """Fit ``host-cpu`` to micro-benchmarks timed on this machine (cached; ``force`` re-measures).

    ``extra`` holds ``(table, network, input_shape[, policy])`` of whole networks timed in the
    same session and added to the fit. ``timing`` goes to ``time_networks`` (e.g. ``rounds``).
    Returns the calibrated ``DeviceSpec``; ``get_device("host-cpu")`` uses it from then on.
    """
    if not force and not extra:
        cached = cached_host_profile(host_base_spec())
        if cached is not None:
            return cached
    items = [(t, n, s, Policy()) for t, n, s in micro_benchmarks()]
    items += [(t, n, s, rest[0] if rest else Policy()) for t, n, s, *rest in extra]
    latency = time_networks([(n, s) for _, n, s, _ in items], runtime=runtime, **timing)
    samples = [(t, float(ms_), p) for (t, _, _, p), ms_ in zip(items, latency)]
    return fit_host(samples, n_micro=len(MICRO_BENCHMARKS), runtime=runtime)
