"""MindSpore Lite 2.0: real converter, real runtime (through automc's C++ runner), real .ms files.

The first run downloads the mindspore-lite wheel (~170 MB) and compiles the runner into the
user's cache folder; later runs reuse it.
"""

from __future__ import annotations

import numpy as np
import pytest

from services import require_module

import deploy_nets
from automc.errors import DeployError

pytestmark = pytest.mark.slow
TOL = 1e-4

RESNET_BITS = {"stem.0": 8, "layer1.conv1": 4, "layer1.conv2": 6, "layer2.conv1": 2, "layer2.conv2": 3, "fc": 4}


@pytest.fixture(scope="module")
def toolchain():
    from automc.deploy.lite import ensure_toolchain

    return ensure_toolchain()


@pytest.fixture(scope="module")
def float_ms(exported, toolchain, tmp_path_factory):
    from automc.deploy import convert_to_ms

    root = tmp_path_factory.mktemp("ms")
    return {name: convert_to_ms(path, root / name, toolchain=toolchain) for name, path in exported.items()}


def test_toolchain_is_cached(toolchain):
    from automc.deploy.lite import ensure_toolchain

    again = ensure_toolchain()
    assert again.runner == toolchain.runner and toolchain.runner.exists()
    assert (toolchain.lib_dir / "libmindspore_converter.so").exists()


@pytest.mark.parametrize("name", sorted(deploy_nets.NETS))
def test_float_ms_runs_with_parity(name, float_ms, toolchain):
    from automc.deploy import check_ms_parity, read_ms

    path = float_ms[name]
    assert path.suffix == ".ms" and read_ms(path).size_bytes == path.stat().st_size
    report = check_ms_parity(deploy_nets.build(name), path, deploy_nets.batch(2, seed=4), repeats=5, toolchain=toolchain)
    assert report.ok(TOL), str(report)
    assert report.format == "ms" and report.latency_ms is not None and report.latency_ms > 0


def test_run_ms_resizes_batch(float_ms, toolchain):
    from automc.deploy import run_ms

    x = deploy_nets.batch(7, seed=5)  # exported with batch 2
    out, latency_ms = run_ms(float_ms["small_cnn"], x, repeats=3, toolchain=toolchain)
    net = deploy_nets.build("small_cnn")
    from mindspore import Tensor

    assert out.shape == (7, 10) and latency_ms > 0
    assert np.max(np.abs(out - net(Tensor(x)).asnumpy())) <= TOL


def test_folded_network_converts(tmp_path, toolchain):
    from automc.deploy import check_ms_parity, convert_to_ms, export_mindir, fold_batchnorm

    x = deploy_nets.batch(2)
    net = fold_batchnorm(deploy_nets.build("tiny_mobilenetv2"), x)
    ms_path = convert_to_ms(export_mindir(net, x, tmp_path / "f"), tmp_path / "f.ms", toolchain=toolchain)
    assert check_ms_parity(net, ms_path, x, repeats=2, toolchain=toolchain).ok(TOL)


def test_per_layer_weight_bits_read_back(exported, tmp_path, toolchain):
    from automc.deploy import convert_to_ms, ms_weight_bits, read_ms

    path = convert_to_ms(exported["tiny_resnet"], tmp_path / "q", weight_bits=RESNET_BITS, toolchain=toolchain)
    bits = ms_weight_bits(path)
    assert bits == {**{f"{k}.weight": b for k, b in RESNET_BITS.items()}, "layer2.down.0.weight": 32}
    tensors = {t.name: t for t in read_ms(path).tensors}
    for key, b in RESNET_BITS.items():
        t = tensors[f"{key}.weight"]
        n = int(np.prod(t.dims))
        assert t.data_type == "int8"
        assert len(t.quant_params) == t.dims[0]  # per output channel
        assert all(q.scale > 0 for q in t.quant_params)
        if b == 8:
            assert t.data_bytes == n and t.compress_type == "NONE"
        else:  # bit-packed
            assert t.data_bytes == (n * b + 7) // 8 and t.compress_type == "BITPACKING"
    assert tensors["layer2.down.0.weight"].data_type == "float32"


def test_weight_bits_unknown_key_lists_valid_ones(exported, tmp_path, toolchain):
    from automc.deploy import convert_to_ms

    with pytest.raises(DeployError, match="valid keys.*layer1.conv1"):
        convert_to_ms(exported["tiny_resnet"], tmp_path / "q", weight_bits={"nope": 8}, toolchain=toolchain)


def test_unquantizable_layer_is_reported(exported, tmp_path, toolchain):
    """Lite 2.0's weight quantizer leaves depthwise convs float; strict mode says so."""
    from automc.deploy import convert_to_ms, ms_weight_bits

    bits = {"block.block.1.0": 8, "classifier": 8}
    with pytest.raises(DeployError, match="block.block.1.0: asked 8, got 32"):
        convert_to_ms(exported["tiny_mobilenetv2"], tmp_path / "m", weight_bits=bits, toolchain=toolchain)
    path = convert_to_ms(exported["tiny_mobilenetv2"], tmp_path / "m", weight_bits=bits, strict=False, toolchain=toolchain)
    got = ms_weight_bits(path)
    assert got["classifier.weight"] == 8 and got["block.block.1.0.weight"] == 32


