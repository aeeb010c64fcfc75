"""Hardware cost models: device specs, the roofline estimator, LUTs, calibration, host timing.

``estimate(table, policies, "arm-a76")`` costs many policies at once from the layer table
alone (no network is built). MindSpore is imported only by the host-timing functions and by
``calibrate_device`` when it traces a measured network.

Modules, each importing only those before it: ``lut`` and ``specs`` (plain data), ``model``
(the numpy cost model), ``calibration`` (fitting profiles), ``scaling`` (factors on a device's
terms from a few measurements), ``host`` (timing on this machine), ``registry`` (device names, with
fitted profiles applied), then ``published`` and ``nb201`` (fits to published latencies), and
``user`` (a user's own device: a measurements CSV fitted into a device YAML, ``automc calibrate``).
"""

from automc.hw_cost.calibration import (
    CalibrationProfile,
    Sample,
    device_profile,
    load_profile,
    save_profile,
    series_profile,
)
from automc.hw_cost.host import calibrate_host, measure_latency_ms
from automc.hw_cost.lut import LatencyLUT, load_lut, save_lut
from automc.hw_cost.model import CostEstimate, layer_size_bytes
from automc.hw_cost.registry import (
    USER_DEVICES_ENV,
    apply_profile,
    calibrate,
    estimate,
    get_device,
    list_devices,
    load_device,
    register_device,
    use_device,
    user_devices,
)
from automc.hw_cost.scaling import ClassTime, Measured, ScaleFit, fit_scales
from automc.hw_cost.specs import COST_CLASSES, DEVICES_DIR, DeviceSpec, spec_from_dict
from automc.hw_cost.user import CalibratedDevice, MeasuredRow, calibrate_device, read_measurements

__all__ = [
    "COST_CLASSES",
    "DEVICES_DIR",
    "USER_DEVICES_ENV",
    "CalibratedDevice",
    "CalibrationProfile",
    "ClassTime",
    "CostEstimate",
    "DeviceSpec",
    "LatencyLUT",
    "Measured",
    "MeasuredRow",
    "Sample",
    "ScaleFit",
    "apply_profile",
    "calibrate",
    "calibrate_device",
    "calibrate_host",
    "device_profile",
    "estimate",
    "fit_scales",
    "get_device",
    "layer_size_bytes",
    "list_devices",
    "load_device",
    "load_lut",
    "load_profile",
    "measure_latency_ms",
    "read_measurements",
    "register_device",
    "save_lut",
    "save_profile",
    "series_profile",
    "spec_from_dict",
    "use_device",
    "user_devices",
]
