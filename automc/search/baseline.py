"""The baseline stage of a search: everything the trials share, made once and cached.

``prepare`` loads the data, builds the network, trains the baseline (or loads it from the cache:
``<output_dir>/cache/baseline-<key>.ckpt``, keyed by model, data, training settings, seed and
automc version), trains it elastically when ``compress.nas.supernet`` asks (cached beside it),
builds the layer table and the search space, and resolves the budgets (``macs <= 25%`` against
the baseline's cost). The trial loop (``runner``) and the finish stage start from its
``Prepared``.

Elastic training: after the baseline is trained, sandwich-rule steps (the largest, the smallest
and a few random sub-networks of the declared NAS choices, the smaller ones distilled from the
largest) teach its sub-networks to work with the weights they inherit, so a search can rank them
before any fine-tune. Every trial then extracts its sub-network from these weights.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from automc._files import check_writable, read_or_set_aside, write_text_atomic
from automc._version import __version__
from automc.algorithms import build_compressors
from automc.algorithms.nas import (ElasticNAS, ElasticNetwork, attach_declared_space, extract, recalibrate_bn,
                                   sandwich)
from automc.algorithms.pruning import refuse_breaking_groups
from automc.analysis import LayerTable, build_layer_table
from automc.data import load_dataset
from automc.errors import AutomcError
from automc.objectives import Constraint, Metric, parse_constraint, parse_objective, resolve_constraints
from automc.policy import Policy
from automc.search.accelerator import use
from automc.search.costs import cost_metrics, tracked_cost_metrics
from automc.search.evaluate import TrialContext, build_baseline, network_weights, save_weights, settings_from
from automc.search.space import SearchSpace
from automc.training import accuracy, train, train_sandwich

Log = Callable[[str], None]


@dataclass
class Prepared:
    """What every trial shares: the trial context (config, baseline weights, layer table, data),
    the search space, the objectives and the resolved constraints, the baseline's metrics."""

    context: TrialContext
    space: SearchSpace
    objectives: list[Metric]
    constraints: list[Constraint]
    baseline_metrics: dict[str, float]
    baseline_checkpoint: Path


def _stable_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_data(config):
    d = config.data
    return load_dataset(d.name, seed=config.seed, val_fraction=d.val_fraction, test_fraction=d.test_fraction,
                        resize=d.resize, channels=d.channels, max_samples=d.max_samples, **d.kwargs)


def analyse(config, net, input_shape) -> LayerTable:
    """``net``'s layer table (with its elastic NAS space, if it declares one); with channel pruning in the experiment, a group whose pruning breaks
    the network is refused (``refuse_breaking_groups``), so no trial is spent on it."""
    table = attach_declared_space(build_layer_table(net, input_shape, seed=config.seed), net)
    if config.compress.pruning is not None:
        table = refuse_breaking_groups(net, table, input_shape)
    return table


def load_cached(net, ckpt: Path, log: Log = lambda s: None) -> dict[str, float] | None:
    """Load the weights cached at ``ckpt`` into ``net`` and return the metrics saved beside them
    (``ckpt`` with suffix ``.json``); None when either file is missing, or cannot be read (a
    truncated copy: set aside with a notice, so the caller trains again)."""
    import mindspore as ms

    meta = ckpt.with_suffix(".json")
    if not meta.is_file():
        return None

    def read(path: Path) -> dict[str, float]:
        metrics = json.loads(meta.read_text())
        ms.load_param_into_net(net, ms.load_checkpoint(str(path)), strict_load=True)
        return metrics

    return read_or_set_aside(ckpt, read, "cache", log)


def save_cached(net, ckpt: Path, metrics: dict[str, float]) -> None:
    """Cache ``net``'s weights at ``ckpt`` and ``metrics`` beside them (both written aside, renamed into place)."""
    save_weights(net, ckpt)
    write_text_atomic(ckpt.with_suffix(".json"), json.dumps(metrics))


def _baseline(config, net, data, *, train_baseline: bool, log: Log) -> tuple[Path, dict[str, float]]:
    """Load the cached baseline weights into ``net``, or train and cache them: (checkpoint, metrics)."""
    key = _stable_hash({"model": config.model.model_dump(), "data": data.fingerprint(),
                        "train": config.train.model_dump(), "seed": config.seed, "automc": __version__})
    ckpt = config.out_path / "cache" / f"baseline-{key}.ckpt"
    metrics = load_cached(net, ckpt, log)
    if metrics is not None:
        log(f"baseline: reusing {ckpt} (val accuracy {metrics['accuracy']:.2f}%)")
        return ckpt, metrics
    if not train_baseline:
        raise AutomcError(f"no trained baseline at {ckpt}; run `automc search` first")
    log(f"baseline: training {config.model.name or config.model.factory} for {config.train.epochs} epochs "
        f"on {len(data.train)} {data.name} samples")
    start = time.perf_counter()
    train(net, data.train.x, data.train.y, settings_from(config.train, config.seed))
    metrics = {"accuracy": accuracy(net, data.val.x, data.val.y),
               "test_accuracy": accuracy(net, data.test.x, data.test.y),
               "train_seconds": time.perf_counter() - start}
    save_cached(net, ckpt, metrics)
    log(f"baseline: val accuracy {metrics['accuracy']:.2f}%, test accuracy {metrics['test_accuracy']:.2f}%")
    return ckpt, metrics


