"""The experiment schema and YAML loading.

The whole experiment is validated before any work starts: unknown keys, wrong types, ranges,
missing files and un-importable factories all raise ``ConfigError`` with one line that names
the field (``search.n_trials``) and says what to do.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from automc import hw_cost
from automc.algorithms.quantization import RUNTIME_FORMATS, RUNTIMES, check_bits, runtime_bits
from automc.deploy.runners import check_runner_url
from automc.errors import ConfigError
from automc.models import MODELS
from automc.objectives import parse_constraint, parse_objective
from automc.registry import import_object
from automc.search.costs import latency_devices
from automc.search.strategies import STRATEGIES, WARM_STARTS

class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(_Section):
    """The network: a zoo ``name`` or a user ``factory`` (``"pkg.module:function"``)."""

    name: Optional[str] = Field(None, description="zoo network: lenet, resnet20, resnet56, mobilenetv2, vgg11, vgg16, mindcv")
    factory: Optional[str] = Field(None, description="user network factory 'pkg.module:function'")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for the network factory")

    @model_validator(mode="after")
    def _one_source(self) -> "ModelConfig":
        if (self.name is None) == (self.factory is None):
            raise ValueError("give exactly one of 'name' (a zoo network) or 'factory' ('pkg.module:function')")
        if self.name is not None:
            if self.name not in MODELS:
                raise ValueError(f"unknown model {self.name!r}; valid names: {', '.join(MODELS.names())}")
        if self.factory is not None:
            try:
                import_object(self.factory, what="factory")
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return self


class DataConfig(_Section):
    name: str = Field("digits", description="digits, cifar10, mnist, fashion_mnist, image_folder, mindrecord, synthetic, or 'pkg.module:function'")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="loader arguments, e.g. {path: data/cifar-10-batches-bin}")
    val_fraction: float = Field(0.15, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.15, ge=0.0, lt=1.0)
    resize: Optional[tuple[int, int]] = Field(None, description="resize images to (H, W)")
    channels: Optional[Literal[1, 3]] = Field(None, description="force 1 or 3 input channels")
    max_samples: Optional[int] = Field(None, gt=0, description="use at most this many samples (quick runs)")

    @model_validator(mode="after")
    def _path_exists(self) -> "DataConfig":
        path = self.kwargs.get("path")
        if path is not None and not Path(path).exists():
            raise ValueError(f"data path {str(path)!r} does not exist; fix data.kwargs.path (relative paths start at {os.getcwd()})")
        return self


class TrainConfig(_Section):
    epochs: float = Field(10, gt=0, description="epochs (may be fractional)")
    batch_size: int = Field(64, gt=0)
    lr: float = Field(0.05, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    distill_weight: float = Field(0.0, ge=0, le=1, description="knowledge-distillation weight from the baseline (0 = off)")


class PruningConfig(_Section):
    max_ratio: float = Field(0.7, description="largest share of a group's channels a trial may remove, in [0, 1)")
    step: Optional[float] = Field(0.05, gt=0, lt=1)
    importance: Literal["l1", "l2"] = "l1"

    @field_validator("max_ratio")
    @classmethod
    def _ratio(cls, v: float) -> float:
        if not 0 < v < 1:
            raise ValueError(f"ratio {v} is outside (0, 1); a pruning ratio is the share of channels removed")
        return v


class QuantizationConfig(_Section):
    w_bits: list[int] = Field(default_factory=lambda: [4, 8, 32], description="weight bit-width choices (32 = float)")
    a_bits: list[int] = Field(default_factory=lambda: [8, 32], description="activation bit-width choices (32 = float)")
    mode: Literal["ptq", "qat"] = Field("qat", description="post-training calibration or quantization-aware fine-tuning")
    symmetric: bool = True
    calib_batches: int = Field(4, gt=0)

    @field_validator("w_bits", "a_bits", mode="before")
    @classmethod
    def _bits(cls, v: Any) -> list[int]:
        if not isinstance(v, (list, tuple)) or not v:
            raise ValueError("give a non-empty list of bit-widths, e.g. [4, 8, 32]")
        try:
            return [check_bits(b, where="entry") for b in v]
        except ConfigError as exc:
            raise ValueError(str(exc)) from None


class SupernetConfig(_Section):
    """Elastic training of the baseline: sandwich-rule steps over the NAS choices (BigNAS)."""

    epochs: float = Field(5, gt=0, description="epochs of sandwich-rule steps after the baseline is trained")
    random_subnets: int = Field(2, ge=0, description="random sub-networks per step, besides the largest and smallest")
    lr: Optional[float] = Field(None, gt=0, description="learning rate (default: train.lr)")
    temperature: float = Field(1.0, gt=0, description="in-place distillation temperature (largest -> the others)")


#: NAS choice list -> (what a valid choice is, the fix for the first invalid one)
_NAS_CHOICES = {
    "width": (lambda w: 0 < w <= 1, "width multiplier {} is outside (0, 1]; e.g. width: [0.5, 0.75, 1.0]"),
    "depth": (lambda d: d >= 0, "depth {} is negative; a depth is the number of blocks a stage keeps"),
    "kernel": (lambda k: k >= 1 and k % 2 == 1, "kernel size {} is invalid; use odd sizes such as [3, 5, 7]"),
}


class NasConfig(_Section):
    """Choice lists of the elastic dimensions the network declares (see ``automc.algorithms.nas``)."""

    width: list[float] = Field(default_factory=lambda: [0.5, 0.75, 1.0], description="width multipliers, in (0, 1]")
    depth: list[int] = Field(default_factory=list, description="blocks kept per stage (empty = keep all)")
    kernel: list[int] = Field(default_factory=list, description="odd kernel sizes, at most the baseline's (empty = keep)")
    importance: Literal["l1", "l2"] = Field("l1", description="which channels a smaller width keeps")
    supernet: Optional[SupernetConfig] = Field(
        None, description="train the baseline elastically (once, cached) so sub-networks work before fine-tuning; "
                          "needed for search.strategy evolution and greedy to rank them well")

    @field_validator("width", "depth", "kernel")
    @classmethod
    def _choices(cls, v: list, info: ValidationInfo) -> list:
        valid, fix = _NAS_CHOICES[info.field_name]
        bad = [c for c in v if not valid(c)]
        if bad:
            raise ValueError(fix.format(bad[0]))
        return v


class CompressConfig(_Section):
    pruning: Optional[PruningConfig] = None
    quantization: Optional[QuantizationConfig] = None
    nas: Optional[NasConfig] = None

    @model_validator(mode="after")
    def _any(self) -> "CompressConfig":
        if self.pruning is None and self.quantization is None and self.nas is None:
            raise ValueError("enable at least one of pruning, quantization, nas")
        return self


class SearchConfig(_Section):
    strategy: str = Field(
        "tpe", json_schema_extra={"registry": STRATEGIES.names()},
        description="tpe/nsga2/cmaes/random/gp: Optuna samplers; sensitivity: the budget solver's solutions "
        "seed TPE; solver: the solver's optimum and policies it predicts 10 %, 20 %, ... worse, alone; uniform: "
        "one ratio/bit-width for all layers; evolution: an accuracy predictor over measured proxies scores "
        "candidates (Once-for-All); greedy: one-step shrinks by proxy accuracy per cost saved (NetAdapt)")
    warm_start: Optional[str] = Field(
        None, json_schema_extra={"registry": WARM_STARTS.names()},
        description="seed any strategy with the budget solver's solutions over the baseline's sensitivity")
    sensitivity_samples: int = Field(2000, gt=0, description="validation samples per sensitivity entry "
                                     "(2000: ~0.7-point standard error at 90 % accuracy)")
    proxy_subnets: int = Field(100, ge=10, description="evolution: candidates measured (proxy accuracy, no "
                               "fine-tune) to fit the accuracy predictor")
    proxy_samples: int = Field(500, gt=0, description="evolution/greedy: validation samples of one proxy accuracy")
    candidates: int = Field(5000, gt=0, description="evolution: candidates the predictor scores")
    seed: Optional[int] = Field(None, description="seed of the strategy's proposals and sampler, and of the "
                                "sub-networks evolution measures (default: the experiment's seed); vary it to "
                                "repeat a search on the same cached baseline")
    n_trials: int = Field(20, gt=0, description="trials in the study (counted across restarts)")
    timeout_s: Optional[float] = Field(None, gt=0, description="stop starting new trials after this many seconds")
    trial_timeout_s: Optional[float] = Field(None, gt=0, description="a trial running longer fails")
    pruner: Literal["median", "halving", "none"] = Field(
        "median", description="stop unpromising trials, judged only against trials within +-10 % of their cost: "
        "median (below the median at the same epoch) or halving (successive halving from a batch-norm "
        "re-estimated proxy before fine-tuning: most candidates cost no fine-tune)")
    storage: Optional[str] = Field(None, description="Optuna storage URL (default: sqlite file in output_dir)")
    retry_failed: int = Field(0, ge=0, description="re-run a trial whose process died up to this many times")
    heartbeat_s: float = Field(10.0, gt=0, description="trial heartbeat interval; a trial silent for 3 intervals is failed")

    @field_validator("strategy", "warm_start")
    @classmethod
    def _registered(cls, v: str | None, info: ValidationInfo) -> str | None:
        registry, what = {"strategy": (STRATEGIES, "strategy"), "warm_start": (WARM_STARTS, "warm start")}[info.field_name]
        if v is not None and v not in registry:
            raise ValueError(f"unknown {what} {v!r}; valid names: {', '.join(registry.names())}")
        return v

    @field_validator("pruner", mode="before")
    @classmethod
    def _pruner(cls, v: Any) -> Any:
        if v == "hyperband":
            raise ValueError("'hyperband' compares trials across cost levels; use 'halving' (successive halving "
                             "within +-10 % cost bands) or 'median'")
        return v


class ExecutionConfig(_Section):
    backend: Literal["local", "ray"] = "local"
    workers: int = Field(1, gt=0)
    ray_address: Optional[str] = Field(None, description="None = start a local Ray; 'auto' or 'ray://host:port'")
    accelerator: Literal["auto", "cpu", "gpu", "ascend"] = Field(
        "auto", description="where baseline training, sensitivity, trials and the final fine-tune run "
                            "(auto: the first available of ascend, gpu, cpu)")
    device_id: int = Field(0, ge=0, description="device of the local backend (and of the driver) on gpu/ascend")
    cpus_per_trial: float = Field(1, gt=0)
    gpus_per_trial: float = Field(0, ge=0, description="Ray GPUs per trial (Ray sets CUDA_VISIBLE_DEVICES per worker)")
    npus_per_trial: int = Field(0, ge=0, description="Ray NPUs (Ascend) per trial, whole devices (Ray sets "
                                                       "ASCEND_RT_VISIBLE_DEVICES per worker)")

    @field_validator("npus_per_trial", mode="before")
    @classmethod
    def _whole_npus(cls, v: Any) -> Any:
        if isinstance(v, float) and not v.is_integer():
            raise ValueError(f"{v} NPUs: automc gives a trial whole Ascend devices (one trial, whole devices); "
                             "use an integer such as 1")
        return v


class TrackingConfig(_Section):
    tracking_uri: Optional[str] = Field(None, description="MLflow tracking URI (default: sqlite file in output_dir)")
    experiment_name: Optional[str] = Field(None, description="MLflow experiment (default: the experiment name)")


MEASURE_NETWORKS = ("winner", "baseline", "uniform")


class MeasureConfig(_Section):
    """Time the exported networks on a device with MindSpore Lite's ``benchmark`` after the search."""

    runner: str = Field(..., description="where: local (this machine), ssh://user@host[:port]/dir, adb://SERIAL")
    networks: list[str] = Field(default_factory=lambda: ["winner", "baseline"],
                                description="which of winner, baseline, uniform (the uniform reference)")
    threads: int = Field(1, ge=1, description="benchmark threads (--numThreads)")
    loops: Optional[int] = Field(None, ge=1, description="timed inferences per benchmark run (--loopCount); "
                                 "default: as many as take 0.25 s")
    warmup: int = Field(20, ge=0, description="untimed inferences first (--warmUpLoopCount)")
    repeat: int = Field(5, ge=1, description="benchmark runs per network, in rounds over the networks; the "
                        "measured latency is the median of the runs' averages")
    benchmark: Optional[str] = Field(None, description="path of the benchmark binary on the device (ssh: required; "
                                     "adb: default /data/local/tmp/benchmark; local: automc's own)")
    device: Optional[str] = Field(None, description="device model the measurements are compared with (default: "
                                  "host-cpu for local, else the experiment's first latency device)")

    @field_validator("runner")
    @classmethod
    def _runner_url(cls, v: str) -> str:
        return check_runner_url(v)

    @field_validator("networks")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        bad = [n for n in v if n not in MEASURE_NETWORKS]
        if bad:
            raise ValueError(f"unknown network {bad[0]!r}; valid: {', '.join(MEASURE_NETWORKS)}")
        if not v:
            raise ValueError(f"give at least one of {', '.join(MEASURE_NETWORKS)}")
        return list(dict.fromkeys(v))

    @field_validator("device")
    @classmethod
    def _device(cls, v: Optional[str]) -> Optional[str]:
        if v is not None:
            hw_cost.get_device(v)
        return v

    @model_validator(mode="after")
    def _benchmark(self) -> "MeasureConfig":
        if self.runner.startswith("ssh://") and not self.benchmark and "benchmark=" not in self.runner:
            raise ValueError("benchmark: give the path of MindSpore Lite's benchmark on the ssh runner's machine")
        return self


