import math

import pytest

from automc.hw_cost.host import machine_key, micro_network, micro_table


def test_measure_latency_of_a_tiny_network():
    pytest.importorskip("mindspore")
    from automc.hw_cost import measure_latency_ms

    net = micro_network("conv", 8, 8, 3, 1, 16)
    ms = measure_latency_ms(net, (8, 16, 16), repeats=3, warmup=1)
    assert math.isfinite(ms) and ms > 0
    assert micro_table("conv", 8, 8, 3, 1, 16).totals()["macs"] == 8 * 8 * 9 * 256


def test_machine_key_is_stable():
    assert machine_key() == machine_key() and len(machine_key()) == 12
