import pytest

from automc.analysis.layer_table import LayerTable


def conv_table(cin: int = 64, cout: int = 16, k: int = 3, hw: int = 28, kind: str = "conv") -> LayerTable:
    row = dict(name="conv", kind=kind, cin=cin, cout=cout, kh=k, kw=k, h_in=hw, w_in=hw, h_out=hw, w_out=hw, has_bn=True, has_act=True)
    if kind == "dwconv":
        row["groups"] = cin
    return LayerTable.from_rows([row], input_shape=(cin, hw, hw))


@pytest.fixture
def small_table() -> LayerTable:
    rows = [
        dict(name="conv", kind="conv", cin=3, cout=16, kh=3, kw=3, h_in=32, w_in=32, h_out=32, w_out=32, has_bn=True, has_act=True),
        dict(name="pool", kind="pool", cin=16, cout=16, kh=32, kw=32, stride=32, h_in=32, w_in=32, h_out=1, w_out=1),
        dict(name="fc", kind="dense", cin=64, cout=10, has_bias=True),
    ]
    return LayerTable.from_rows(rows, input_shape=(3, 32, 32))
