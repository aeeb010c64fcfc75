"""Hardware cost models: device specs, the roofline estimator, LUTs, calibration, host timing.

``estimate(table, policies, "arm-a76")`` costs many policies at once from the layer table
alone (no network is built). MindSpore is imported only by the host-timing functions.
"""

from automc.hw_cost.calibration import (
    CalibrationProfile,
    Sample,
    apply_profile,
    calibrate,
    load_profile,
    save_profile,
    series_profile,
)
from automc.hw_cost.lut import LatencyLUT, load_lut, save_lut
from automc.hw_cost.model import CostEstimate, estimate, layer_size_bytes
from automc.hw_cost.specs import (
    COST_CLASSES,
    DeviceSpec,
    get_device,
    list_devices,
    load_device,
    register_device,
    spec_from_dict,
)


def measure_latency_ms(net, input_shape, **kwargs):
    """Median batch-1 latency of a MindSpore cell on this machine (see ``automc.hw_cost.host``)."""
    from automc.hw_cost.host import measure_latency_ms as _measure

    return _measure(net, input_shape, **kwargs)


def calibrate_host(**kwargs):
    """Calibrate and cache the ``host-cpu`` device from micro-benchmarks (see ``automc.hw_cost.host``)."""
    from automc.hw_cost.host import calibrate_host as _calibrate_host

    return _calibrate_host(**kwargs)


__all__ = [
    "COST_CLASSES",
    "CalibrationProfile",
    "CostEstimate",
    "DeviceSpec",
    "LatencyLUT",
    "Sample",
    "apply_profile",
    "calibrate",
    "calibrate_host",
    "estimate",
    "get_device",
    "layer_size_bytes",
    "list_devices",
    "load_device",
    "load_lut",
    "load_profile",
    "measure_latency_ms",
    "register_device",
    "save_lut",
    "save_profile",
    "series_profile",
    "spec_from_dict",
]
