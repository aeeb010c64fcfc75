"""The README's experiment-YAML reference and device list, generated from the code.

``render_reference()`` walks the pydantic schema (``automc.config.ExperimentConfig``): one
Markdown table per section with key, type, default and description (ranges included), so the
README cannot drift from what ``load_config`` accepts. ``render_devices()`` lists the built-in
devices from ``automc/hw_cost/devices/*.yaml`` with their sources.

Regenerate the README blocks with::

    python -m automc.report.config_reference --write README.md
"""

from __future__ import annotations

import argparse
import re
import sys
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from automc.config import ExperimentConfig
from automc.hw_cost import DEVICES_DIR
from automc.report.summary import calibration_text

REFERENCE_MARKERS = ("<!-- config-reference:start -->", "<!-- config-reference:end -->")
DEVICES_MARKERS = ("<!-- devices:start -->", "<!-- devices:end -->")

# Descriptions for schema fields that carry none yet (a field's own ``description`` wins).
_FALLBACK = {
    "ExperimentConfig.seed": "seeds data splits, training and the sampler",
    "ExperimentConfig.model": "the network to compress",
    "ExperimentConfig.data": "the data set and its splits",
    "ExperimentConfig.train": "baseline training (the baseline is cached by model, data, these settings and seed)",
    "ExperimentConfig.finetune": "fine-tuning of every candidate after compression (same keys as `train`)",
    "ExperimentConfig.compress": "compression techniques; at least one",
    "ExperimentConfig.objectives": "what the search optimises: accuracy plus costs (macs, params, bitops, size, latency@<device>, energy@<device>)",
    "ExperimentConfig.search": "the Optuna study",
    "ExperimentConfig.execution": "where trials run",
    "ExperimentConfig.tracking": "MLflow tracking",
    "ExperimentConfig.export": "the winner and its export",
    "DataConfig.val_fraction": "share of the samples held out to score trials",
    "DataConfig.test_fraction": "share of the samples held out for the winner's test accuracy",
    "TrainConfig.batch_size": "mini-batch size",
    "TrainConfig.lr": "learning rate",
    "TrainConfig.weight_decay": "L2 weight decay",
    "PruningConfig.step": "grid of the ratios a trial may pick",
    "PruningConfig.importance": "channel importance: which channels are kept",
    "QuantizationConfig.symmetric": "symmetric (zero-point free) quantization grids",
    "QuantizationConfig.calib_batches": "batches used to calibrate activation ranges",
    "CompressConfig.pruning": "AMC-style channel pruning ratios per coupled group",
    "CompressConfig.quantization": "HAQ-style mixed precision: bit-widths per layer",
    "CompressConfig.nas": "elastic width / depth / kernel of networks that declare them",
    "SearchConfig.strategy": "Optuna sampler (nsga2 for multi-objective fronts)",
    "SearchConfig.pruner": "stop unpromising fine-tunes early (single-objective searches)",
    "ExecutionConfig.backend": "run trials in this process or on a Ray cluster",
    "ExecutionConfig.workers": "trials in flight at once",
    "ExecutionConfig.cpus_per_trial": "Ray resources per trial",
    "ExecutionConfig.gpus_per_trial": "Ray resources per trial",
    "ExportConfig.formats": "files written for the winner (ms = MindSpore Lite)",
}


def _type_name(ann: Any) -> str:
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if ann is type(None):
        return "null"
    if origin is typing.Union or (origin is not None and str(origin) == "types.UnionType"):
        inner = [a for a in args if a is not type(None)]
        text = " or ".join(_type_name(a) for a in inner)
        return f"{text} or null" if len(inner) < len(args) else text
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin in (list, tuple):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return "[" + ", ".join(_type_name(a) for a in args) + "]"
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return "mapping"
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return "section"
    if ann is Any:
        return "any"
    return getattr(ann, "__name__", str(ann))


def _section_model(ann: Any) -> type[BaseModel] | None:
    for a in (ann, *typing.get_args(ann)):
        if isinstance(a, type) and issubclass(a, BaseModel):
            return a
    return None


def _default(field) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        value = field.default_factory()
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return "see below"
    if value is None or value is PydanticUndefined:
        return "none" if value is None else ""
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, (list, tuple)):
        return "`[" + ", ".join(str(v) for v in value) + "]`"
    if isinstance(value, dict):
        return "`{}`" if not value else f"`{value}`"
    return f"`{value}`"


def _ranges(field) -> str:
    parts = []
    for m in field.metadata:
        for attr, op in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            v = getattr(m, attr, None)
            if v is not None:
                parts.append(f"{op} {v:g}")
        pattern = getattr(m, "pattern", None)
        if pattern:
            parts.append(f"matches `{pattern}`")
    return ", ".join(parts)


def _cell(text: str) -> str:
    """A table cell: pipes escaped, and ``<`` outside code spans escaped (``<device>`` is not HTML)."""
    parts = text.replace("|", "\\|").replace("\n", " ").split("`")
    return "`".join(p.replace("<", "&lt;") if i % 2 == 0 else p for i, p in enumerate(parts))


