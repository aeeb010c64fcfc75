"""Evaluating one policy: compress a copy of the baseline, fine-tune briefly, measure accuracy.

Everything a worker needs is in ``TrialContext`` (plain data: config, baseline weights as numpy,
layer table, data splits), so it is sent once to Ray's object store and each worker rebuilds the
baseline network a single time (``Evaluator`` caches it per process).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from automc.algorithms import build_compressors
from automc.analysis.layer_table import LayerTable
from automc.config import ExperimentConfig
from automc.policy import Policy
from automc.training import TrainSettings, accuracy, train


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


def build_baseline(config: ExperimentConfig, num_classes: int, input_shape):
    from automc.models import build_model

    return build_model(config.model.name, factory=config.model.factory, num_classes=num_classes,
                       input_shape=input_shape, **config.model.kwargs)


def network_weights(net) -> dict[str, np.ndarray]:
    return {p.name: p.asnumpy().copy() for p in net.get_parameters()}


def load_weights(net, weights: dict[str, np.ndarray]) -> None:
    import mindspore as ms

    for p in net.get_parameters():
        p.set_data(ms.Tensor(weights[p.name]))


def settings_from(cfg, seed: int, *, epochs: float | None = None) -> TrainSettings:
    return TrainSettings(epochs=cfg.epochs if epochs is None else epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                         weight_decay=cfg.weight_decay, seed=seed, distill_weight=cfg.distill_weight)


class Evaluator:
    """Applies policies to the baseline of one ``TrialContext``; one per process."""

    def __init__(self, ctx: TrialContext):
        self.ctx = ctx
        data = ctx.data
        self.baseline = build_baseline(ctx.config, data.num_classes, data.input_shape)
        load_weights(self.baseline, ctx.baseline_weights)
        self.baseline.set_train(False)
        self.compressors = build_compressors(ctx.config)

    def compress(self, policy: Policy):
        """The compressed, not yet fine-tuned network (compressors applied in their fixed order)."""
        net, table = self.baseline, self.ctx.table
        for compressor in self.compressors:
            net = compressor.apply(net, table, policy, calib_x=self.ctx.data.train.x)
            table, policy = compressor.after_apply(table, policy)
        return net

    def evaluate(
        self, policy: Policy, *, seed: int = 0, report: Callable[[int, float], None] | None = None
    ) -> EvalResult:
        """Compress, fine-tune (``report(epoch, val_accuracy)`` after each epoch), and score on val."""
        start = time.perf_counter()
        cfg, data = self.ctx.config, self.ctx.data
        net = self.compress(policy)
        history: list[float] = []

        def on_epoch(epoch: int, _loss: float) -> None:
            acc = accuracy(net, data.val.x, data.val.y)
            history.append(acc)
            net.set_train(True)
            if report is not None:
                report(epoch, acc)

        if cfg.finetune.epochs > 0 and any(c.needs_finetune for c in self.compressors):
            teacher = self.baseline if cfg.finetune.distill_weight > 0 else None
            train(net, data.train.x, data.train.y, settings_from(cfg.finetune, seed), teacher=teacher, on_epoch=on_epoch)
        acc = history[-1] if history else accuracy(net, data.val.x, data.val.y)
        return EvalResult(accuracy=acc, network=net, seconds=time.perf_counter() - start, epoch_accuracies=history)
