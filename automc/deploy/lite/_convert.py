"""MindIR -> .ms through the real MindSpore Lite converter, per-layer weight bits, and .ms runs.

Lite's converter config has one ``bit_num`` for the whole model (plus ``skip_quant_node``), while
each tensor of a ``.ms`` carries its own ``numBits``. ``convert_to_ms`` therefore converts once per
requested bit-width (every other layer skipped), then takes each layer's weight tensor from the
conversion of its bit-width (``_msfile.merge_ms_tensors``) and reads the result back to verify that
every layer got the bits asked for.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np

from automc.deploy._parity import ParityReport, as_batch, compare, network_outputs
from automc.deploy.lite._compat import downgrade_mindir
from automc.deploy.lite._msfile import MsModel, merge_ms_tensors, read_ms
from automc.deploy.lite._toolchain import LiteToolchain, ensure_toolchain
from automc.errors import DeployError

FLOAT_BITS = 32
MIN_BITS, MAX_BITS = 1, 16  # Lite's bit_num range for weight quantization


@dataclass(frozen=True)
class ConverterLite:
    """A user-installed ``converter_lite`` executable, used instead of automc's runner to convert."""

    executable: Path

    def convert(self, mindir: Path, out_prefix: Path, config: Path | None) -> None:
        cmd = [str(self.executable), "--fmk=MINDIR", f"--modelFile={mindir}", f"--outputFile={out_prefix}",
               "--saveType=MINDIR_LITE"]
        if config is not None:
            cmd.append(f"--configFile={config}")
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
            raise DeployError(f"converter_lite failed on {mindir.name}: {tail}")


def _find_converter(converter_lite: str | Path | bool | None) -> ConverterLite | None:
    """``converter_lite``: a path, True (must be on PATH), False (never), None (use it if on PATH)."""
    if converter_lite is False:
        return None
    if converter_lite in (None, True):
        found = shutil.which("converter_lite")
        if found is None and converter_lite is True:
            raise DeployError("converter_lite was requested but is not on PATH; pass its path instead")
        return ConverterLite(Path(found)) if found else None
    path = Path(converter_lite)
    if not path.exists():
        raise DeployError(f"converter_lite not found at {path}")
    return ConverterLite(path)


def _convert_once(
    mindir: Path, out_prefix: Path, config: str | None, toolchain: LiteToolchain | None, cli: ConverterLite | None
) -> Path:
    cfg_path = None
    if config is not None:
        cfg_path = out_prefix.with_suffix(".cfg")
        cfg_path.write_text(config)
    if cli is not None:
        cli.convert(mindir, out_prefix, cfg_path)
    else:
        assert toolchain is not None
        args = ["convert", str(mindir), str(out_prefix)]
        if cfg_path is not None:
            args.append(str(cfg_path))
        toolchain.run(args, what=f"Lite conversion of {mindir.name}")
    produced = out_prefix.with_name(out_prefix.name + ".ms")
    if not produced.exists():
        raise DeployError(f"the Lite converter reported success but wrote no {produced}")
    return produced


def _quant_config(bits: int, skip_nodes: list[str]) -> str:
    lines = [
        "[common_quant_param]",
        "quant_type=WEIGHT_QUANT",
        f"bit_num={bits}",
        "min_quant_weight_size=0",
        "min_quant_weight_channel=0",
    ]
    if skip_nodes:
        lines.append("skip_quant_node=" + ",".join(skip_nodes))
    return "\n".join(lines) + "\n"


def quantizable_layers(model: MsModel) -> dict[str, str]:
    """Weight tensor name -> node name, for nodes whose input 1 is a float weight of rank >= 2."""
    out = {}
    for node_name, tensor in model.weights().items():
        if len(tensor.dims) >= 2 and tensor.data_type in ("float32", "int8", "int16"):
            out[tensor.name] = node_name
    return out