class ExportConfig(_Section):
    formats: list[Literal["mindir", "onnx", "ms"]] = Field(default_factory=lambda: ["mindir"])
    select_by: Optional[str] = Field(None, description="cost objective the winner minimises (default: the first non-accuracy objective)")
    max_accuracy_drop: float = Field(1.0, ge=0, description="winner: lowest select_by cost among trials within this many points of the baseline; "
                                     "for objectives [accuracy] with cost constraints, the most accurate feasible trial instead")
    compare_uniform: bool = Field(True, description="also fine-tune the uniform policy (one ratio / bit-width for "
                                  "every layer) at the winner's budget and report both on the test split")
    final_finetune: Optional[TrainConfig] = Field(
        None, description="fine-tune the selected network this long before export (optionally distilled from the "
                          "baseline; unset keys default as in `train`); absent = the trial's checkpoint is exported as is")
    runtime: Literal[RUNTIMES] = Field(
        "any", description="where the quantized winner runs: `lite` (a FULL_QUANT .ms) or `onnxruntime` (ONNX QDQ) "
                           "keep only the bit-widths that runtime executes with integer kernels (8 and 32) and add its "
                           "format to `formats`; `any` keeps every choice (below 8 bits: weight-only size choices)")
    measure: Optional[MeasureConfig] = Field(
        None, description="after the export, time the winner (and the baseline, the uniform reference) on a "
                          "device with MindSpore Lite's benchmark; summary.json, the report and MLflow show "
                          "measured beside predicted latency")


