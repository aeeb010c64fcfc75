"""Rewrite a MindIR written by MindSpore 2.7/2.8 into the form the Lite 2.0 converter reads.

MindSpore >= 2.3 writes ``mind_ir_version = 3`` and passes many operator arguments (transpose
flags, epsilon, pooling windows, ...) as constant *inputs*; the Lite 2.0 loader accepts
``mind_ir_version <= 1`` and expects those arguments as *primitive attributes*. This pass is
table-driven: ``DOWNGRADE_TABLE`` says, per operator, which input index becomes which attribute
(names and value encoding as MindSpore 2.0 wrote them). Inputs that Lite 2.0 also reads as inputs
are listed in ``KEPT_INPUTS``. Any other operator with constant scalar/tuple inputs is refused
with a message naming it, instead of a cryptic converter failure. Two more differences are
normalised: in-place operators lose their state input when renamed to the pure ones, and slice
ends past a dimension are clamped to it (as MindSpore does at run time).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

from automc.errors import DeployError

MINDIR_LITE_VERSION = 1  # the highest mind_ir_version the Lite 2.0 loader accepts

Encoding = Literal["bool", "int", "float", "ints", "window4", "pad_mode", "format"]

_PAD_MODES = {0: "PAD", 1: "SAME", 2: "VALID"}  # MindSpore 2.8 enum (ops._utils.arg_handler.str_to_enum)
_FORMATS = {0: "NCHW", 1: "NHWC"}


@dataclass(frozen=True)
class InputToAttr:
    """Constant input ``index`` of an operator becomes attribute(s) ``attrs`` encoded as ``encoding``."""

    index: int
    attrs: tuple[str, ...]
    encoding: Encoding


def _rule(index: int, attrs: str | tuple[str, ...], encoding: Encoding) -> InputToAttr:
    return InputToAttr(index, (attrs,) if isinstance(attrs, str) else attrs, encoding)


DOWNGRADE_TABLE: Mapping[str, tuple[InputToAttr, ...]] = {
    "MatMul": (_rule(2, "transpose_a", "bool"), _rule(3, "transpose_b", "bool")),
    "BiasAdd": (_rule(2, ("format", "data_format"), "format"),),
    "Softmax": (_rule(1, "axis", "ints"),),
    "LogSoftmax": (_rule(1, "axis", "int"),),
    "BatchNorm": (
        _rule(5, "is_training", "bool"),
        _rule(6, "epsilon", "float"),
        _rule(7, "momentum", "float"),
        _rule(8, ("format", "data_format"), "format"),
    ),
    "AvgPool": (
        _rule(1, "kernel_size", "window4"),
        _rule(2, "strides", "window4"),
        _rule(3, "pad_mode", "pad_mode"),
        _rule(4, ("format", "data_format"), "format"),
    ),
    "ReduceMean": (_rule(2, "keep_dims", "bool"),),
    "ReduceSum": (_rule(2, "keep_dims", "bool"), _rule(3, "skip_mode", "bool")),
    "ReduceMax": (_rule(2, "keep_dims", "bool"),),
    "Concat": (_rule(1, "axis", "int"),),
    "Split": (_rule(1, "axis", "int"), _rule(2, "output_num", "int")),
    "StridedSlice": (
        _rule(4, "begin_mask", "int"),
        _rule(5, "end_mask", "int"),
        _rule(6, "ellipsis_mask", "int"),
        _rule(7, "new_axis_mask", "int"),
        _rule(8, "shrink_axis_mask", "int"),
    ),
    "Gather": (_rule(3, "batch_dims", "int"),),
}

# Newer operators Lite 2.0 does not know, rewritten to an older one when their constant inputs
# (e.g. ``alpha`` of ``x += y``) have the given values; those inputs are dropped, and so is an
# in-place operator's state (monad) input, which the pure operator does not take (Lite's
# transpose pass reads every input as a tensor: GhostNet's ``x += shortcut`` failed there).
OP_RENAMES: Mapping[str, tuple[str, Mapping[int, Any]]] = {
    "InplaceAddExt": ("Add", {2: 1}),
    "AddExt": ("Add", {2: 1}),
    "SubExt": ("Sub", {2: 1}),
    "InplaceReLU": ("ReLU", {}),
}

# Constant inputs that Lite 2.0 reads as inputs too (left in place).
KEPT_INPUTS: Mapping[str, tuple[int, ...]] = {
    "Reshape": (1,),
    "ReduceMean": (1,),
    "ReduceSum": (1,),
    "ReduceMax": (1,),
    "StridedSlice": (1, 2, 3),
    "Transpose": (1,),
    "Gather": (2,),
    "Tile": (1,),
    "ExpandDims": (1,),
    # tensor constants of element-wise arithmetic (``relu6(x + 3.0) / 6.0``, GhostNet's hard sigmoid)
    **dict.fromkeys(("Add", "Sub", "Mul", "Div", "RealDiv"), (0, 1)),
}

# Graph plumbing whose constant inputs (monads, tuple indices) the loader handles itself.
_PLUMBING = {"Load", "UpdateState", "MakeTuple", "Depend", "TupleGetItem", "Return"}


def _scalar(attr: Any) -> Any:
    from mindspore.train import mind_ir_pb2 as pb

    kind = pb.AttributeProto.AttributeType.Name(attr.type)
    if kind in ("TUPLE", "LIST"):
        return tuple(_scalar(v) for v in attr.values)
    if kind == "BOOL":
        return bool(attr.ints[0] if attr.ints else attr.i)
    if kind in ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"):
        return int(attr.ints[0] if attr.ints else attr.i)
    if kind in ("FLOAT", "DOUBLE"):
        if attr.floats:
            return float(attr.floats[0])
        if attr.doubles:
            return float(attr.doubles[0])
        return float(attr.f if kind == "FLOAT" else attr.d)
    if kind == "STRING":
        return (attr.strings[0] if attr.strings else attr.s).decode()
    if kind == "NONE":
        return None
    raise DeployError(f"MindIR downgrade: constant of type {kind} is not supported; extend automc.deploy.lite._compat")


def _encode(value: Any, encoding: Encoding) -> tuple[str, Any]:
    """(attribute kind, python value) for ``value`` in the MindSpore 2.0 encoding."""
    if encoding == "bool":
        return "bool", bool(value)
    if encoding == "int":
        return "int", int(value)
    if encoding == "float":
        return "float", float(value)
    if encoding == "ints":
        return "ints", tuple(int(v) for v in (value if isinstance(value, tuple) else (value,)))
    if encoding == "window4":
        pair = tuple(int(v) for v in (value if isinstance(value, tuple) else (value, value)))
        if len(pair) == 1:
            pair = pair * 2
        return "ints", (1, 1) + pair[-2:]
    if encoding == "pad_mode":
        return "string", _PAD_MODES[int(value)] if not isinstance(value, str) else value.upper()
    if encoding == "format":
        return "string", _FORMATS[int(value)] if not isinstance(value, str) else value.upper()
    raise ValueError(f"unknown encoding {encoding!r}")


def _set_attr(attr: Any, name: str, kind: str, value: Any) -> None:
    from mindspore.train import mind_ir_pb2 as pb

    T = pb.AttributeProto
    attr.Clear()
    attr.name = name
    if kind == "bool":
        attr.type = T.BOOL
        attr.i = int(value)
    elif kind == "int":
        attr.type = T.INT64
        attr.i = int(value)
    elif kind == "float":
        attr.type = T.FLOAT
        attr.f = float(value)
    elif kind == "string":
        attr.type = T.STRING
        attr.s = str(value).encode()
    elif kind == "ints":
        attr.type = T.TUPLE
        for v in value:
            item = attr.values.add()
            item.type = T.INT64
            item.ints.append(int(v))
    else:  # pragma: no cover - guarded by _encode
        raise ValueError(kind)


@dataclass(frozen=True)
class DowngradeReport:
    """What ``downgrade_mindir`` changed: per rewritten node, the attributes it received."""

    from_version: int
    moved: tuple[tuple[str, str, tuple[tuple[str, Any], ...]], ...]  # (node name, op, ((attr, value), ...))

    def ops(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, op, _ in self.moved:
            counts[op] = counts.get(op, 0) + 1
        return counts


def downgrade_model(model: Any, *, table: Mapping[str, tuple[InputToAttr, ...]] | None = None) -> DowngradeReport:
    """Rewrite a parsed ``mind_ir_pb2.ModelProto`` in place (see module docstring)."""
    from mindspore.train import mind_ir_pb2 as pb

    table = DOWNGRADE_TABLE if table is None else table
    graph = model.graph
    if len(model.functions):
        raise DeployError(
            "MindIR downgrade: the graph has sub-graphs (control flow or un-inlined cells); "
            "export a network whose construct has no Python control flow depending on tensors"
        )
    constants = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
    prims = {p.name: p for p in model.primitives}

    def op_of(node: Any) -> str:
        prim = prims.get(node.op_type[len("REF::"):]) if node.op_type.startswith("REF::") else None
        return node.op_type if prim is None else prim.op_type

    monads = (pb.AttributeProto.UMONAD, pb.AttributeProto.IOMONAD)
    states = {n.output[0] for n in graph.node
              if op_of(n) == "UpdateState" or (n.op_type == "Constant" and n.attribute[0].type in monads)}
    _clamp_slice_ends(graph, op_of, constants)
    moved: list[tuple[str, str, tuple[tuple[str, Any], ...]]] = []
    for node in graph.node:
        if not node.op_type.startswith("REF::"):
            continue
        prim = prims.get(node.op_type[len("REF::"):])
        if prim is None:
            continue
        op = prim.op_type
        if op in _PLUMBING:
            continue
        rename = OP_RENAMES.get(op)
        if rename is not None:
            new_op, required = rename
            got = {i: _scalar(constants[node.input[i]].attribute[0]) for i in required
                   if i < len(node.input) and node.input[i] in constants}
            if got != dict(required):
                raise DeployError(
                    f"MindIR downgrade: {op} (node {node.name}) with constant inputs {got} has no Lite 2.0 "
                    f"equivalent (only {dict(required)} maps to {new_op})"
                )
            renamed = model.primitives.add()
            renamed.CopyFrom(prim)
            renamed.name = f"{prim.name}:automc{len(moved)}"
            renamed.op_type = new_op
            kept_inputs = [name for i, name in enumerate(node.input) if i not in required and name not in states]
            del node.input[:]
            node.input.extend(kept_inputs)
            node.op_type = f"REF::{renamed.name}"
            moved.append((node.name, op, (("op_type", new_op),)))
            prim, op = renamed, new_op
        rules = table.get(op, ())
        rule_by_index = {r.index: r for r in rules}
        kept = set(KEPT_INPUTS.get(op, ()))
        const_inputs = [i for i, name in enumerate(node.input) if name in constants]
        unknown = [i for i in const_inputs if i not in rule_by_index and i not in kept]
        if unknown:
            raise DeployError(
                f"MindIR downgrade: operator {op} (node {node.name}) has constant inputs {unknown} that Lite 2.0 "
                "cannot read; add an InputToAttr rule for it to automc.deploy.lite._compat.DOWNGRADE_TABLE "
                "(or KEPT_INPUTS if Lite reads it as an input)"
            )
        if not rules:
            continue
        # A private primitive per node: nodes sharing one primitive may carry different constants.
        new_prim = model.primitives.add()
        new_prim.CopyFrom(prim)
        new_prim.name = f"{prim.name}:automc{len(moved)}"
        existing = {a.name: a for a in new_prim.attribute}
        written: list[tuple[str, Any]] = []
        drop: set[int] = set()
        for rule in rules:
            if rule.index >= len(node.input) or node.input[rule.index] not in constants:
                continue  # already an attribute (or absent): nothing to move
            value = _scalar(constants[node.input[rule.index]].attribute[0])
            kind, encoded = _encode(value, rule.encoding)
            for attr_name in rule.attrs:
                attr = existing.get(attr_name) or new_prim.attribute.add()
                _set_attr(attr, attr_name, kind, encoded)
                existing[attr_name] = attr
                written.append((attr_name, encoded))
            drop.add(rule.index)
        kept_inputs = [name for i, name in enumerate(node.input) if i not in drop]
        del node.input[:]
        node.input.extend(kept_inputs)
        node.op_type = f"REF::{new_prim.name}"
        moved.append((node.name, op, tuple(written)))

    used = {name for n in graph.node for name in n.input} | {o.name for o in graph.output}
    survivors = [n for n in graph.node if not (n.op_type == "Constant" and n.output[0] not in used)]
    del graph.node[:]
    graph.node.extend(survivors)
    used_prims = {n.op_type[len("REF::"):] for n in graph.node if n.op_type.startswith("REF::")}
    alive = [p for p in model.primitives if p.name in used_prims]
    del model.primitives[:]
    model.primitives.extend(alive)
    from_version = int(model.mind_ir_version)
    model.mind_ir_version = MINDIR_LITE_VERSION
    return DowngradeReport(from_version=from_version, moved=tuple(moved))


def _clamp_slice_ends(graph: Any, op_of: Callable[[Any], str], constants: dict[str, Any]) -> None:
    """Slice ends past a dimension become the dimension. MindSpore clamps them (a pruned GhostNet
    module still slices its concat to the channel count it had before pruning); Lite 2.0's shape
    inference refuses them. The dimension is the producer's ``shape`` attribute, which MindSpore
    writes on every node; a slice whose input shape is not written is left as it is."""
    shapes = {}
    for node in graph.node:
        for attr in node.attribute:
            if attr.name == "shape" and len(attr.tensors) == 1:
                shapes[node.output[0]] = tuple(int(d) for d in attr.tensors[0].dims)
    nodes = []
    for node in graph.node:
        # a tuple of ends (not a tensor) and known sizes (not -1, a dynamic one)
        if (op_of(node) == "StridedSlice" and len(node.input) > 2 and node.input[2] in constants
                and len(constants[node.input[2]].attribute[0].values)):
            dims = shapes.get(node.input[0])
            end = _scalar(constants[node.input[2]].attribute[0])
            if dims is not None and len(end) <= len(dims) and any(e > d >= 0 for e, d in zip(end, dims)):
                clamped = constants[node.input[2]].__class__()
                clamped.CopyFrom(constants[node.input[2]])
                clamped.name = clamped.output[0] = f"{node.input[2]}:automc_clamped_{len(nodes)}"
                for value, e, d in zip(clamped.attribute[0].values, end, dims):
                    if e > d >= 0:
                        if value.ints:
                            value.ints[0] = d
                        else:
                            value.i = d
                constants[clamped.output[0]] = clamped
                node.input[2] = clamped.output[0]
                nodes.append(clamped)
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)


def read_mindir(path: str | Path) -> Any:
    from mindspore.train import mind_ir_pb2 as pb

    model = pb.ModelProto()
    try:
        model.ParseFromString(Path(path).read_bytes())
    except OSError as exc:
        raise DeployError(f"cannot read MindIR {path}: {exc}") from None
    except Exception as exc:  # protobuf DecodeError
        raise DeployError(f"{path} is not a MindIR file ({exc}); export it with automc.deploy.export_mindir") from None
    return model


def downgrade_mindir(src: str | Path, dst: str | Path) -> DowngradeReport:
    """Write ``dst``: the MindIR ``src`` rewritten for the Lite 2.0 converter."""
    model = read_mindir(src)
    report = downgrade_model(model)
    Path(dst).write_bytes(model.SerializeToString())
    return report


