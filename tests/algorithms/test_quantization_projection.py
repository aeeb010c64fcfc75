"""HAQ-style budget projection of bit-width policies (pure numpy, no network)."""

from __future__ import annotations

import numpy as np
import pytest

from automc.algorithms.quantization import project_bits, uniform_policy, weight_size_bytes
from automc.analysis.layer_table import LayerTable
from automc.errors import CompressionError, ConfigError
from automc.policy import Policy

ROWS = [
    dict(name="conv1", kind="conv", cin=3, cout=16, kh=3, kw=3, h_in=32, w_in=32, h_out=32, w_out=32),
    dict(name="conv2", kind="conv", cin=16, cout=32, kh=3, kw=3, h_in=32, w_in=32, h_out=16, w_out=16, stride=2),
    dict(name="pool", kind="pool", cin=32, cout=32, h_in=16, w_in=16, h_out=8, w_out=8),
    dict(name="fc1", kind="dense", cin=2048, cout=128, has_bias=True),
    dict(name="fc2", kind="dense", cin=128, cout=10, has_bias=True),
]
LAYERS = ["conv1", "conv2", "fc1", "fc2"]


@pytest.fixture()
def table():
    return LayerTable.from_rows(ROWS, input_shape=(3, 32, 32))


def weight_bytes(table, policy):
    """Budget in the tests: weights x w_bits / 8 from the layer table."""
    shapes = table.resolve(policy)
    return float((shapes.weights * shapes.w_bits / 8).sum())


def test_projection_meets_the_budget_and_only_lowers(table):
    start = uniform_policy(LAYERS, w_bits=8)
    float_bytes = weight_bytes(table, Policy())
    budget = 0.125 * float_bytes  # = uniform 4 bits
    out = project_bits(table, start, budget_fn=weight_bytes, budget=budget, bit_choices=[2, 4, 6, 8])
    assert weight_bytes(table, out) <= budget
    assert all(out.w_bits[n] <= start.w_bits[n] and out.w_bits[n] in (2, 4, 6, 8) for n in LAYERS)
    assert out.a_bits == start.a_bits
    # already within budget: unchanged
    assert project_bits(table, out, budget_fn=weight_bytes, budget=budget, bit_choices=[2, 4, 6, 8]) == out


def test_projection_lowers_the_cheapest_per_loss_layer_first(table):
    start = uniform_policy(LAYERS, w_bits=8)
    # Lowering any single layer by one step fits; with fc1 much less sensitive it must be fc1.
    budget = weight_bytes(table, start) - 1
    sens = {"conv1": 1.0, "conv2": 1.0, "fc1": 0.01, "fc2": 1.0}
    out = project_bits(table, start, budget_fn=weight_bytes, budget=budget, bit_choices=[2, 4, 6, 8], sensitivity=sens)
    assert dict(out.w_bits) == {"conv1": 8, "conv2": 8, "fc1": 6, "fc2": 8}
    # Make conv2 the least sensitive instead: it goes first.
    sens = {"conv1": 1.0, "conv2": 0.01, "fc1": 1.0, "fc2": 1.0}
    out = project_bits(table, start, budget_fn=weight_bytes, budget=budget, bit_choices=[2, 4, 6, 8], sensitivity=sens)
    assert dict(out.w_bits) == {"conv1": 8, "conv2": 6, "fc1": 8, "fc2": 8}
    # Equal sensitivity: saving per loss is equal per step, ties go to the largest saving (fc1).
    out = project_bits(table, start, budget_fn=weight_bytes, budget=budget, bit_choices=[2, 4, 6, 8])
    assert dict(out.w_bits) == {"conv1": 8, "conv2": 8, "fc1": 6, "fc2": 8}


def test_projection_spreads_bits_before_dropping_one_layer_far(table):
    # noise 2^-2b makes 8->6 much cheaper in loss than 4->2, so with equal sensitivity the
    # projection takes every layer to 6 before any layer goes to 4.
    start = uniform_policy(LAYERS, w_bits=8)
    budget = weight_bytes(table, uniform_policy(LAYERS, w_bits=6))
    out = project_bits(table, start, budget_fn=weight_bytes, budget=budget, bit_choices=[2, 4, 6, 8])
    assert dict(out.w_bits) == {n: 6 for n in LAYERS}


def test_missing_layers_count_as_float_and_a_bits_can_be_projected(table):
    def bitops(table, policy):
        return float(table.resolve(policy).bitops.sum())

    start = Policy(w_bits={"conv1": 8})
    budget = bitops(table, uniform_policy(LAYERS, w_bits=8))
    out = project_bits(table, start, budget_fn=bitops, budget=budget, bit_choices=[4, 8], fields=("w_bits", "a_bits"))
    assert bitops(table, out) <= budget
    assert set(out.w_bits) | set(out.a_bits) <= set(LAYERS)


def test_size_budget_helper_counts_fp32_biases(table):
    p = uniform_policy(LAYERS, w_bits=4)
    expected = weight_bytes(table, p) + (128 + 10) * 4
    assert weight_size_bytes(table, p) == pytest.approx(expected)


def test_projection_errors(table):
    start = uniform_policy(LAYERS, w_bits=8)
    with pytest.raises(CompressionError, match="cannot be met"):
        project_bits(table, start, budget_fn=weight_bytes, budget=1.0, bit_choices=[4, 8])
    with pytest.raises(ConfigError, match="bit_choices entry = 1 is out of range"):
        project_bits(table, start, budget_fn=weight_bytes, budget=1e9, bit_choices=[1, 4])
    with pytest.raises(ConfigError, match=r"w_bits\['fc1'\] = 0"):
        project_bits(table, Policy(w_bits={"fc1": 0}), budget_fn=weight_bytes, budget=1e9, bit_choices=[4])
    with pytest.raises(ConfigError, match="fields"):
        project_bits(table, start, budget_fn=weight_bytes, budget=1e9, bit_choices=[4], fields=("bits",))


def test_projection_is_fast(table):
    import time

    start = uniform_policy(LAYERS, w_bits=8)
    t0 = time.perf_counter()
    project_bits(table, start, budget_fn=weight_bytes, budget=0.07 * weight_bytes(table, Policy()), bit_choices=[2, 4, 6, 8])
    assert time.perf_counter() - t0 < 1.0
    assert np.isfinite(weight_bytes(table, start))
