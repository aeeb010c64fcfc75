"""Evaluating one policy: compress a copy of the baseline, fine-tune briefly, measure accuracy.

Everything a worker needs is in ``TrialContext`` (plain data: config, baseline weights as numpy,
layer table, data splits), so it is sent once to Ray's object store and each worker rebuilds the
baseline network a single time (``Evaluator`` caches it per process).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from automc.algorithms import build_compressors
from automc.algorithms.nas import recalibrate_bn
from automc.analysis import LayerTable
from automc.models import build_model, data_arguments
from automc.policy import Policy
from automc.training import TrainSettings, accuracy, train, use_host_blocking_run

if TYPE_CHECKING:
    from automc.config import ExperimentConfig


@dataclass(frozen=True)
class TrialContext:
    config: ExperimentConfig
    baseline_weights: dict[str, np.ndarray]
    table: LayerTable
    data: Any  # automc.data.DatasetSplits
    baseline_accuracy: float


@dataclass
class EvalResult:
    accuracy: float  # validation split, %
    network: Any = field(repr=False, default=None)
    seconds: float = 0.0
    epoch_accuracies: list[float] = field(default_factory=list)
    epochs: float = 0.0  # fine-tune epochs actually trained


def build_baseline(config: ExperimentConfig, num_classes: int, input_shape):
    return build_model(config.model.name, factory=config.model.factory, num_classes=num_classes,
                       input_shape=input_shape, **data_arguments(dict(config.model.kwargs), num_classes, input_shape))


def network_weights(net) -> dict[str, np.ndarray]:
    return {p.name: p.asnumpy().copy() for p in net.get_parameters()}


def load_weights(net, weights: dict[str, np.ndarray]) -> None:
    import mindspore as ms

    for p in net.get_parameters():
        p.set_data(ms.Tensor(weights[p.name]))


def save_weights(net, path: Path) -> None:
    """``mindspore.save_checkpoint`` of ``net`` to ``path``, written aside and renamed into place.
    MindSpore logs a failed save at CRITICAL, then raises; automc reports the raised error (one
    line for a full disk), so that log is held back for the save's duration."""
    import mindspore as ms

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.ckpt")
    logging.disable(logging.CRITICAL)
    try:
        ms.save_checkpoint(net, str(tmp))
    finally:
        logging.disable(logging.NOTSET)
    os.replace(tmp, path)


def settings_from(cfg, seed: int, *, epochs: float | None = None) -> TrainSettings:
    return TrainSettings(epochs=cfg.epochs if epochs is None else epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                         weight_decay=cfg.weight_decay, seed=seed, distill_weight=cfg.distill_weight)


class Evaluator:
    """Applies policies to the baseline of one ``TrialContext``; one per process."""

    def __init__(self, ctx: TrialContext):
        use_host_blocking_run()  # before any graph runs in this process (e.g. a Ray worker's calibration)
        self.ctx = ctx
        data = ctx.data
        self.baseline = build_baseline(ctx.config, data.num_classes, data.input_shape)
        load_weights(self.baseline, ctx.baseline_weights)
        self.baseline.set_train(False)
        self.compressors = build_compressors(ctx.config)

    def compress(self, policy: Policy, *, recalibrate: bool = False, seed: int = 0):
        """The compressed, not yet fine-tuned network (compressors applied in their fixed order).
        ``recalibrate``: re-estimate batch-norm statistics of a network whose channels or blocks
        changed (its inherited statistics are stale; EagleEye), on 256 training inputs."""
        net, table, original = self.baseline, self.ctx.table, policy
        for compressor in self.compressors:
            net = compressor.apply(net, table, policy, calib_x=self.ctx.data.train.x)
            table, policy = compressor.after_apply(table, policy)
        if recalibrate and (any(r > 0 for r in original.prune.values()) or original.nas):
            recalibrate_bn(net, self.ctx.data.train.x, seed=seed)
        return net

    def evaluate(
        self, policy: Policy, *, seed: int = 0, report: Callable[[int, float], None] | None = None
    ) -> EvalResult:
        """Compress (batch-norm re-estimated), fine-tune, and score on val. ``report(step,
        val_accuracy)`` sees step 0 before fine-tuning (the proxy multi-fidelity rules screen
        on) and step k after epoch k; it may raise to stop the trial."""
        start = time.perf_counter()
        cfg, data = self.ctx.config, self.ctx.data
        net = self.compress(policy, recalibrate=True, seed=seed)
        history: list[float] = []
        finetune = cfg.finetune.epochs > 0 and any(c.needs_finetune for c in self.compressors)
        if report is not None and finetune:
            report(0, accuracy(net, data.val.x, data.val.y))

        def on_epoch(epoch: int, _loss: float) -> None:
            acc = accuracy(net, data.val.x, data.val.y)
            history.append(acc)
            net.set_train(True)
            if report is not None:
                report(epoch + 1, acc)

        if finetune:
            teacher = self.baseline if cfg.finetune.distill_weight > 0 else None
            train(net, data.train.x, data.train.y, settings_from(cfg.finetune, seed), teacher=teacher, on_epoch=on_epoch)
        acc = history[-1] if history else accuracy(net, data.val.x, data.val.y)
        return EvalResult(accuracy=acc, network=net, seconds=time.perf_counter() - start, epoch_accuracies=history,
                          epochs=cfg.finetune.epochs if finetune else 0.0)
