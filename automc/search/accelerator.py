"""Where MindSpore runs: ``execution.accelerator`` (auto | cpu | gpu | ascend), set with MindSpore
2.8's device API (``mindspore.set_device``) in the driver and in every Ray worker before any
network is built, so baseline training, sensitivity analysis, trials and the final fine-tune all
run there.

``auto`` is the first available of ascend, gpu, cpu (MindSpore's own checks,
``mindspore.device_context.<gpu|ascend>.is_available``). A requested accelerator whose runtime is
missing is one line naming what to install. CPU-only settings (``MS_DEV_HOST_BLOCKING_RUN``,
``runtime_num_threads``) apply only on CPU. Inside a Ray worker, Ray restricts the visible devices
(``CUDA_VISIBLE_DEVICES`` / ``ASCEND_RT_VISIBLE_DEVICES``): MindSpore uses device 0 of that view,
and the trial records the physical id Ray assigned.
"""

from __future__ import annotations

import os
from pathlib import Path

from automc.errors import ConfigError
from automc.training import use_host_blocking_run

TARGETS = {"cpu": "CPU", "gpu": "GPU", "ascend": "Ascend"}
AUTO_ORDER = ("ascend", "gpu", "cpu")
#: Ray's resource name and the variable Ray sets per worker, per accelerator
RAY_RESOURCE = {"gpu": ("GPU", "CUDA_VISIBLE_DEVICES"), "ascend": ("NPU", "ASCEND_RT_VISIBLE_DEVICES")}


def available(name: str) -> bool:
    """Whether MindSpore can run on ``name`` (cpu, gpu, ascend) in this process."""
    if name == "cpu":
        return True
    import logging

    import mindspore as ms

    logger = logging.getLogger("mindspore")
    level = logger.level
    logger.setLevel(logging.ERROR)  # is_available warns "Device GPU is not available" on every call
    try:
        return bool(getattr(ms.device_context, name).is_available())
    finally:
        logger.setLevel(level)


def missing_runtime(name: str) -> str:
    """What to install for ``name``, as MindSpore found it missing (one line)."""
    import mindspore as ms

    plugins = Path(ms.__file__).parent / "lib" / "plugin"
    if name == "gpu":
        cudas = sorted(p.name[3:] for p in plugins.glob("gpu*") if p.is_dir() and p.name[3:])
        return (f"execution.accelerator: gpu, but MindSpore {ms.__version__} finds no usable GPU here: install an "
                f"NVIDIA driver and the CUDA toolkit of one of its GPU plugins (CUDA {' or '.join(cudas) or '11.x'}) "
                "with cuDNN 8, or set execution.accelerator: cpu")
    from mindspore._c_expression import MSContext

    missing = next((line.split("failed.", 1)[-1].strip() for line in MSContext.get_instance().load_plugin_error().splitlines()
                    if "ascend" in line.lower()), "")
    return (f"execution.accelerator: ascend, but MindSpore {ms.__version__} finds no Ascend runtime here"
            f"{f' ({missing})' if missing else ''}: install Huawei CANN for your Ascend driver and source its "
            "set_env.sh, or set execution.accelerator: cpu")


def resolve(name: str) -> str:
    """``name``, or for ``auto`` the first available of ascend, gpu, cpu; a requested accelerator
    that is not available is a ``ConfigError`` naming its missing runtime."""
    if name == "auto":
        return next(n for n in AUTO_ORDER if available(n))
    if name not in TARGETS:
        raise ConfigError(f"execution.accelerator {name!r}; use one of auto, {', '.join(TARGETS)}")
    if not available(name):
        raise ConfigError(missing_runtime(name))
    return name


def use(name: str, device_id: int = 0, *, cpu_threads: int | None = None) -> str:
    """Run this process's MindSpore on ``name`` (resolved; device ``device_id``), before any
    kernel runs; on CPU also synchronous host runs and ``cpu_threads`` kernel threads. Returns
    the resolved accelerator. A process whose MindSpore already runs elsewhere cannot switch."""
    import mindspore as ms

    name = resolve(name)
    target = TARGETS[name]
    if name != "cpu":
        count = int(getattr(ms.device_context, name).device_count())
        if device_id >= count:
            raise ConfigError(f"execution.device_id: {device_id}, but this process sees {count} {name} device(s) "
                              f"(ids 0..{count - 1}; Ray workers see only the devices Ray gave them)")
    device = (target, 0 if name == "cpu" else int(device_id))
    if tuple(ms.get_current_device()) != device:
        try:
            ms.set_device(target, None if name == "cpu" else int(device_id))
        except RuntimeError as exc:
            raise ConfigError(f"execution.accelerator {name}: this process already runs MindSpore on "
                              f"{ms.get_current_device()} ({str(exc).splitlines()[0]}); run the search in a new "
                              "process") from None
    if name == "cpu":
        use_host_blocking_run()
        if cpu_threads:
            ms.set_context(runtime_num_threads=int(cpu_threads))
    return name


def physical_device_id(name: str, device_id: int = 0) -> str:
    """The physical id behind ``device_id`` of this process's view (Ray restricts it per worker
    with ``CUDA_VISIBLE_DEVICES`` / ``ASCEND_RT_VISIBLE_DEVICES``); ``""`` on CPU."""
    if name not in RAY_RESOURCE:
        return ""
    visible = os.environ.get(RAY_RESOURCE[name][1], "")
    ids = [v.strip() for v in visible.split(",") if v.strip()]
    return ids[device_id] if device_id < len(ids) else str(device_id)


def ray_assigned_ids() -> dict[str, list[str]]:
    """In a Ray worker: the accelerator ids Ray assigned to it, by resource (``{"GPU": ["1"]}``)."""
    import ray

    return {k: list(v) for k, v in ray.get_runtime_context().get_accelerator_ids().items() if v}


def current() -> dict[str, str]:
    """Where this process's MindSpore runs, as a trial records it: ``accelerator``, ``device_id``
    (physical; ``""`` on CPU), ``mindspore_device`` (MindSpore's own report, e.g. ``CPU:0``) and,
    in a Ray worker with assigned accelerators, ``ray_devices`` (e.g. ``NPU:3,GPU:1``)."""
    import mindspore as ms

    target, index = ms.get_current_device()
    name = {v: k for k, v in TARGETS.items()}.get(target, target.lower())
    out = {"accelerator": name, "device_id": physical_device_id(name, int(index)),
           "mindspore_device": f"{target}:{index}"}
    try:
        import ray

        if ray.is_initialized():
            assigned = ray_assigned_ids()
            if assigned:
                out["ray_devices"] = ",".join(f"{k}:{'+'.join(v)}" for k, v in sorted(assigned.items()))
    except ImportError:
        pass
    return out