def _table(model: type[BaseModel], prefix: str) -> tuple[list[str], list[tuple[str, type[BaseModel]]]]:
    lines = ["| key | type | default | description |", "|---|---|---|---|"]
    nested: list[tuple[str, type[BaseModel]]] = []
    for name, field in model.model_fields.items():
        sub = _section_model(field.annotation)
        key = f"{prefix}{name}"
        desc = field.description or _FALLBACK.get(f"{model.__name__}.{name}", "")
        ranges = _ranges(field)
        if ranges:
            desc = f"{desc} ({ranges})" if desc else ranges
        if sub is not None:
            desc = f"{desc}; see [`{key}`](#{key.replace('.', '')})" if desc else f"see `{key}`"
            nested.append((key, sub))
        typ = _type_name(field.annotation)
        names = (field.json_schema_extra or {}).get("registry")  # validated against a registry's names
        if names:
            typ = "one of " + ", ".join(f"`{n}`" for n in names) + (" or null" if typ.endswith("or null") else "")
        lines.append(f"| `{key}` | {_cell(typ)} | {_cell(_default(field))} | {_cell(desc)} |")
    return lines, nested


def _own_defaults(field, model: type[BaseModel]) -> str:
    """``", defaults: epochs `1`, lr `0.01`"`` where a section's default differs from its class defaults."""
    if field is None or field.default_factory is None:
        return ""
    value = field.default_factory()
    base = {k: f.default for k, f in model.model_fields.items() if not f.is_required()}
    diff = [f"{k} `{v}`" for k, v in value.model_dump().items() if k in base and base[k] != v]
    return f", with defaults {', '.join(diff)}" if diff else ""


def render_reference() -> str:
    """Markdown: the top-level keys, then one table per section (``model``, ``compress.pruning``, ...)."""
    out = ["<!-- generated by `python -m automc.report.config_reference --write README.md`; do not edit -->", "",
           "#### Top level", ""]
    lines, queue = _table(ExperimentConfig, "")
    out += lines
    seen: dict[type[BaseModel], str] = {}
    defaults = {k: ExperimentConfig.model_fields[k] for k, _ in queue}
    while queue:
        key, model = queue.pop(0)
        out += ["", f"#### `{key}`", ""]
        doc = (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ and model.__doc__ != BaseModel.__doc__ else ""
        if model in seen:
            out.append(f"Same keys as [`{seen[model]}`](#{seen[model].replace('.', '')}){_own_defaults(defaults.get(key), model)}.")
            continue
        seen[model] = key
        if doc:
            out += [doc, ""]
        lines, nested = _table(model, f"{key}.")
        out += lines
        queue = nested + queue
    return "\n".join(out) + "\n"


def render_devices() -> str:
    """Markdown: every built-in device with its key figures and the sources they come from."""
    out = ["<!-- generated by `python -m automc.report.config_reference --write README.md`; do not edit -->", "",
           "| device | kind | description | peak TOPS (fp32/fp16/int8/int4) | DRAM GB/s | fitted to measurements "
           "(held out: within 25 % / Spearman) | sources |",
           "|---|---|---|---|---|---|---|"]
    for path in sorted(DEVICES_DIR.glob("*.yaml")):
        d = yaml.safe_load(path.read_text())
        peaks = "/".join(f"{d['peak_tops'][p]:g}" if p in d.get("peak_tops", {}) else "-"
                         for p in ("fp32", "fp16", "int8", "int4"))
        links = []
        for figure, refs in (d.get("sources") or {}).items():
            for i, ref in enumerate(refs or [], 1):
                label = f"{figure}" if len(refs) == 1 else f"{figure} {i}"
                url = (ref or {}).get("url") or ""
                title = _cell((ref or {}).get("title", ""))
                links.append(f"[{label}]({url} \"{title.replace(chr(34), '')}\")" if url else f"{label}: {title}")
        out.append(f"| `{d['name']}` | {d['kind']} | {_cell(d.get('description', ''))} | {peaks} | "
                   f"{d['memory_bandwidth_gbps']:g} | {_cell(calibration_text(d['name']))} | {'; '.join(links) or '-'} |")
    out += ["", "Each figure's source is in `automc/hw_cost/devices/<device>.yaml` (`sources:`); `automc devices` "
            "prints the same list, and a YAML file of the same fields adds a device."]
    return "\n".join(out) + "\n"


BLOCKS = {REFERENCE_MARKERS: render_reference, DEVICES_MARKERS: render_devices}


def between(text: str, markers: tuple[str, str]) -> str | None:
    """The text between a pair of markers (without the newline after the start marker)."""
    start, end = markers
    m = re.search(re.escape(start) + r"\n(.*?)" + re.escape(end), text, flags=re.S)
    return m.group(1) if m else None


def update(text: str) -> str:
    for markers, render in BLOCKS.items():
        if between(text, markers) is None:
            raise SystemExit(f"markers {markers[0]} ... {markers[1]} not found")
        start, end = markers
        text = re.sub(re.escape(start) + r"\n.*?" + re.escape(end), lambda _m: f"{start}\n{render()}{end}", text,
                      flags=re.S)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m automc.report.config_reference", description=__doc__.split("\n")[0])
    parser.add_argument("--write", metavar="README", type=Path, help="replace the generated blocks in this file")
    parser.add_argument("--devices", action="store_true", help="print the device list instead of the YAML reference")
    args = parser.parse_args(argv)
    if args.write:
        args.write.write_text(update(args.write.read_text()))
        print(f"updated {args.write}")
    else:
        sys.stdout.write(render_devices() if args.devices else render_reference())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
