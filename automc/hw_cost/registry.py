"""The device registry: names to specs, with their fitted profiles applied.

Built-in devices are the YAML files in ``automc/hw_cost/devices/``, registered by file name and
read when first used; users load their own with ``load_device(path)`` or add them with
``register_device`` (``use_device`` registers a YAML path under the name it states, as an
experiment's ``devices:`` entries are), and the YAML files in the folders of ``$AUTOMC_DEVICES``
(``os.pathsep``-separated) are known by the names they state, like the built-in ones. A device
YAML that names a calibration profile is returned with it applied, and ``host-cpu`` with this
machine's cached profile (``calibrate_host``) when there is one. ``estimate``, ``calibrate`` and ``apply_profile`` here take a device by name, YAML path
or spec; the modules below them take specs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from automc.analysis.layer_table import LayerTable
from automc.errors import ConfigError
from automc.hw_cost import calibration, model
from automc.hw_cost.calibration import CalibrationProfile, Sample, load_profile
from automc.hw_cost.host import cached_host_profile
from automc.hw_cost.lut import LatencyLUT
from automc.hw_cost.model import CostEstimate
from automc.hw_cost.specs import DEVICES_DIR, DeviceSpec, read_device
from automc.policy import Policy
from automc.registry import Registry


def _builtin_devices() -> Registry[DeviceSpec | Path]:
    """The built-in device files, by name (read when first used)."""
    registry: Registry[DeviceSpec | Path] = Registry("device")
    for path in sorted(DEVICES_DIR.glob("*.yaml")):
        registry.register(path.stem, path)
    return registry


#: device name -> its spec, or the YAML path of a device not read yet
DEVICES = _builtin_devices()
BUILTIN = frozenset(DEVICES.names())
#: folders (``os.pathsep``-separated) whose device YAMLs are known by name, e.g. ``automc calibrate``'s output
USER_DEVICES_ENV = "AUTOMC_DEVICES"


def user_devices() -> dict[str, Path]:
    """The devices of the ``$AUTOMC_DEVICES`` folders: the name each YAML states -> its path.
    A folder that does not exist, a file that does not parse, a name two files state or a
    built-in name is a ``ConfigError`` saying which file to fix."""
    out: dict[str, Path] = {}
    for folder in filter(None, os.environ.get(USER_DEVICES_ENV, "").split(os.pathsep)):
        where = Path(folder).expanduser()
        if not where.is_dir():
            raise ConfigError(f"{USER_DEVICES_ENV}: {folder} is not a folder; set it to the folder(s) of your device YAMLs")
        for path in sorted(where.glob("*.y*ml")):
            spec, _ = read_device(path)
            if spec.name in BUILTIN or spec.name in out:
                other = "a built-in device" if spec.name in BUILTIN else f"{out[spec.name]} too"
                raise ConfigError(f"{path} names device {spec.name!r}, {other}; give it another name: field")
            out[spec.name] = path
    return out


def use_device(entry: str | Path) -> DeviceSpec:
    """The device of an experiment's ``devices:`` entry: a name, or a YAML path whose device is
    registered under the name it states (so ``latency@<name>`` finds it; a built-in name is refused)."""
    text = str(entry)
    if text in DEVICES or not (text.endswith((".yaml", ".yml")) or Path(text).expanduser().is_file()):
        return get_device(text)
    spec = load_device(text)
    if spec.name in BUILTIN:
        raise ConfigError(f"{text} names device {spec.name!r}, a built-in device; give it another name: field")
    return register_device(spec)


def load_device(path_or_name: str | Path, *, datasheet: bool = False) -> DeviceSpec:
    """A device from a YAML file path, or a registered name (see ``list_devices``).

    A YAML may name a calibration ``profile`` (fitted to published measurements), which is
    applied; ``datasheet=True`` returns the spec without it (the prior a new fit starts from).
    """
    text = str(path_or_name)
    path = Path(text).expanduser()
    if not path.exists():
        if datasheet and (DEVICES_DIR / f"{text}.yaml").exists():
            return load_device(DEVICES_DIR / f"{text}.yaml", datasheet=True)
        if text in DEVICES or text in user_devices():
            return get_device(text)
        raise ConfigError(f"device file {path} does not exist; pass a YAML path or one of: {', '.join(list_devices())}")
    spec, profile = read_device(path)
    if profile is not None and not datasheet:
        spec = calibration.apply_profile(spec, load_profile(profile))
    return spec


def register_device(spec: DeviceSpec | str | Path, *, name: str | None = None) -> DeviceSpec:
    """Add a device (a spec or a YAML path) to the registry under ``name`` (default: its own)."""
    if not isinstance(spec, DeviceSpec):
        spec = load_device(spec)
    DEVICES.register(name or spec.name, spec)
    return spec


def list_devices() -> list[str]:
    """Known device names (kebab-case, as used in ``latency@<device>`` objectives): the registered
    ones and those of the ``$AUTOMC_DEVICES`` folders."""
    return sorted(set(DEVICES.names()) | set(user_devices()))


def get_device(name: str | DeviceSpec | Path) -> DeviceSpec:
    """A ``DeviceSpec`` from a registry name, a YAML path or a spec (returned as is).

    ``host-cpu`` returns the calibrated profile of this machine when one is cached
    (see ``automc.hw_cost.calibrate_host``), else the uncalibrated default.
    """
    if isinstance(name, DeviceSpec):
        return name
    key = str(name)
    if key not in DEVICES:
        if key.endswith((".yaml", ".yml")) or Path(key).exists():
            return _device_file(Path(key).expanduser())
        found = user_devices().get(key)
        if found is not None:  # read once, like a built-in
            return register_device(load_device(found), name=key)
        raise ConfigError(f"unknown device {key!r}; valid names: {', '.join(list_devices())} (or a path to a device YAML)")
    entry = DEVICES.get(key)
    if isinstance(entry, Path):
        entry = load_device(entry)
        DEVICES.register(key, entry)
    if key == "host-cpu":
        calibrated = cached_host_profile(entry)
        if calibrated is not None:
            return calibrated
    return entry


_FILES: dict[tuple[str, int], DeviceSpec] = {}


def _device_file(path: Path) -> DeviceSpec:
    """A device YAML path's spec, read again only when the file changed."""
    try:
        key = (str(path.resolve()), path.stat().st_mtime_ns)
    except OSError:
        return load_device(path)  # says what is wrong with the path
    if key not in _FILES:
        _FILES[key] = load_device(path)
    return _FILES[key]


# ------------------------------------------------------------------ cost functions by device
def estimate(
    table: LayerTable,
    policies: Policy | Sequence[Policy] | None,
    device: str | Path | DeviceSpec,
    *,
    lut: LatencyLUT | None = None,
) -> CostEstimate:
    """Latency, energy, size, MACs, BitOPs and params of each policy on ``device``.

    ``device`` is a registry name (``"arm-a76"``), a ``DeviceSpec`` or a device YAML path;
    ``lut`` overrides the device's own measured table, if any.
    """
    return model.estimate(table, policies, get_device(device), lut=lut)


def calibrate(
    device: str | Path | DeviceSpec, samples: Sequence[Sample] | Iterable[tuple], **options: Any
) -> CalibrationProfile:
    """Fit ``device`` (a name, YAML path or spec) to measured ``samples``; the ``options`` and
    the samples' forms are those of ``automc.hw_cost.calibration.calibrate``."""
    return calibration.calibrate(get_device(device), samples, **options)


def apply_profile(device: str | Path | DeviceSpec, profile: CalibrationProfile) -> DeviceSpec:
    """The device (a name, YAML path or spec) with the profile's fitted knobs (a new spec)."""
    return calibration.apply_profile(get_device(device), profile)