class ExperimentConfig(_Section):
    """An automc experiment: what to compress, on what data, for which devices, searched how."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9_.-]+$", description="experiment and study name")
    output_dir: Optional[str] = Field(None, description="where results go (default: runs/<name>)")
    seed: int = 0
    model: ModelConfig
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    finetune: TrainConfig = Field(default_factory=lambda: TrainConfig(epochs=1, lr=0.01))
    compress: CompressConfig
    objectives: list[str] = Field(default_factory=lambda: ["accuracy", "macs"])
    constraints: list[str] = Field(default_factory=list, description="e.g. 'latency@arm-a76 <= 20ms', 'size <= 2MB', 'macs <= 25%' (share of the baseline)")
    devices: list[str] = Field(default_factory=list, description="extra devices to score every trial on (names or "
                               "YAML files; a file's device is then known by its name, as in latency@<name>)")
    search: SearchConfig = Field(default_factory=SearchConfig)
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)

    @model_validator(mode="after")
    def _runtime(self) -> "ExperimentConfig":
        runtime, quant = self.export.runtime, self.compress.quantization
        if runtime == "any":
            return self
        if quant is not None:  # known before any work: the runtime leaves an integer bit-width to search
            runtime_bits(quant.w_bits, runtime, where="compress.quantization.w_bits")
            runtime_bits(quant.a_bits, runtime, where="compress.quantization.a_bits")
        if RUNTIME_FORMATS[runtime] not in self.export.formats:
            self.export.formats.append(RUNTIME_FORMATS[runtime])
        return self

    @field_validator("devices")
    @classmethod
    def _devices(cls, v: list[str]) -> list[str]:
        for entry in v:  # a YAML path registers its device under the name it states
            hw_cost.use_device(entry)
        return v

    @model_validator(mode="after")
    def _objectives(self) -> "ExperimentConfig":
        if "accuracy" not in self.objectives:
            raise ValueError("objectives must include 'accuracy'")
        metrics = [parse_objective(o) for o in self.objectives] + [parse_constraint(c).metric for c in self.constraints]
        for device in dict.fromkeys(m.device for m in metrics if m.device):
            hw_cost.get_device(device)  # known before any work: a name, a registered YAML's name or a YAML path
        return self

    @model_validator(mode="after")
    def _measure_device(self) -> "ExperimentConfig":
        m = self.export.measure
        if m is not None and m.device is None and m.runner != "local" and not latency_devices(self):
            raise ValueError("export.measure.device: give the device model to compare the measurements with "
                             "(a name `automc devices` lists, or a device YAML); the experiment names no latency device")
        if m is not None and "uniform" in m.networks and not self.export.compare_uniform:
            raise ValueError("export.measure.networks: 'uniform' needs export.compare_uniform: true")
        return self

    @property
    def out_path(self) -> Path:
        return Path(self.output_dir or f"runs/{self.name}")


def _format_error(exc: ValidationError, source: str) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"] if not isinstance(p, int) or True)
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        section = _section_for(err["loc"][:-1])
        valid = ", ".join(section.model_fields) if section is not None else ""
        msg = f"unknown key; valid keys here: {valid}"
    elif err["type"] == "missing":
        msg = "required field is missing"
    return f"{source}: {loc or '(top level)'}: {msg}"


def _section_for(loc: tuple) -> type[BaseModel] | None:
    model: Any = ExperimentConfig
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        candidates = [ann, *args]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            return None
    return model


def config_from_dict(data: dict[str, Any], *, source: str = "config") -> ExperimentConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys (name, model, data, ...)")
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, source)) from None


def load_config(path: str | os.PathLike) -> ExperimentConfig:
    """Read and validate an experiment YAML file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such experiment file; `automc init {p}` writes a starter")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{p}:{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    return config_from_dict(data or {}, source=str(p))
