"""ONNX QDQ export of a quantized network: the form ONNX Runtime runs with int8 kernels.

The deployment-form network (``to_deploy_form``) computes each quantized layer as "quantize the
input with the learned scale, multiply by integer weight codes x per-channel scales". The QDQ file
states exactly that in ONNX operators, so that ONNX Runtime's graph optimiser fuses every
``DequantizeLinear -> Conv/Gemm -> QuantizeLinear`` into ``QLinearConv`` / ``QGemm``:

- the float twin (``to_float_form``: dequantized weights) is exported by MindSpore's ONNX exporter;
- each quantized layer's weight becomes ``DequantizeLinear(codes, per-channel scale, axis)``, its
  bias ``DequantizeLinear(int32, input scale x weight scale)`` and its input
  ``QuantizeLinear -> DequantizeLinear`` with the scale and zero point the search learned;
- that input pair is placed before the ops that commute with it (max-pool, flatten, reshape,
  transpose) so it sits right after the producing layer or its ReLU, where ONNX Runtime fuses it.

Layers kept float by the policy (and weight-only layers, ``a_bits`` 32) stay float ops with their
dequantized weights; a layer with quantized inputs but weights above 8 bits gets the input pair
only (a float kernel reading the quantized input: the same function). Weight codes are stored as int8, or as uint8 (codes + 128) when they use the
full 8-bit range on a CPU without VNNI: there, ONNX Runtime's x86 int8 kernels multiply uint8
activations by int8 weights with 16-bit pair sums, which saturate for 8-bit codes (measured: 95 %
top-1 agreement with int8 storage, 100 % with uint8 or <= 7-bit codes).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from automc.algorithms import quantization  # a lazy package: MindSpore loads on the first call
from automc.deploy.mindir import write_atomically
from automc.deploy.onnx import export_onnx, onnx_session
from automc.errors import DeployError

#: ops between a producer and a quantized layer that commute with per-tensor quantization
_COMMUTING = ("MaxPool", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity")
#: ONNX Runtime's integer kernels: the proof that a layer ran in int8
INT8_KERNELS = ("QLinearConv", "QGemm", "QLinearMatMul", "MatMulInteger", "ConvInteger")
QDQ_OPSET = 13


def _opset(model) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def cpu_has_vnni() -> bool:
    """Whether this x86 CPU has VNNI (int8 dot products without 16-bit saturation)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


@dataclass(frozen=True)
class QdqLayer:
    """How one layer was written: its ONNX node, weight storage and grids."""

    layer: str
    node: str
    weight_storage: str  # "int8" or "uint8"
    w_bits: int
    a_bits: int


def _quantized_inputs(dnet) -> dict[str, dict]:
    """``{layer: quant_params entry + input grid}`` for every layer that quantizes its input to <= 8
    bits; ``"int8"`` marks those whose weights are <= 8 bits too (the layers int8 kernels run)."""
    cells = dict(dnet.cells_and_names())
    layers = {}
    for name, p in quantization.quant_params(dnet).items():
        if p["a_bits"] > 8:
            continue  # float input (or a 9-16-bit grid, left float): a float layer, dequantized weights
        if p["a_scale"] is None:
            raise DeployError(f"layer {name!r} has no calibrated input range; calibrate or fine-tune the network first")
        cell = cells[name]
        layers[name] = {**p, "int8": p["w_bits"] <= 8, "a_qmin": int(round(float(cell.a_qmin.asnumpy()))),
                        "a_qmax": int(round(float(cell.a_qmax.asnumpy())))}
    return layers


