"""The elastic form of real zoo networks: the masked network computes exactly the sub-network
``extract`` builds (what sandwich-rule training trains is what trials inherit). Training itself
is tested end to end in ``tests/search/test_nas_search.py``."""

from __future__ import annotations

import numpy as np
import pytest

import mindspore as ms

from automc.algorithms.nas import ElasticNAS, extract
from automc.algorithms.nas import ElasticNetwork, sandwich
from automc.models.zoo import mobilenetv2, resnet20, vgg11
from automc.training import predict

from algorithm_helpers import elastic_table, randomise_bn

ms.set_context(mode=ms.PYNATIVE_MODE)


NETS = {
    "mobilenetv2": ((3, 32, 32), lambda shape: mobilenetv2(input_shape=shape, width_mult=0.35, last_channels=64, kernel=5)),
    "resnet20": ((3, 16, 16), lambda shape: resnet20(input_shape=shape, width=8)),
    "vgg11": ((3, 32, 32), lambda shape: vgg11(input_shape=shape, width_mult=0.25)),
}


@pytest.mark.parametrize("name", list(NETS))
def test_masked_network_computes_the_extracted_subnetwork(name):
    """Width masks (L1 order), centre-kernel masks and depth gates give the same outputs as the
    standalone sub-network ``extract`` builds, for the largest, the smallest and random choices;
    closing restores the original cells, weights and parameter names."""
    shape, build = NETS[name]
    net = build(shape)
    randomise_bn(net, 3)
    table = elastic_table(net, shape)
    choices = ElasticNAS(width=[0.25, 0.5, 0.75], depth=[1, 2], kernel=[3]).choices(table)
    assert any(k.endswith(".depth") for k in choices) and any(k.endswith(".width") for k in choices)
    names_before = [p.name for p in net.get_parameters()]
    x = np.random.default_rng(0).normal(size=(6, *shape)).astype(np.float32)
    elastic = ElasticNetwork(net, table.elastic)
    subs = sandwich(choices, 3, np.random.default_rng(1))
    for nas in subs:
        expected = predict(extract(elastic.close(), table, nas), x)  # from the plain network
        elastic = ElasticNetwork(net, table.elastic)
        elastic.activate(nas)
        got = predict(net, x)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4, err_msg=str(nas))
    elastic.close()
    assert [p.name for p in net.get_parameters()] == names_before
    assert not any(type(c).__name__ in ("MaskedCell", "GatedBlock") for _, c in net.cells_and_names())