def prepare(config, *, train_baseline: bool = True, log: Log = lambda s: None) -> Prepared:
    """Load the data, train (or load the cached) baseline, build the layer table and search space.
    ``train_baseline=False`` reads a finished search back (status, report, export) and never trains."""
    import mindspore as ms

    if train_baseline:  # a search (or sensitivity run) trains here; reading results back runs anywhere
        check_writable(config.out_path, "output_dir")  # before any work: one line, exit code 2
        used = use(config.execution.accelerator, config.execution.device_id)
        log(f"accelerator: {used}" + (" (auto)" if config.execution.accelerator == "auto" else ""))
    data = load_data(config)
    ms.set_seed(config.seed)
    np.random.seed(config.seed)
    net = build_baseline(config, data.num_classes, data.input_shape)
    ckpt, metrics = _baseline(config, net, data, train_baseline=train_baseline, log=log)
    net.set_train(False)
    table = analyse(config, net, data.input_shape)
    if config.compress.nas is not None and config.compress.nas.supernet is not None:
        # trials inherit the elastic weights; `accuracy` stays the baseline's as the user trained it
        ckpt, elastic = load_or_train_supernet(config, net, table, data, ckpt, train=train_baseline, log=log)
        metrics = {**metrics, **elastic}
    objectives = [parse_objective(o) for o in config.objectives]
    constraints = [parse_constraint(c) for c in config.constraints]
    cost = cost_metrics(table, Policy(), tracked_cost_metrics(config, objectives, constraints))
    metrics = {**metrics, **{k: float(v[0]) for k, v in cost.items()}}
    metrics.update(table.totals())
    constraints = resolve_constraints(constraints, metrics)  # 'macs <= 25%' -> 25% of the baseline's MACs
    ctx = TrialContext(config=config, baseline_weights=network_weights(net), table=table, data=data,
                       baseline_accuracy=metrics["accuracy"])
    space = SearchSpace(table, build_compressors(config))
    return Prepared(ctx, space, objectives, constraints, metrics, ckpt)


def _proxy(net, table, nas, data, seed: int) -> float:
    """Validation accuracy of sub-network ``nas`` of ``net``: extracted, batch-norm re-estimated."""
    sub = recalibrate_bn(extract(net, table, nas), data.train.x, seed=seed)
    return accuracy(sub, data.val.x, data.val.y)


def load_or_train_supernet(config, net, table, data, baseline_ckpt: Path, *, train: bool = True,
                  log: Log = lambda s: None) -> tuple[Path, dict[str, float]]:
    """Load the cached elastic weights into ``net`` or train them (``net`` is the trained
    baseline, ``table`` its layer table). Returns (checkpoint, metrics: the largest and smallest
    sub-networks' validation accuracy and the training time)."""
    nas = config.compress.nas
    sn = nas.supernet
    choices = ElasticNAS(**nas.model_dump()).choices(table)  # as build_compressors makes it
    key = hashlib.sha256(json.dumps({"baseline": baseline_ckpt.name, "supernet": sn.model_dump(), "choices": choices,
                                     "importance": nas.importance}, sort_keys=True, default=str).encode()).hexdigest()[:16]
    ckpt = baseline_ckpt.parent / f"supernet-{key}.ckpt"
    metrics = load_cached(net, ckpt, log)
    if metrics is not None:
        log(f"supernet: reusing {ckpt} (largest {metrics['supernet_largest_accuracy']:.2f}%, smallest "
            f"{metrics['supernet_smallest_accuracy']:.2f}% val accuracy before fine-tuning)")
        return ckpt, metrics
    if not train:
        raise AutomcError(f"no elastically trained baseline at {ckpt}; run `automc search` first")
    smallest = {k: min(v) for k, v in choices.items()}
    before = _proxy(net, table, smallest, data, config.seed)
    settings = replace(settings_from(config.train, config.seed, epochs=sn.epochs), lr=sn.lr or config.train.lr,
                       temperature=sn.temperature, distill_weight=0.0)
    n_random = sn.random_subnets
    log(f"supernet: elastic training for {sn.epochs} epochs, each step the largest, the smallest and {n_random} random "
        f"sub-networks of {len(choices)} choices (in-place distillation); smallest sub-network before: {before:.2f}%")
    rng = np.random.default_rng(config.seed)
    elastic = ElasticNetwork(net, table.elastic, importance=nas.importance)
    start = time.perf_counter()

    def subnets(step: int):
        elastic.rank_channels()
        return sandwich(choices, n_random, rng)

    def on_epoch(epoch: int, loss: float) -> None:
        log(f"supernet: epoch {epoch + 1}/{math.ceil(sn.epochs)}, loss {loss:.3f} ({time.perf_counter() - start:.0f}s)")

    try:
        train_sandwich(net, data.train.x, data.train.y, settings, num_classes=data.num_classes, subnets=subnets,
                       activate=elastic.activate, on_epoch=on_epoch)
    finally:
        elastic.close()
    seconds = time.perf_counter() - start
    recalibrate_bn(net, data.train.x, seed=config.seed)  # the largest's statistics, after mixed sub-network steps
    metrics = {"supernet_largest_accuracy": _proxy(net, table, {}, data, config.seed),
               "supernet_smallest_accuracy": _proxy(net, table, smallest, data, config.seed),
               "supernet_smallest_accuracy_before": before, "supernet_seconds": seconds}
    save_cached(net, ckpt, metrics)
    log(f"supernet: done in {seconds:.0f}s; largest {metrics['supernet_largest_accuracy']:.2f}%, smallest "
        f"{metrics['supernet_smallest_accuracy']:.2f}% val accuracy before fine-tuning (was {before:.2f}%)")
    return ckpt, metrics
