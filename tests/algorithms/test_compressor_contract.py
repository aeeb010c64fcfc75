"""The contract every registered compressor keeps, on a small real network (ResNet-20 at width 8,
which declares an elastic space, so NAS has decisions too). A compressor registered in
``automc.algorithms.COMPRESSORS`` is checked here without a test of its own."""

from __future__ import annotations

import numpy as np
import pytest

import mindspore as ms

from automc.algorithms import COMPRESSORS
from automc.algorithms.quantization import weight_size_bytes
from automc.models import build_model
from automc.policy import FLOAT_BITS, Policy

from algorithm_helpers import elastic_table, randomise_bn

SHAPE = (3, 16, 16)
CLASSES = 10


@pytest.fixture(scope="module")
def baseline():
    net = build_model("resnet20", num_classes=CLASSES, input_shape=SHAPE, width=8)
    randomise_bn(net)
    x = np.random.default_rng(0).normal(size=(8, *SHAPE)).astype(np.float32)
    return net, elastic_table(net, SHAPE), x


def _outputs(net, x: np.ndarray) -> np.ndarray:
    net.set_train(False)
    return net(ms.Tensor(x)).asnumpy()


def _stored_bytes(net) -> int:
    """Bytes of every parameter (weights, biases, batch-norm statistics, scales, integer codes)."""
    return sum(p.asnumpy().nbytes for _, p in net.parameters_and_names())


def _most_compressing_policy(decisions) -> Policy:
    """Every knob at its most compressing value: the largest ratio, the smallest choice (bits,
    width, depth, kernel)."""
    sections: dict[str, dict] = {}
    for d in decisions:
        sections.setdefault(d.section, {})[d.key] = d.high if d.kind == "float" else min(d.choices)
    return Policy(**sections)


@pytest.mark.parametrize("name", COMPRESSORS.names())
def test_applied_and_deployed_networks_run_and_shrink_as_the_table_predicts(name, baseline):
    net, table, x = baseline
    compressor = COMPRESSORS.get(name)()  # the defaults of the YAML section
    decisions = compressor.decisions(table)
    assert decisions, f"{name} offers no decision on ResNet-20"
    policy = _most_compressing_policy(decisions)
    before, before_bytes = _outputs(net, x), _stored_bytes(net)

    applied = compressor.apply(net, table, policy, calib_x=x)
    applied_out = _outputs(applied, x)
    assert applied_out.shape == (len(x), CLASSES) and np.isfinite(applied_out).all()
    np.testing.assert_array_equal(_outputs(net, x), before)  # the baseline is left alone
    assert _stored_bytes(net) == before_bytes

    deployed = compressor.to_deploy_form(applied)
    deployed_out = _outputs(deployed, x)
    assert deployed_out.shape == applied_out.shape
    np.testing.assert_allclose(deployed_out, applied_out, atol=1e-5 * np.abs(applied_out).max())

    # smaller than the baseline where the layer table says the policy shrinks the weights, the same
    # size where it does not; lower bit-widths are realised in the deploy form (the applied one is float)
    declared_smaller = weight_size_bytes(table, policy) < weight_size_bytes(table, Policy())
    lowers_bits = any(b < FLOAT_BITS for b in policy.w_bits.values())
    applied_bytes, deployed_bytes = _stored_bytes(applied), _stored_bytes(deployed)
    assert deployed_bytes <= before_bytes and deployed_bytes <= applied_bytes
    assert (deployed_bytes < before_bytes) == declared_smaller
    assert (deployed_bytes < applied_bytes) == lowers_bits