def _resolve_bits(weight_bits: Mapping[str, int], layers: dict[str, str]) -> dict[str, int]:
    """Map user keys (cell names or weight parameter names) to .ms node names with their bits."""
    by_node: dict[str, int] = {}
    for key, bits in weight_bits.items():
        bits = int(bits)
        if not (MIN_BITS <= bits <= MAX_BITS or bits >= FLOAT_BITS):
            raise DeployError(f"weight_bits[{key!r}] = {bits}: Lite supports {MIN_BITS}..{MAX_BITS} bits or >= 32 (float)")
        tensor = key if key in layers else f"{key}.weight"
        if tensor not in layers:
            valid = sorted(n.removesuffix(".weight") for n in layers)
            raise DeployError(f"weight_bits key {key!r} matches no quantizable layer of the model; valid keys: {valid}")
        by_node[layers[tensor]] = bits
    return by_node


def _ms_target(ms_path: str | Path) -> Path:
    ms_path = Path(ms_path)
    return ms_path if ms_path.suffix == ".ms" else ms_path.with_name(ms_path.name + ".ms")


@contextmanager
def _conversions(mindir_path: str | Path, toolchain: LiteToolchain | None,
                 converter_lite: str | Path | bool | None) -> Iterator[tuple[Path, Callable[..., Path]]]:
    """A temporary folder holding the MindIR downgraded for Lite 2.0, and ``convert(name, config)``
    -> the ``.ms`` Lite's converter writes from it there (``config``: a converter config, or None)."""
    cli = _find_converter(converter_lite)
    tc = toolchain if (toolchain is not None or cli is not None) else ensure_toolchain()
    with tempfile.TemporaryDirectory(prefix="automc-ms-") as tmp:
        tmp = Path(tmp)
        legacy = tmp / "model.mindir"
        downgrade_mindir(Path(mindir_path), legacy)
        yield tmp, lambda name, config: _convert_once(legacy, tmp / name, config, tc, cli)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def convert_to_ms(
    mindir_path: str | Path,
    ms_path: str | Path,
    *,
    weight_bits: Mapping[str, int] | None = None,
    toolchain: LiteToolchain | None = None,
    converter_lite: str | Path | bool | None = None,
    strict: bool = True,
) -> Path:
    """Convert a MindIR (as exported by MindSpore 2.7/2.8) to a MindSpore Lite ``.ms`` model.

    ``weight_bits`` maps layer (cell) names or weight parameter names to a weight bit-width
    (1..16, or 32 for float); unlisted layers stay float. With ``strict`` (default), a layer whose
    .ms weight does not carry the requested bits (Lite 2.0 does not weight-quantize depthwise
    convolutions, for instance) raises DeployError instead of being left float.
    """
    ms_path = _ms_target(ms_path)
    with _conversions(mindir_path, toolchain, converter_lite) as (tmp, convert):
        float_ms = convert("float", None)
        requested = {k: b for k, b in (weight_bits or {}).items()}
        float_model = read_ms(float_ms)
        layers = quantizable_layers(float_model)
        by_node = _resolve_bits(requested, layers)
        groups: dict[int, list[str]] = {}
        for node, bits in by_node.items():
            if bits < FLOAT_BITS:
                groups.setdefault(bits, []).append(node)
        if not groups:
            data = float_ms.read_bytes()
        else:
            # The base conversion quantizes every requested layer at the lowest bit-width; each other
            # group's conversion donates its layers' tensors. Replaced tables stay as unused bytes, so
            # the lowest bit-width as base keeps that overhead smallest.
            all_nodes = sorted(layers.values())
            quantized = {n for nodes in groups.values() for n in nodes}
            base_bits = min(groups)
            converted: dict[int, bytes] = {}
            for bits, nodes in sorted(groups.items()):
                members = quantized if bits == base_bits else set(nodes)
                skip = [n for n in all_nodes if n not in members]
                out = convert(f"w{bits}", _quant_config(bits, skip))
                converted[bits] = out.read_bytes()
            base = converted[base_bits]
            base_model = read_ms(tmp / f"w{base_bits}.ms")
            if [t.name for t in base_model.tensors] != [t.name for t in float_model.tensors]:
                raise DeployError("the quantized conversion changed the graph's tensor table; cannot set per-layer bits")
            node_weight = {n.name: n.inputs[1] for n in base_model.nodes if len(n.inputs) > 1}
            donors = {}
            for bits, nodes in groups.items():
                if bits != base_bits:
                    for node in nodes:
                        donors[node_weight[node]] = (converted[bits], node_weight[node])
            data = merge_ms_tensors(base, donors) if donors else base
        _atomic_write(ms_path, data)
    if strict and groups:
        got = read_ms(ms_path).weight_bits()
        names = {node: tensor.removesuffix(".weight") for tensor, node in layers.items()}
        wrong = {n: (b, got.get(n)) for n, b in by_node.items() if got.get(n) != (b if b < FLOAT_BITS else FLOAT_BITS)}
        if wrong:
            detail = ", ".join(f"{names[n]}: asked {a}, got {g}" for n, (a, g) in sorted(wrong.items()))
            raise DeployError(
                f"Lite 2.0 did not quantize every layer as requested ({detail}); its weight quantizer leaves "
                "depthwise convolutions and layers with few weights per output channel float. Keep those "
                "layers float in the policy, or pass strict=False to accept the file as written"
            )
    return ms_path