def test_merge_mechanics_run_in_the_runtime(exported, float_ms, tmp_path, toolchain):
    """Re-pointing tensors of a quantized .ms to appended float tables gives a model the runtime runs."""
    from automc.deploy import check_ms_parity, convert_to_ms, read_ms
    from automc.deploy.lite._msfile import merge_ms_tensors, set_node_quant_type

    q = convert_to_ms(exported["tiny_resnet"], tmp_path / "q8", weight_bits={k: 8 for k in RESNET_BITS}, toolchain=toolchain)
    model = read_ms(q)
    donor = float_ms["tiny_resnet"].read_bytes()
    data = merge_ms_tensors(q.read_bytes(), {t.index: (donor, t.index) for t in model.tensors if t.quant_params})
    for node in model.nodes:
        if node.quant_type != "QUANT_NONE":
            data = set_node_quant_type(data, node.index, 0)
    merged = tmp_path / "merged.ms"
    merged.write_bytes(data)
    assert set(read_ms(merged).weight_bits().values()) == {32}
    report = check_ms_parity(deploy_nets.build("tiny_resnet"), merged, deploy_nets.batch(2), repeats=2, toolchain=toolchain)
    assert report.ok(TOL), str(report)


def test_weight_quantized_ms_does_not_run_in_lite_2_0(exported, tmp_path, toolchain):
    """Known limitation of the 2.0 runtime: weight-quantized conv/matmul fail at Build ("pack
    weight" from extendrt's session, "Prepare kernels failed" from the lite session the runner
    reaches with the converter linked first). Quantized networks run as FULL_QUANT (test_int8.py).

    If this starts passing the run (a newer runtime), replace it with a parity test.
    """
    from automc.deploy import convert_to_ms, run_ms

    q = convert_to_ms(exported["small_cnn"], tmp_path / "q", weight_bits={"conv2": 8}, toolchain=toolchain)
    with pytest.raises(DeployError, match="pack weight|compile graph failed|Prepare kernels failed"):
        run_ms(q, deploy_nets.batch(2), repeats=1, toolchain=toolchain)


def test_mindcv_resnet18_converts_and_matches(tmp_path, toolchain):
    mindcv = require_module("mindcv", "mindcv is in the test extras: pip install -e \".[test]\"")
    import mindspore as ms

    from automc.deploy import check_ms_parity, convert_to_ms, export_mindir

    ms.set_seed(0)
    net = mindcv.create_model("resnet18", pretrained=False, num_classes=10)
    deploy_nets._randomize_bn(net, 2)  # noqa: SLF001
    net.set_train(False)
    x = np.random.default_rng(1).normal(size=(1, 3, 32, 32)).astype(np.float32)
    ms_path = convert_to_ms(export_mindir(net, x, tmp_path / "r18"), tmp_path / "r18.ms", toolchain=toolchain)
    report = check_ms_parity(net, ms_path, x, repeats=2, toolchain=toolchain)
    assert report.ok(TOL), str(report)


def test_a_pruned_ghost_network_converts_with_parity(tmp_path, toolchain):
    """GhostNet as mindcv writes it, pruned: ``x += residual`` (an in-place add with a state
    input), ``relu6(x + 3.0) / 6.0`` (tensor constants), and a ghost module that still slices its
    concat to the channel count it had before pruning (a slice end past the dimension)."""
    from automc.algorithms.pruning import prune
    from automc.analysis import build_layer_table
    from automc.deploy import check_ms_parity, convert_to_ms, export_mindir
    from automc.policy import Policy

    x = deploy_nets.batch(2)
    net = deploy_nets.build("tiny_ghostnet")
    table = build_layer_table(net, x.shape[1:])
    assert table.prunable_groups
    pruned = prune(net, table, Policy(prune={g.name: 0.5 for g in table.prunable_groups}))
    pruned.set_train(False)
    ms_path = convert_to_ms(export_mindir(pruned, x, tmp_path / "ghost"), tmp_path / "ghost.ms", toolchain=toolchain)
    report = check_ms_parity(pruned, ms_path, x, repeats=2, toolchain=toolchain)
    assert report.ok(TOL), str(report)


@pytest.mark.parametrize("pruned", [False, True], ids=["full", "pruned"])
def test_zoo_models_convert(tmp_path, toolchain, pruned):
    """Zoo networks, as built and after dependency-aware pruning (the two with coupled channels:
    residual adds, depthwise convolutions), through MindIR, ONNX and .ms."""
    from automc.algorithms.pruning import prune
    from automc.analysis import build_layer_table
    from automc.deploy import check_mindir_parity, check_ms_parity, check_onnx_parity, convert_to_ms, export_mindir, export_onnx
    from automc.models import build_model
    from automc.policy import Policy

    x = np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)
    for name in ("resnet20", "mobilenetv2") if pruned else ("lenet", "resnet20", "mobilenetv2", "vgg11"):
        net = build_model(name, num_classes=10, input_shape=(3, 32, 32))
        if pruned:
            table = build_layer_table(net, (3, 32, 32))
            net = prune(net, table, Policy(prune={g.name: 0.4 for g in table.prunable_groups}))
        net.set_train(False)
        mindir = export_mindir(net, x, tmp_path / name)
        assert check_mindir_parity(net, mindir, x).ok(TOL)
        assert check_onnx_parity(net, export_onnx(net, x, tmp_path / f"{name}.onnx"), x).ok(TOL)
        report = check_ms_parity(net, convert_to_ms(mindir, tmp_path / f"{name}.ms", toolchain=toolchain), x,
                                 repeats=2, toolchain=toolchain)
        assert report.ok(TOL), f"{name}: {report}"
