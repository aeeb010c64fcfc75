"""ONNX export (MindSpore's exporter) and its parity through ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from automc.deploy._parity import ParityReport, as_batch, compare, network_outputs, run_in_batches
from automc.deploy.mindir import older_objects_frozen, write_atomically
from automc.errors import DeployError


def export_onnx(net, sample_input: np.ndarray, path: str | Path) -> Path:
    """Export ``net`` (eval mode) for inputs shaped like ``sample_input`` to an ``.onnx`` file."""
    from mindspore import Tensor

    try:
        from mindspore.onnx import export as onnx_export
    except ImportError:  # MindSpore < 2.6
        import mindspore as ms

        def onnx_export(net, *inputs, file_name):
            ms.export(net, *inputs, file_name=file_name, file_format="ONNX")

    sample = as_batch(sample_input, what="sample_input")
    net.set_train(False)
    with older_objects_frozen():
        return write_atomically(path, ".onnx", "ONNX export of " + type(net).__name__,
                                lambda stem: onnx_export(net, Tensor(sample), file_name=stem))


def onnx_session(onnx_path: str | Path, *, optimized_model_filepath: str | Path | None = None):
    """An ONNX Runtime CPU session on 1 thread, quiet (the one every automc check and timing uses);
    ``optimized_model_filepath`` also writes the graph as ONNX Runtime optimised it."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise DeployError("ONNX parity needs onnxruntime: pip install -e '.[onnx]' (or pip install onnxruntime)") from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    if optimized_model_filepath is not None:
        opts.optimized_model_filepath = str(optimized_model_filepath)
    try:
        return ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise DeployError(f"ONNX Runtime cannot load {onnx_path}: {str(exc).splitlines()[0]}") from exc


def onnx_outputs(session, x: np.ndarray) -> np.ndarray:
    """The first output of ``session`` on every input of ``x``, in chunks of the model's batch size."""
    inp = session.get_inputs()[0]
    batch = inp.shape[0] if isinstance(inp.shape[0], int) else len(x)
    return run_in_batches(lambda chunk: session.run(None, {inp.name: chunk})[0], x, batch)


def check_onnx_parity(net, onnx_path: str | Path, inputs: np.ndarray) -> ParityReport:
    """Run ``inputs`` through ONNX Runtime (CPU) and the network; compare the outputs."""
    x = as_batch(inputs)
    got = onnx_outputs(onnx_session(onnx_path), x)
    return compare(network_outputs(net, x), got, fmt="onnx", path=Path(onnx_path))