def _full_quant_config(calibration_dir: Path, input_name: str, samples: int, skip_nodes: list[str]) -> str:
    lines = ["[common_quant_param]", "quant_type=FULL_QUANT", "bit_num=8"]
    if skip_nodes:
        lines.append("skip_quant_node=" + ",".join(skip_nodes))
    lines += ["", "[data_preprocess_param]", f"calibrate_path={input_name}:{calibration_dir}",
              f"calibrate_size={samples}", "input_type=BIN",
              "", "[full_quant_param]", "activation_quant_method=MAX_MIN", "per_channel=true", "bias_correction=true"]
    return "\n".join(lines) + "\n"


def convert_to_ms_int8(
    mindir_path: str | Path,
    ms_path: str | Path,
    *,
    calibration: np.ndarray,
    int8_layers: Sequence[str] | None = None,
    toolchain: LiteToolchain | None = None,
    converter_lite: str | Path | bool | None = None,
) -> Path:
    """Convert a float MindIR to a FULL_QUANT ``.ms``: int8 weights and activations, run by Lite's
    int8 kernels.

    ``calibration``: NCHW samples (e.g. training images) from which Lite's converter takes each
    activation's range (min/max, per-channel weights, bias correction). ``int8_layers``: the layer
    (cell) names to run in int8; every other conv/matmul is listed in ``skip_quant_node`` and stays
    float (``None``: every layer in int8). Lite 2.0 quantizes to 8 bits only (``bit_num`` 8).
    """
    ms_path = _ms_target(ms_path)
    x = as_batch(calibration, what="calibration")
    with _conversions(mindir_path, toolchain, converter_lite) as (tmp, convert):
        float_model = read_ms(convert("float", None))
        layers = {tensor.removesuffix(".weight"): node for tensor, node in quantizable_layers(float_model).items()}
        wanted = list(layers) if int8_layers is None else list(int8_layers)
        unknown = [name for name in wanted if name not in layers]
        if unknown:
            raise DeployError(f"int8 layer {unknown[0]!r} is not a conv/matmul of the model; valid: {', '.join(layers)}")
        calib_dir = tmp / "calibration"
        calib_dir.mkdir()
        for i, sample in enumerate(x):  # one raw float32 file per sample, in the .ms input's NHWC layout
            np.ascontiguousarray(sample.transpose(1, 2, 0) if sample.ndim == 3 else sample,
                                 dtype=np.float32).tofile(calib_dir / f"{i:05d}.bin")
        input_name = float_model.tensors[float_model.inputs[0]].name
        skip = sorted(node for name, node in layers.items() if name not in wanted)
        config = _full_quant_config(calib_dir, input_name, len(x), skip)
        _atomic_write(ms_path, convert("int8", config).read_bytes())
    return ms_path