def export_onnx_qdq(dnet, sample_input: np.ndarray, path: str | Path, *, weight_storage: str = "auto") -> Path:
    """Write the deployment-form network ``dnet`` as an ONNX QDQ model (see the module docstring).

    ``weight_storage``: ``"int8"``, ``"uint8"`` or ``"auto"`` (int8 when the CPU has VNNI or a
    layer's codes fit in 7 bits, else uint8). Returns the path; ``qdq_layers(path)`` lists what was
    written per layer."""
    import onnx
    from onnx import helper, numpy_helper, version_converter

    if weight_storage not in ("auto", "int8", "uint8"):
        raise DeployError(f"weight_storage {weight_storage!r} is invalid; use auto, int8 or uint8")
    layers = _quantized_inputs(dnet)
    if not any(p["int8"] for p in layers.values()):
        raise DeployError("the network has no layer quantized on both weights and inputs: nothing runs in int8; "
                          "export it as plain ONNX")
    weights = {name: cell.dequantized_weight() for name, cell in dnet.cells_and_names() if name in layers}
    biases = {name: cell.bias.asnumpy() for name, cell in dnet.cells_and_names() if name in layers and cell.has_bias}
    path = Path(path)
    float_path = export_onnx(quantization.to_float_form(dnet), sample_input, path.with_name(path.stem + ".float.onnx"))
    model = onnx.load(str(float_path))
    float_path.unlink()
    if _opset(model) < QDQ_OPSET:  # per-channel DequantizeLinear (axis) needs opset 13
        model = version_converter.convert_version(model, QDQ_OPSET)
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    consumers = Counter(i for node in graph.node for i in node.input)
    initializers = {t.name: t for t in graph.initializer}
    vnni = cpu_has_vnni()
    added, before, written = [], {}, []

    def input_pair(tensor: str, tag: str, p: dict) -> tuple[list, str]:
        """Quantize-dequantize ``tensor`` on the layer's learned input grid: nodes and output name."""
        signed = p["a_qmin"] < 0
        dtype = np.int8 if signed else np.uint8
        scale, zero = np.float32(p["a_scale"]), int(p["a_zero_point"])
        added.extend([numpy_helper.from_array(np.array(scale, np.float32), f"{tag}.scale"),
                      numpy_helper.from_array(np.array(zero, dtype), f"{tag}.zero_point")])
        nodes = []
        lo, hi = (-128, 127) if signed else (0, 255)
        if p["a_qmin"] > lo or p["a_qmax"] < hi:  # a grid narrower than the type's: clip to it first
            added.extend([numpy_helper.from_array(np.array((p["a_qmin"] - zero) * scale, np.float32), f"{tag}.lo"),
                          numpy_helper.from_array(np.array((p["a_qmax"] - zero) * scale, np.float32), f"{tag}.hi")])
            nodes.append(helper.make_node("Clip", [tensor, f"{tag}.lo", f"{tag}.hi"], [f"{tag}.clipped"],
                                          name=f"{tag}/Clip"))
            tensor = f"{tag}.clipped"
        nodes.append(helper.make_node("QuantizeLinear", [tensor, f"{tag}.scale", f"{tag}.zero_point"], [f"{tag}.q"],
                                      name=f"{tag}/QuantizeLinear"))
        nodes.append(helper.make_node("DequantizeLinear", [f"{tag}.q", f"{tag}.scale", f"{tag}.zero_point"],
                                      [f"{tag}.dq"], name=f"{tag}/DequantizeLinear"))
        return nodes, f"{tag}.dq"

    for node in list(graph.node):
        layer = next((n for n in layers if node.op_type in ("Conv", "Gemm") and node.input[1:2] == [f"{n}.weight"]),
                     None)
        if layer is None:
            continue
        p = layers[layer]
        # the input pair: moved up through ops that commute with it, while each has one reader
        tensor, reader, slot = node.input[0], node, 0
        while tensor in producer and producer[tensor].op_type in _COMMUTING and consumers[tensor] == 1:
            reader, slot = producer[tensor], 0
            tensor = reader.input[0]
        nodes, reader.input[slot] = input_pair(tensor, f"{layer}.input", p)
        before.setdefault(id(reader), []).extend(nodes)
        if not p["int8"]:
            continue  # weights above 8 bits: a float layer reading the quantized input
        # weights: integer codes, per output channel (Conv: axis 0; Gemm: axis 0 when transB)
        w = weights[layer]
        axis = 0
        if node.op_type == "Gemm" and not any(a.name == "transB" and a.i == 1 for a in node.attribute):
            w, axis = w.T, 1
        w_scale = np.asarray(p["w_scale"], np.float32)
        zero = np.asarray(p["w_zero_point"], np.int64) - (0 if p["symmetric"] else 2 ** (p["w_bits"] - 1))
        shape = [1] * w.ndim
        shape[axis] = -1
        codes = np.rint(w / w_scale.reshape(shape)).astype(np.int64) + zero.reshape(shape)
        storage = weight_storage
        if storage == "auto":
            storage = "int8" if vnni or (np.abs(codes).max() <= 63 and np.all(zero == 0)) else "uint8"
        offset = 128 if storage == "uint8" else 0
        dtype = np.uint8 if storage == "uint8" else np.int8
        tag = f"{layer}.weight"
        added.extend([numpy_helper.from_array((codes + offset).astype(dtype), f"{tag}.codes"),
                      numpy_helper.from_array(w_scale, f"{tag}.scale"),
                      numpy_helper.from_array((zero + offset).astype(dtype), f"{tag}.zero_point")])
        w_dq = helper.make_node("DequantizeLinear", [f"{tag}.codes", f"{tag}.scale", f"{tag}.zero_point"],
                                [f"{tag}.dq"], name=f"{tag}/DequantizeLinear", axis=axis)
        graph.initializer.remove(initializers[node.input[1]])
        node.input[1] = f"{tag}.dq"
        nodes = [w_dq]
        b_scale = (p["a_scale"] * w_scale).astype(np.float32)
        b_codes = np.rint(biases.get(layer, np.zeros(1)).astype(np.float64) / b_scale)
        # int32 at input scale x weight scale (what QLinearConv adds); a bias beyond int32 (a channel of
        # zero weights has a tiny scale) stays float
        if len(node.input) > 2 and node.input[2] in initializers and layer in biases and np.abs(b_codes).max() < 2**31:
            b_codes = b_codes.astype(np.int32)
            tag = f"{layer}.bias"
            added.extend([numpy_helper.from_array(b_codes, f"{tag}.codes"),
                          numpy_helper.from_array(b_scale, f"{tag}.scale"),
                          numpy_helper.from_array(np.zeros(len(b_scale), np.int32), f"{tag}.zero_point")])
            nodes.append(helper.make_node("DequantizeLinear", [f"{tag}.codes", f"{tag}.scale", f"{tag}.zero_point"],
                                          [f"{tag}.dq"], name=f"{tag}/DequantizeLinear", axis=0))
            graph.initializer.remove(initializers[node.input[2]])
            node.input[2] = f"{tag}.dq"
        before.setdefault(id(node), []).extend(nodes)
        written.append(QdqLayer(layer, node.name, storage, p["w_bits"], p["a_bits"]))

    ordered = []
    for node in graph.node:
        ordered.extend(before.get(id(node), []))
        ordered.append(node)
    del graph.node[:]
    graph.node.extend(ordered)
    graph.initializer.extend(added)
    model.doc_string = "automc QDQ: " + "; ".join(f"{w.layer}={w.node}:w{w.w_bits}a{w.a_bits}:{w.weight_storage}"
                                                  for w in written)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise DeployError(f"the QDQ model is not valid ONNX: {str(exc).splitlines()[0]}") from None
    return write_atomically(path, ".onnx", "ONNX QDQ export", lambda stem: onnx.save(model, stem + ".onnx"))


def qdq_layers(path: str | Path) -> list[QdqLayer]:
    """The per-layer record ``export_onnx_qdq`` wrote into the model's doc string."""
    import onnx

    doc = onnx.load(str(path), load_external_data=False).doc_string
    if not doc.startswith("automc QDQ: "):
        return []
    out = []
    for entry in doc.removeprefix("automc QDQ: ").split("; "):
        layer, rest = entry.split("=", 1)
        node, bits, storage = rest.rsplit(":", 2)
        w, a = bits[1:].split("a")
        out.append(QdqLayer(layer, node, storage, int(w), int(a)))
    return out


def onnx_kernels(path: str | Path) -> Counter:
    """Op types of the model as ONNX Runtime runs it (its fully optimised graph, 1 thread)."""
    import onnx
    import tempfile

    with tempfile.TemporaryDirectory(prefix="automc-ort-") as tmp:
        optimized = Path(tmp) / "optimized.onnx"
        onnx_session(path, optimized_model_filepath=optimized)
        return Counter(n.op_type for n in onnx.load(str(optimized)).graph.node)
