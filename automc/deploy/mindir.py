"""MindIR export (``mindspore.export``) and its parity with the in-memory network."""

from __future__ import annotations

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
    """Export ``net`` (eval mode) for inputs shaped like ``sample_input`` to a ``.mindir`` file."""
    import mindspore as ms
    from mindspore import Tensor

    sample = as_batch(sample_input, what="sample_input")
    target, stem = _target(path, ".mindir")
    if target.exists():
        target.chmod(0o644)  # MindSpore writes read-only files and refuses to overwrite them
        target.unlink()
    net.set_train(False)
    try:
        ms.export(net, Tensor(sample), file_name=stem, file_format="MINDIR")
    except Exception as exc:  # MindSpore raises RuntimeError/TypeError/ValueError from graph compilation
        raise DeployError(f"MindIR export of {type(net).__name__} failed: {str(exc).splitlines()[0]}") from exc
    if not target.exists():
        raise DeployError(f"mindspore.export wrote no {target}; check that the folder is writable")
    target.chmod(0o644)
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
