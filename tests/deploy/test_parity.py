from __future__ import annotations

import numpy as np
import pytest

import deploy_nets
from automc.deploy import ParityReport, check_mindir_parity, check_onnx_parity, export_mindir, export_onnx
from automc.errors import DeployError

TOL = 1e-4


@pytest.mark.parametrize("name", sorted(deploy_nets.NETS))
def test_mindir_parity(name, exported):
    net = deploy_nets.build(name)
    report = check_mindir_parity(net, exported[name], deploy_nets.batch(5, seed=1))  # 5: last chunk padded
    assert report.format == "mindir" and report.n_samples == 5
    assert report.ok(TOL), str(report)


#: MindSpore 2.8's ONNX exporter has no in-place add (``x += y``, "Can not find key InplaceAddExt
#: in convert map"), which the GhostNet block uses as mindcv writes it
ONNX_NETS = sorted(set(deploy_nets.NETS) - {"tiny_ghostnet"})


@pytest.mark.parametrize("name", ONNX_NETS)
def test_onnx_parity(name, tmp_path):
    net = deploy_nets.build(name)
    path = export_onnx(net, deploy_nets.batch(2), tmp_path / name)
    assert path.suffix == ".onnx" and path.exists()
    report = check_onnx_parity(net, path, deploy_nets.batch(6, seed=2))
    assert report.ok(TOL), str(report)


def test_parity_detects_a_different_network(exported):
    other = deploy_nets.build("small_cnn", seed=7)  # same architecture, other weights
    report = check_mindir_parity(other, exported["small_cnn"], deploy_nets.batch(4))
    assert not report.ok(TOL)
    assert report.max_abs_diff > TOL


def test_export_overwrites_and_adds_suffix(tmp_path):
    net = deploy_nets.build("small_cnn")
    first = export_mindir(net, deploy_nets.batch(2), tmp_path / "m")
    again = export_mindir(net, deploy_nets.batch(2), tmp_path / "m.mindir")
    assert first == again == tmp_path / "m.mindir"


def test_bad_input_shape_is_a_deploy_error(tmp_path):
    with pytest.raises(DeployError):
        export_mindir(deploy_nets.build("small_cnn"), np.zeros((2,), np.float32), tmp_path / "x")


def test_report_str_and_ok():
    r = ParityReport(max_abs_diff=2e-5, mean_abs_diff=1e-6, argmax_agreement=1.0, n_samples=8, format="onnx")
    assert r.ok(1e-4) and not r.ok(1e-5)
    text = str(r)
    assert "\n" not in text and "onnx" in text and "8 samples" in text
    assert not ParityReport(0.0, 0.0, 0.75, 4, "ms").ok()  # top-1 disagreement fails
    assert not ParityReport(float("nan"), 0.0, 1.0, 4, "ms").ok()


def test_parity_is_relative_to_the_output_scale():
    """Float32 rounding grows with the outputs: logits of ~1e3 (an untrained DenseNet) that differ by
    1e-3 are a relative 1e-6 (parity), the same 1e-3 on logits of ~1 is not."""
    from automc.deploy import compare_outputs

    rng = np.random.default_rng(0)
    big = rng.standard_normal((8, 10)) * 1e3
    report = compare_outputs(big, big + 1e-3, fmt="mindir")
    assert report.max_abs_output == pytest.approx(np.abs(big).max())
    assert report.relative_diff == pytest.approx(1e-3 / np.abs(big).max()) and report.ok()
    assert "relative" in str(report)
    small = big / 1e3
    assert not compare_outputs(small, small + 1e-3, fmt="mindir").ok()
