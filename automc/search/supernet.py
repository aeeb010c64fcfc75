"""Elastic training of the baseline (``compress.nas.supernet``): once per experiment, cached.

After the baseline is trained, sandwich-rule steps (the largest, the smallest and a few random
sub-networks of the declared NAS choices, the smaller ones distilled from the largest) teach its
sub-networks to work with the weights they inherit, so a search can rank them before any
fine-tune. Every trial then extracts its sub-network from these weights.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

Log = Callable[[str], None]


def _proxy(net, table, nas, data, seed: int) -> float:
    """Validation accuracy of sub-network ``nas`` of ``net``: extracted, batch-norm re-estimated."""
    from automc.algorithms.nas import extract, recalibrate_bn
    from automc.training import accuracy

    sub = recalibrate_bn(extract(net, table, nas), data.train.x, seed=seed)
    return accuracy(sub, data.val.x, data.val.y)


def load_or_train(config, net, table, data, baseline_ckpt: Path, *, train: bool = True,
                  log: Log = lambda s: None) -> tuple[Path, dict[str, float]]:
    """Load the cached elastic weights into ``net`` or train them (``net`` is the trained
    baseline, ``table`` its layer table). Returns (checkpoint, metrics: the largest and smallest
    sub-networks' validation accuracy and the training time)."""
    from automc.algorithms.nas import ElasticNAS, recalibrate_bn
    from automc.algorithms.nas._supernet import ElasticNetwork, sandwich
    from automc.errors import AutomcError
    from automc.search.evaluate import load_cached, save_cached, settings_from
    from automc.training import train_sandwich

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
