"""The MindIR downgrade pass, on MindIR files really exported by the installed MindSpore."""

from __future__ import annotations

import pytest
from mindspore import nn

from automc.deploy.lite._compat import DOWNGRADE_TABLE, MINDIR_LITE_VERSION, downgrade_mindir, downgrade_model, read_mindir
from automc.errors import DeployError


def _prims(model):
    """op_type -> list of (attributes dict, n_inputs) of the nodes using it."""
    from automc.deploy.lite._compat import _scalar

    prims = {p.name: p for p in model.primitives}
    consts = {n.output[0] for n in model.graph.node if n.op_type == "Constant"}
    out = {}
    for node in model.graph.node:
        if node.op_type.startswith("REF::"):
            p = prims[node.op_type[5:]]
            attrs = {a.name: _scalar(a) for a in p.attribute if a.name not in ("input_names", "output_names")}
            const_inputs = [i for i, name in enumerate(node.input) if name in consts]
            out.setdefault(p.op_type, []).append((attrs, const_inputs))
    return out


def test_exported_mindir_needs_the_pass(exported):
    model = read_mindir(exported["small_cnn"])
    assert model.mind_ir_version > MINDIR_LITE_VERSION
    before = _prims(model)
    assert before["MatMul"][0][1] == [2, 3]  # transpose flags are inputs in MindSpore >= 2.3
    assert before["BatchNorm"][0][1] == [5, 6, 7, 8]


def test_small_cnn_attrs_moved(exported, tmp_path):
    report = downgrade_mindir(exported["small_cnn"], tmp_path / "v1.mindir")
    assert report.from_version > MINDIR_LITE_VERSION
    assert report.ops() == {"BatchNorm": 2, "AvgPool": 1, "MatMul": 1, "BiasAdd": 2}  # conv2 + fc
    model = read_mindir(tmp_path / "v1.mindir")
    assert model.mind_ir_version == MINDIR_LITE_VERSION
    ops = _prims(model)
    (mm_attrs, mm_consts), = ops["MatMul"]
    assert mm_consts == [] and mm_attrs["transpose_a"] is False and mm_attrs["transpose_b"] is True
    assert all(c == [] and a["format"] == "NCHW" for a, c in ops["BiasAdd"])
    for bn_attrs, bn_consts in ops["BatchNorm"]:
        assert bn_consts == []
        assert bn_attrs["is_training"] is False and bn_attrs["epsilon"] == pytest.approx(1e-5)
        assert bn_attrs["momentum"] == pytest.approx(0.1) and bn_attrs["format"] == "NCHW"
    (ap_attrs, ap_consts), = ops["AvgPool"]
    assert ap_consts == []
    assert ap_attrs["kernel_size"] == (1, 1, 2, 2) and ap_attrs["strides"] == (1, 1, 2, 2)
    assert ap_attrs["pad_mode"] == "VALID"
    # Ops that already used attributes are untouched.
    (conv_attrs, _), _ = ops["Conv2D"]
    assert conv_attrs["out_channel"] == 8 and ops["MaxPool"][0][0]["kernel_size"] == (1, 1, 2, 2)


def test_resnet_and_mobilenet_attrs_moved(exported, tmp_path):
    report = downgrade_mindir(exported["tiny_resnet"], tmp_path / "r.mindir")
    assert report.ops()["ReduceMean"] == 1 and report.ops()["BatchNorm"] == 6
    ops = _prims(read_mindir(tmp_path / "r.mindir"))
    (rm_attrs, rm_consts), = ops["ReduceMean"]
    assert rm_attrs["keep_dims"] is False and rm_consts == [1]  # the axis stays an input
    downgrade_mindir(exported["tiny_mobilenetv2"], tmp_path / "m.mindir")
    ops = _prims(read_mindir(tmp_path / "m.mindir"))
    groups = sorted(a["group"] for a, _ in ops["Conv2D"])
    assert groups[-1] == 64  # depthwise conv kept its group attribute
    assert "ReLU6" in ops and all(c == [] for _, c in ops["BatchNorm"])


class _Softmaxed(nn.Cell):
    def __init__(self):
        super().__init__()
        self.fc = nn.Dense(12, 4)
        self.softmax = nn.Softmax()

    def construct(self, x):
        return self.softmax(self.fc(x.reshape(x.shape[0], -1)))


def test_softmax_and_reshape(tmp_path):
    import numpy as np

    from automc.deploy import export_mindir

    path = export_mindir(_Softmaxed(), np.zeros((2, 3, 2, 2), np.float32), tmp_path / "s")
    downgrade_mindir(path, tmp_path / "s1.mindir")
    ops = _prims(read_mindir(tmp_path / "s1.mindir"))
    (sm_attrs, sm_consts), = ops["Softmax"]
    assert sm_attrs["axis"] == (-1,) and sm_consts == []
    assert ops["Reshape"][0][1] == [1]  # Lite reads the shape as an input


def test_missing_rule_is_reported_with_the_op_name(exported):
    model = read_mindir(exported["small_cnn"])
    table = {k: v for k, v in DOWNGRADE_TABLE.items() if k != "MatMul"}
    with pytest.raises(DeployError, match="MatMul.*DOWNGRADE_TABLE"):
        downgrade_model(model, table=table)


def test_not_a_mindir(tmp_path):
    bad = tmp_path / "bad.mindir"
    bad.write_bytes(b"\xff\xff not protobuf")
    with pytest.raises(DeployError):
        downgrade_mindir(bad, tmp_path / "out.mindir")


class _InplaceResidual(nn.Cell):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, pad_mode="pad", padding=1)

    def construct(self, x):
        out = self.conv(x)
        out += x
        return out


def test_inplace_add_becomes_add(tmp_path):
    import numpy as np

    from automc.deploy import export_mindir

    path = export_mindir(_InplaceResidual(), np.zeros((1, 3, 4, 4), np.float32), tmp_path / "ip")
    before = _prims(read_mindir(path))
    report = downgrade_mindir(path, tmp_path / "ip1.mindir")
    after = _prims(read_mindir(tmp_path / "ip1.mindir"))
    if "InplaceAddExt" in before:
        assert report.ops()["InplaceAddExt"] == 1
    assert "InplaceAddExt" not in after and "Add" in after and after["Add"][0][1] == []