def ms_weight_bits(ms_path: str | Path) -> dict[str, int]:
    """Per-layer weight bits stored in a ``.ms`` file, keyed by weight parameter name."""
    model = read_ms(ms_path)
    node_to_tensor = {node: tensor for tensor, node in quantizable_layers(model).items()}
    return {node_to_tensor[n]: b for n, b in model.weight_bits().items() if n in node_to_tensor}


def run_ms(
    ms_path: str | Path,
    inputs: np.ndarray,
    *,
    repeats: int = 10,
    warmup: int = 2,
    threads: int = 1,
    toolchain: LiteToolchain | None = None,
) -> tuple[np.ndarray, float]:
    """Run an NCHW batch through a float ``.ms`` model in the Lite runtime: (outputs, median latency_ms).

    The converted graph is NHWC, so inputs are transposed before feeding; a batch size other than
    the exported one is applied with ``Model::Resize``.
    """
    if repeats < 1 or warmup < 0:
        raise DeployError(f"repeats must be >= 1 and warmup >= 0 (got {repeats}, {warmup})")
    x = as_batch(inputs)
    tc = toolchain or ensure_toolchain()
    feed = np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if x.ndim == 4 else x
    with tempfile.TemporaryDirectory(prefix="automc-run-") as tmp:
        tmp = Path(tmp)
        feed.tofile(tmp / "in.bin")
        args = ["run", str(ms_path), str(threads), str(warmup), str(repeats), "1", str(tmp / "in.bin"),
                str(feed.ndim), *(str(d) for d in feed.shape), str(tmp / "out")]
        stdout = tc.run(args, what=f"Lite run of {Path(ms_path).name}")
        try:
            result = json.loads(stdout.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            raise DeployError(f"unexpected output from the Lite runner: {stdout[-200:]!r}") from None
        if not result["outputs"]:
            raise DeployError(f"{ms_path} produced no output")
        first = result["outputs"][0]
        out = np.fromfile(first["file"], dtype=np.float32).reshape(first["shape"])
    return out, float(np.median(result["latency_ms"]))


def bench_ms(
    ms_paths: Sequence[str | Path],
    *,
    rounds: int = 20,
    calls: int = 5,
    threads: int = 1,
    toolchain: LiteToolchain | None = None,
) -> np.ndarray:
    """Interleaved timing of several float ``.ms`` models in one Lite process.

    Returns a ``(rounds, n_models)`` array in milliseconds: in each round every model (in a
    shuffled order) runs one untimed and ``calls`` timed predictions, and the fastest is kept.
    Models of one round share the machine's speed at that moment, which the caller can divide out.
    """
    if rounds < 1 or calls < 1 or not ms_paths:
        raise DeployError(f"bench_ms needs models, rounds >= 1 and calls >= 1 (got {len(ms_paths)}, {rounds}, {calls})")
    tc = toolchain or ensure_toolchain()
    stdout = tc.run(["bench", str(threads), str(rounds), str(calls), *(str(p) for p in ms_paths)],
                    what=f"Lite benchmark of {len(ms_paths)} models", timeout_s=3600.0)
    try:
        table = np.asarray(json.loads(stdout.strip().splitlines()[-1])["latency_ms"], dtype=np.float64)
    except (json.JSONDecodeError, IndexError, KeyError):
        raise DeployError(f"unexpected output from the Lite runner: {stdout[-200:]!r}") from None
    return table.reshape(rounds, len(ms_paths))


def check_ms_parity(
    net,
    ms_path: str | Path,
    inputs: np.ndarray,
    *,
    repeats: int = 10,
    toolchain: LiteToolchain | None = None,
) -> ParityReport:
    """Run ``inputs`` through the ``.ms`` in the Lite runtime and the network; compare and time it."""
    x = as_batch(inputs)
    got, latency_ms = run_ms(ms_path, x, repeats=repeats, toolchain=toolchain)
    return compare(network_outputs(net, x), got, fmt="ms", path=Path(ms_path), latency_ms=latency_ms)

