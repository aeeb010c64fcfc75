"""Real timing on this machine, and the ``host-cpu`` device calibrated from micro-benchmarks.

``measure_latency_ms`` compiles the network once with ``mindspore.jit`` (a new graph costs
compilation on its first call, so it is warmed up) and returns the median of repeated
batch-1 inferences. ``calibrate_host`` times a few single-op networks (conv, 1x1 conv,
depthwise, dense, pool, add), fits the ``host-cpu`` device to them and caches the profile
under ``~/.cache/automc/hw_cost/`` keyed by machine (``AUTOMC_CACHE_DIR`` overrides), so
``get_device("host-cpu")`` is calibrated from then on. MindSpore is imported only here.
"""

from __future__ import annotations

import hashlib
import os
import platform
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from automc.analysis.layer_table import LayerTable
from automc.errors import ConfigError

CACHE_ENV = "AUTOMC_CACHE_DIR"


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
    return Path(os.environ.get(CACHE_ENV, "~/.cache/automc")).expanduser() / "hw_cost"


def host_profile_path() -> Path:
    return cache_dir() / f"host-cpu-{machine_key()}.yaml"


def cached_host_profile(base_spec):
    """The calibrated host spec if a profile for this machine is cached, else None."""
    path = host_profile_path()
    if not path.exists():
        return None
    from automc.hw_cost.calibration import apply_profile, load_profile

    try:
        profile = load_profile(path)
    except ConfigError:
        return None
    return apply_profile(base_spec, profile)


# ------------------------------------------------------------------ timing
def measure_latency_ms(
    net: Any,
    input_shape: Sequence[int],
    *,
    repeats: int = 30,
    warmup: int = 3,
    min_repeat_ms: float = 2.0,
    seed: int = 0,
) -> float:
    """Median batch-1 inference latency of a MindSpore ``nn.Cell`` in milliseconds.

    ``input_shape`` is ``(C, H, W)`` (batch 1 is added) or a full shape with batch. The
    network runs compiled (``mindspore.jit``) in inference mode; very fast networks are
    called several times per repeat so each repeat lasts about ``min_repeat_ms``.
    """
    import mindspore as ms

    if repeats < 1 or warmup < 0:
        raise ConfigError(f"measure_latency_ms: repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
    shape = tuple(int(s) for s in input_shape)
    if len(shape) in (1, 3):
        shape = (1, *shape)
    x = ms.Tensor(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))
    net.set_train(False)
    fn = ms.jit(net.construct)

    def call() -> None:
        out = fn(x)
        (out[0] if isinstance(out, (tuple, list)) else out).asnumpy()

    for _ in range(max(warmup, 1)):
        call()
    t0 = time.perf_counter()
    call()
    one = time.perf_counter() - t0
    number = max(1, int(min_repeat_ms * 1e-3 / max(one, 1e-7)))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(number):
            call()
        times.append((time.perf_counter() - t0) / number)
    return float(np.median(times) * 1e3)


# ------------------------------------------------------------------ micro-benchmarks
#: (kind, cin, cout, k, stride, hw_in) of the single-op networks used to calibrate host-cpu.
MICRO_BENCHMARKS: tuple[tuple[str, int, int, int, int, int], ...] = (
    ("conv", 16, 16, 3, 1, 32),
    ("conv", 32, 32, 3, 1, 16),
    ("conv", 64, 64, 3, 1, 8),
    ("conv", 16, 32, 3, 2, 32),
    ("conv", 32, 64, 3, 1, 32),
    ("conv", 128, 128, 3, 1, 8),
    ("conv", 3, 16, 3, 1, 32),
    ("conv", 16, 32, 1, 1, 32),
    ("conv", 64, 64, 1, 1, 16),
    ("conv", 128, 256, 1, 1, 8),
    ("dwconv", 32, 32, 3, 1, 32),
    ("dwconv", 96, 96, 3, 1, 16),
    ("dwconv", 144, 144, 3, 2, 16),
    ("dense", 64, 10, 1, 1, 1),
    ("dense", 1280, 1000, 1, 1, 1),
    ("pool", 16, 16, 3, 1, 32),
    ("pool", 64, 64, 8, 8, 8),
    ("add", 16, 16, 1, 1, 32),
    ("add", 64, 64, 1, 1, 16),
)


def micro_table(kind: str, cin: int, cout: int, k: int, stride: int, hw: int) -> LayerTable:
    """The one-row layer table of a micro-benchmark op."""
    pad = k // 2 if kind in ("conv", "dwconv") else 0
    h_out = (hw + 2 * pad - k) // stride + 1 if kind != "add" else hw
    row = dict(name="op", kind=kind, cin=cin, cout=cout, kh=k, kw=k, stride=stride, h_in=hw, w_in=hw, h_out=h_out, w_out=h_out)
    if kind == "dwconv":
        row["groups"] = cin
    if kind == "dense":
        row.update(kh=1, kw=1, h_in=1, w_in=1, h_out=1, w_out=1, has_bias=True)
    if kind in ("conv", "dwconv"):
        row.update(has_bn=True, has_act=True)
    return LayerTable.from_rows([row], input_shape=(cin, hw, hw) if kind != "dense" else (cin,))


def micro_network(kind: str, cin: int, cout: int, k: int, stride: int, hw: int):
    """A MindSpore cell with exactly the op of ``micro_table`` (conv/dwconv with BN + ReLU)."""
    import mindspore.nn as nn
    import mindspore.ops as ops

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


def run_micro_benchmarks(repeats: int = 20) -> list[tuple[LayerTable, float]]:
    """Time every ``MICRO_BENCHMARKS`` op; returns ``(table, latency_ms)`` pairs."""
    out = []
    for kind, cin, cout, k, stride, hw in MICRO_BENCHMARKS:
        net = micro_network(kind, cin, cout, k, stride, hw)
        shape = (cin,) if kind == "dense" else (cin, hw, hw)
        ms_ = measure_latency_ms(net, shape, repeats=repeats)
        out.append((micro_table(kind, cin, cout, k, stride, hw), ms_))
    return out


def calibrate_host(*, force: bool = False, repeats: int = 20, extra_samples: Sequence[tuple] = ()):
    """Fit ``host-cpu`` to micro-benchmarks on this machine (cached; ``force`` re-measures).

    ``extra_samples`` (``(table, latency_ms[, policy])``) are measured networks added to the
    fit, e.g. a few whole networks. Returns the calibrated ``DeviceSpec``.
    """
    from automc.hw_cost.calibration import apply_profile, calibrate, save_profile
    from automc.hw_cost.specs import DEVICES_DIR, load_device

    base = load_device(DEVICES_DIR / "host-cpu.yaml")
    if not force and not extra_samples:
        cached = cached_host_profile(base)
        if cached is not None:
            return cached
    samples = list(run_micro_benchmarks(repeats=repeats)) + list(extra_samples)
    profile = calibrate(base, samples, source=f"host micro-benchmarks ({len(samples)} networks)")
    profile = type(profile)(**{**profile.to_dict(), "machine": f"{_cpu_model()} x{os.cpu_count()} ({machine_key()})"})
    save_profile(profile, host_profile_path())
    return apply_profile(base, profile)
