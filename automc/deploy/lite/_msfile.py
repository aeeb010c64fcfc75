"""Read (and patch) MindSpore Lite ``.ms`` files: a minimal FlatBuffers reader for the few tables needed.

The field slots follow the public MindSpore Lite schema (``schema/model.fbs``, file identifier
``MSL2``): ``MetaGraph`` -> ``nodes: [CNode]``, ``allTensors: [Tensor]``; ``Tensor`` ->
``dataType, dims, data, quantParams: [QuantParam], name, weightQuantCompressType``;
``QuantParam`` -> ``scale, zeroPoint, numBits, ...``. Only what automc checks is decoded.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from automc.errors import DeployError

FILE_IDENTIFIER = b"MSL2"

# Table field slots (schema declaration order).
_META_NAME, _META_VERSION, _META_INPUTS, _META_OUTPUTS, _META_NODES, _META_TENSORS = 0, 1, 3, 4, 6, 7
_NODE_NAME, _NODE_PRIMITIVE, _NODE_INPUTS, _NODE_OUTPUTS, _NODE_QUANT_TYPE = 0, 2, 3, 4, 5
_T_NODE_TYPE, _T_DATA_TYPE, _T_DIMS, _T_FORMAT, _T_DATA, _T_QPARAMS, _T_NAME, _T_COMPRESS = 0, 1, 2, 3, 6, 7, 9, 11
_Q_SCALE, _Q_ZERO_POINT, _Q_NUM_BITS, _Q_INITED, _Q_DST_DTYPE = 0, 1, 5, 6, 9

# TypeId values (mindspore/core/ir/dtype/type_id.h) that appear in .ms weight tensors.
DATA_TYPES = {30: "bool", 32: "int8", 33: "int16", 34: "int32", 35: "int64", 37: "uint8", 42: "float16", 43: "float32"}
COMPRESS_TYPES = {0: "NONE", 1: "INDEXING", 2: "SPARSE", 3: "FSE", 4: "BITPACKING", 5: "FSE_INT", 6: "FSE_INFER"}
QUANT_TYPES = {0: "QUANT_NONE", 1: "AwareTraining", 2: "WeightQuant", 3: "PostTraining", 4: "QUANT_WEIGHT", 5: "QUANT_ALL", 6: "QUANT_DYNAMIC"}


class _Table:
    """A FlatBuffers table at ``pos`` in ``buf`` (little endian, standard layout)."""

    __slots__ = ("buf", "pos", "_vt", "_vt_len")

    def __init__(self, buf: bytes, pos: int) -> None:
        self.buf = buf
        self.pos = pos
        self._vt = pos - struct.unpack_from("<i", buf, pos)[0]
        self._vt_len = struct.unpack_from("<H", buf, self._vt)[0]

    def field_pos(self, slot: int) -> int:
        """Absolute position of field ``slot``'s inline value, or 0 when absent."""
        entry = 4 + 2 * slot
        if entry >= self._vt_len:
            return 0
        off = struct.unpack_from("<H", self.buf, self._vt + entry)[0]
        return self.pos + off if off else 0

    def scalar(self, slot: int, fmt: str, default):
        p = self.field_pos(slot)
        return struct.unpack_from("<" + fmt, self.buf, p)[0] if p else default

    def _deref(self, slot: int) -> int:
        p = self.field_pos(slot)
        return p + struct.unpack_from("<I", self.buf, p)[0] if p else 0

    def string(self, slot: int) -> str:
        p = self._deref(slot)
        if not p:
            return ""
        n = struct.unpack_from("<I", self.buf, p)[0]
        return self.buf[p + 4 : p + 4 + n].decode("utf-8", "replace")

    def vector(self, slot: int) -> tuple[int, int]:
        """(position of first element, length); (0, 0) when absent."""
        p = self._deref(slot)
        if not p:
            return 0, 0
        return p + 4, struct.unpack_from("<I", self.buf, p)[0]

    def scalars(self, slot: int, fmt: str) -> tuple:
        start, n = self.vector(slot)
        return struct.unpack_from(f"<{n}{fmt}", self.buf, start) if n else ()

    def tables(self, slot: int) -> list["_Table"]:
        start, n = self.vector(slot)
        out = []
        for i in range(n):
            p = start + 4 * i
            out.append(_Table(self.buf, p + struct.unpack_from("<I", self.buf, p)[0]))
        return out

    def table(self, slot: int) -> "_Table | None":
        p = self._deref(slot)
        return _Table(self.buf, p) if p else None


@dataclass(frozen=True)
class MsQuantParam:
    scale: float
    zero_point: int
    num_bits: int


