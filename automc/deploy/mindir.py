"""MindIR export (``mindspore.export``) and its parity with the in-memory network."""

from __future__ import annotations

import contextlib
import gc
import os
from pathlib import Path

import numpy as np

from automc.deploy._parity import ParityReport, as_batch, compare, first_output, network_outputs, run_in_batches
from automc.errors import DeployError


def _target(path: str | Path, suffix: str) -> tuple[Path, str]:
    """(final file path, the ``file_name`` to give mindspore.export, which appends the suffix itself)."""
    path = Path(path)
    if path.suffix != suffix:
        path = path.with_name(path.name + suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path, str(path.with_suffix(""))


def export_mindir(net, sample_input: np.ndarray, path: str | Path) -> Path:
    """Export ``net`` (eval mode) for inputs shaped like ``sample_input`` to a ``.mindir`` file.

    Written under a private name and renamed over ``path`` (``write_atomically``)."""
    import mindspore as ms
    from mindspore import Tensor

    sample = as_batch(sample_input, what="sample_input")
    net.set_train(False)
    with older_objects_frozen():
        return write_atomically(path, ".mindir", "MindIR export of " + type(net).__name__,
                                lambda stem: ms.export(net, Tensor(sample), file_name=stem, file_format="MINDIR"))


@contextlib.contextmanager
def older_objects_frozen():
    """Inside: the objects that existed on entry are out of the garbage collector's sight
    (``gc.freeze``; thawed on exit, unless the process had frozen objects of its own).

    MindSpore runs ``gc.collect()`` before it compiles a graph, so each export pays a pass over
    every object the process holds. That is ~1 s in a process that holds a search and its imports
    (measured in the test suite: 116 exports, 110 s); with the older objects frozen the pass sees
    only what the export made. Those are the objects the collection is there for."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def write_atomically(path: str | Path, suffix: str, what: str, write) -> Path:
    """``write(stem)`` (an exporter that appends ``suffix`` itself) into a private name, then one
    rename over ``path``: processes sharing an output folder never see a partial or missing file."""
    target, stem = _target(path, suffix)
    tmp_stem = f"{stem}.tmp-{os.getpid()}"
    tmp = Path(tmp_stem + suffix)
    try:
        write(tmp_stem)
    except Exception as exc:  # exporters raise RuntimeError/TypeError/ValueError from graph compilation
        raise DeployError(f"{what} failed: {str(exc).splitlines()[0]}") from exc
    if not tmp.exists():
        raise DeployError(f"{what} wrote no {tmp}; check that the folder is writable")
    tmp.chmod(0o644)  # MindSpore writes read-only files
    os.replace(tmp, target)
    return target


def load_mindir(path: str | Path):
    """A callable ``nn.GraphCell`` for a ``.mindir`` file."""
    import mindspore as ms
    from mindspore import nn

    path = Path(path)
    if not path.exists():
        raise DeployError(f"MindIR file {path} does not exist; export it with automc.deploy.export_mindir")
    try:
        return nn.GraphCell(ms.load(str(path)))
    except Exception as exc:
        raise DeployError(f"cannot load MindIR {path}: {str(exc).splitlines()[0]}") from exc


def mindir_input_shape(path: str | Path) -> tuple[int, ...]:
    """The (static) input shape recorded in a MindIR file."""
    from mindspore.train import mind_ir_pb2 as pb

    model = pb.ModelProto()
    model.ParseFromString(Path(path).read_bytes())
    if len(model.graph.input) != 1 or not model.graph.input[0].tensor:
        raise DeployError(f"{path}: expected a single-input graph")
    return tuple(int(d) for d in model.graph.input[0].tensor[0].dims)


def check_mindir_parity(net, mindir_path: str | Path, inputs: np.ndarray) -> ParityReport:
    """Run ``inputs`` through the saved MindIR (GraphCell) and the network; compare the outputs."""
    from mindspore import Tensor

    x = as_batch(inputs)
    cell = load_mindir(mindir_path)
    batch = mindir_input_shape(mindir_path)[0]
    got = run_in_batches(lambda chunk: first_output(cell(Tensor(chunk))), x, batch)
    return compare(network_outputs(net, x), got, fmt="mindir", path=Path(mindir_path))