@dataclass(frozen=True)
class MsTensor:
    index: int  # position in the model's allTensors
    name: str
    data_type: str  # float32, float16, int8, ...
    dims: tuple[int, ...]
    data_bytes: int  # bytes of stored data: 0 for activations, > 0 for constants (weights)
    quant_params: tuple[MsQuantParam, ...]  # one per output channel, or one per tensor
    compress_type: str  # how the data is packed (NONE, INDEXING, SPARSE, FSE, ...)

    @property
    def is_constant(self) -> bool:
        return self.data_bytes > 0

    @property
    def num_bits(self) -> int:
        """Weight bit-width stored in the file: the quantParams' numBits, 32 for float data."""
        if self.quant_params and self.data_type != "float32":
            bits = {q.num_bits for q in self.quant_params}
            if len(bits) != 1:
                raise DeployError(f".ms tensor {self.name} has mixed numBits {sorted(bits)} across channels")
            return bits.pop()
        return {"float32": 32, "float16": 16}.get(self.data_type, 32)


@dataclass(frozen=True)
class MsNode:
    index: int  # position in the model's nodes
    name: str
    inputs: tuple[int, ...]  # tensor indices
    outputs: tuple[int, ...]
    quant_type: str  # QUANT_NONE, QUANT_WEIGHT, QUANT_ALL, ...


@dataclass(frozen=True)
class MsModel:
    """The decoded parts of a ``.ms`` file."""

    path: Path
    size_bytes: int  # of the file
    version: str  # the converter's version string
    inputs: tuple[int, ...]  # tensor indices of the graph's inputs
    outputs: tuple[int, ...]
    nodes: tuple[MsNode, ...]
    tensors: tuple[MsTensor, ...]

    def weights(self) -> dict[str, MsTensor]:
        """Constant tensors consumed as the weight (input 1) of a node, keyed by the node name."""
        out = {}
        for node in self.nodes:
            if len(node.inputs) > 1 and self.tensors[node.inputs[1]].is_constant:
                out[node.name] = self.tensors[node.inputs[1]]
        return out

    def weight_bits(self) -> dict[str, int]:
        return {name: t.num_bits for name, t in self.weights().items()}


def _check_identifier(buf: bytes, path: Path) -> None:
    if len(buf) < 8 or buf[4:8] != FILE_IDENTIFIER:
        raise DeployError(
            f"{path} is not a MindSpore Lite 2.x model (file identifier {buf[4:8]!r}, expected {FILE_IDENTIFIER!r})"
        )


def _root(buf: bytes) -> _Table:
    return _Table(buf, struct.unpack_from("<I", buf, 0)[0])


def _decode_tensor(index: int, t: _Table) -> MsTensor:
    qps = tuple(
        MsQuantParam(
            scale=q.scalar(_Q_SCALE, "d", 1.0),
            zero_point=q.scalar(_Q_ZERO_POINT, "i", 0),
            num_bits=q.scalar(_Q_NUM_BITS, "i", 8),
        )
        for q in t.tables(_T_QPARAMS)
    )
    _, n_data = t.vector(_T_DATA)
    dtype = t.scalar(_T_DATA_TYPE, "i", 0)
    return MsTensor(
        index=index,
        name=t.string(_T_NAME),
        data_type=DATA_TYPES.get(dtype, f"type{dtype}"),
        dims=tuple(t.scalars(_T_DIMS, "i")),
        data_bytes=n_data,
        quant_params=qps,
        compress_type=COMPRESS_TYPES.get(t.scalar(_T_COMPRESS, "i", 0), "?"),
    )


def read_ms(path: str | Path) -> MsModel:
    """Decode the graph, tensors and quantization parameters of a ``.ms`` file."""
    path = Path(path)
    try:
        buf = path.read_bytes()
    except OSError as exc:
        raise DeployError(f"cannot read .ms model {path}: {exc}") from None
    _check_identifier(buf, path)
    try:
        meta = _root(buf)
        tensors = tuple(_decode_tensor(i, t) for i, t in enumerate(meta.tables(_META_TENSORS)))
        nodes = tuple(
            MsNode(
                index=i,
                name=n.string(_NODE_NAME),
                inputs=tuple(n.scalars(_NODE_INPUTS, "I")),
                outputs=tuple(n.scalars(_NODE_OUTPUTS, "I")),
                quant_type=QUANT_TYPES.get(n.scalar(_NODE_QUANT_TYPE, "i", 0), "?"),
            )
            for i, n in enumerate(meta.tables(_META_NODES))
        )
        return MsModel(
            path=path,
            size_bytes=len(buf),
            version=meta.string(_META_VERSION),
            inputs=tuple(meta.scalars(_META_INPUTS, "I")),
            outputs=tuple(meta.scalars(_META_OUTPUTS, "I")),
            nodes=nodes,
            tensors=tensors,
        )
    except (struct.error, IndexError) as exc:
        raise DeployError(f"{path} is a truncated or corrupt .ms file ({exc})") from None


# --- patching -----------------------------------------------------------------------------------
# Tensor field slots with (struct format, schema default); vectors/strings handled separately.
_TENSOR_SCALARS = {0: ("i", 0), 1: ("i", 0), 3: ("i", 0), 4: ("i", 0), 5: ("i", 0), 10: ("?", False), 11: ("i", 0)}
_QPARAM_SCALARS = {
    0: ("d", 1.0), 1: ("i", 0), 2: ("d", 0.0), 3: ("d", 0.0), 4: ("?", True), 5: ("i", 8),
    6: ("?", False), 7: ("f", 1.0), 8: ("f", 0.0), 9: ("i", 32), 10: ("i", 1), 11: ("i", 1),
}
_N_TENSOR_SLOTS, _N_QPARAM_SLOTS = 13, 12
_T_QCLUSTERS, _T_EXTERNAL = 8, 12


def _start_table(b, src: _Table, n_slots: int, scalars: dict[int, tuple[str, object]]) -> None:
    """Start a table of ``n_slots`` fields in builder ``b`` holding ``src``'s ``scalars``."""
    b.StartObject(n_slots)
    adders = {"i": b.PrependInt32Slot, "d": b.PrependFloat64Slot, "f": b.PrependFloat32Slot, "?": b.PrependBoolSlot}
    for slot, (fmt, default) in scalars.items():
        adders[fmt](slot, src.scalar(slot, fmt, default), default)


def _vector(b, prepend, items) -> int:
    """A vector of 4-byte ``items`` in builder ``b`` (``prepend`` adds one); its offset."""
    b.StartVector(4, len(items), 4)
    for item in reversed(items):
        prepend(item)
    return b.EndVector()


def _copy_tensor(src: _Table) -> bytes:
    """Serialise one ``Tensor`` table (fields copied from ``src``) as a standalone FlatBuffer."""
    import flatbuffers

    if src.field_pos(_T_EXTERNAL):
        raise DeployError("cannot merge .ms tensors that keep their data in an external file")
    b = flatbuffers.Builder(1024)
    has = src.field_pos
    start, n = src.vector(_T_DATA)
    data = b.CreateByteVector(bytes(src.buf[start : start + n])) if has(_T_DATA) else None
    dims = _vector(b, b.PrependInt32, src.scalars(_T_DIMS, "i")) if has(_T_DIMS) else None
    clusters = _vector(b, b.PrependFloat32, src.scalars(_T_QCLUSTERS, "f")) if has(_T_QCLUSTERS) else None
    name = b.CreateString(src.string(_T_NAME)) if has(_T_NAME) else None
    qp_offs = []
    for q in src.tables(_T_QPARAMS):
        _start_table(b, q, _N_QPARAM_SLOTS, _QPARAM_SCALARS)
        qp_offs.append(b.EndObject())
    qps = _vector(b, b.PrependUOffsetTRelative, qp_offs) if has(_T_QPARAMS) else None
    _start_table(b, src, _N_TENSOR_SLOTS, _TENSOR_SCALARS)
    for slot, off in ((_T_DIMS, dims), (_T_DATA, data), (_T_QPARAMS, qps), (_T_QCLUSTERS, clusters), (_T_NAME, name)):
        if off is not None:
            b.PrependUOffsetTRelativeSlot(slot, off, 0)
    b.Finish(b.EndObject())
    return bytes(b.Output())


def merge_ms_tensors(base: bytes, donors: dict[int, tuple[bytes, int]]) -> bytes:
    """Return ``base`` with tensor ``i`` replaced by tensor ``j`` of a donor model, for ``i -> (donor, j)``.

    Both models must come from the same graph (same tensor table). Each replacement is appended to
    the buffer and the ``allTensors`` entry re-pointed to it (FlatBuffers offsets point forward, so
    appended tables are reachable); the replaced table stays as unused bytes.
    """
    out = bytearray(base)
    _check_identifier(bytes(out[:8]), Path("<base>"))
    meta = _root(bytes(out))
    vec_start, n_tensors = meta.vector(_META_TENSORS)
    for index, (donor, donor_index) in sorted(donors.items()):
        if not 0 <= index < n_tensors:
            raise DeployError(f"tensor index {index} out of range (model has {n_tensors} tensors)")
        dmeta = _root(donor)
        dstart, dn = dmeta.vector(_META_TENSORS)
        if dn != n_tensors:
            raise DeployError(f"cannot merge .ms models with different tensor tables ({dn} vs {n_tensors} tensors)")
        p = dstart + 4 * donor_index
        src = _Table(donor, p + struct.unpack_from("<I", donor, p)[0])
        blob = _copy_tensor(src)
        pad = (-len(out)) % 16
        out.extend(b"\0" * pad)
        blob_pos = len(out)
        out.extend(blob)
        table_pos = blob_pos + struct.unpack_from("<I", blob, 0)[0]
        entry = vec_start + 4 * index
        struct.pack_into("<I", out, entry, table_pos - entry)
    return bytes(out)


def set_node_quant_type(buf: bytes, node_index: int, quant_type: int) -> bytes:
    """Overwrite a node's ``quantType`` in place (the field must be stored, i.e. not the default)."""
    out = bytearray(buf)
    node = _root(bytes(out)).tables(_META_NODES)[node_index]
    p = node.field_pos(_NODE_QUANT_TYPE)
    if not p:
        if quant_type == 0:
            return bytes(out)
        raise DeployError(f"node {node.string(_NODE_NAME)} stores no quantType; cannot set it in place")
    struct.pack_into("<i", out, p, quant_type)
    return bytes(out)
