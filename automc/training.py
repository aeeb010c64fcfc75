"""Training and evaluation loops: the one place that trains networks (baseline, fine-tune, QAT).

Batches come from numpy arrays; steps run under ``mindspore.jit`` through ``nn.TrainOneStepCell``.
An optional teacher turns fine-tuning into knowledge distillation (soft targets at temperature T).
``train_sandwich`` trains the sub-networks of an elastic network together (BigNAS's sandwich rule).
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from automc.errors import TrialFailed


@dataclass(frozen=True)
class TrainSettings:
    epochs: float = 1.0
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 1e-4
    seed: int = 0
    distill_weight: float = 0.0  # 0 = plain cross-entropy; >0 mixes in KD loss from a teacher
    temperature: float = 4.0


def use_host_blocking_run() -> None:
    """Run MindSpore's host pipeline synchronously when the device is the CPU.

    By default MindSpore (2.7/2.8) hands every step from the Python thread to a frontend queue
    thread that polls for work; for the small networks a compression search trains, that doubles
    the wall time and keeps 1.6 cores busy per process (measured here: a LeNet fine-tune takes
    3.7 s and 1.2 cores with ``MS_DEV_HOST_BLOCKING_RUN=1``, 7.3 s and 1.6 cores without), which
    also stops parallel trials from scaling. The variable is read when a graph runs, so setting it
    here is enough; a value the user exported is kept.
    """
    import mindspore as ms

    if ms.get_context("device_target") == "CPU":
        os.environ.setdefault("MS_DEV_HOST_BLOCKING_RUN", "1")


def iterate_batches(
    x: np.ndarray, y: np.ndarray, batch_size: int, *, shuffle: bool, seed: int = 0, full: bool = False
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Batches of ``x, y`` in order or shuffled by ``seed``. ``full``: the last batch is topped up
    from the start of the order, so every batch has ``batch_size`` samples (when there are that
    many): a compiled training step then sees one input shape, where a short last batch would
    compile the step a second time (~0.7 s per training run for LeNet, measured here)."""
    order = np.random.default_rng(seed).permutation(len(x)) if shuffle else np.arange(len(x))
    for start in range(0, len(x), batch_size):
        idx = order[start : start + batch_size]
        if full and len(idx) < batch_size <= len(order):
            idx = np.concatenate([idx, order[: batch_size - len(idx)]])
        yield x[idx], y[idx]


def _loss_cell(net, teacher, settings: TrainSettings):
    from mindspore import nn, ops

    ce = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    if teacher is None or settings.distill_weight <= 0:
        return nn.WithLossCell(net, ce)

    # A private copy with its own parameter names: a compressed student keeps the baseline's names,
    # and one graph may not hold two parameters of the same name.
    teacher = copy.deepcopy(teacher)
    for p in teacher.get_parameters():
        p.name = "teacher." + p.name
        p.requires_grad = False
    teacher.set_train(False)
    alpha, t = settings.distill_weight, settings.temperature

    class _DistillLoss(nn.Cell):
        def __init__(self):
            super().__init__(auto_prefix=False)
            self.student, self.teacher = net, teacher

        def construct(self, x, y):
            logits = self.student(x)
            soft = ops.stop_gradient(ops.softmax(self.teacher(x) / t, axis=-1))
            kd = -(soft * ops.log_softmax(logits / t, axis=-1)).sum(-1).mean() * (t * t)
            return (1 - alpha) * ce(logits, y) + alpha * kd

    return _DistillLoss()


def _jit_step(train_cell):
    """``train_cell`` compiled with ``mindspore.jit``. A Cell, not a jitted closure: every train()
    call compiles a new network anyway, and for a closure MindSpore warns "compiled again" each time."""
    import mindspore as ms
    from mindspore import nn

    class _JitStep(nn.Cell):
        def __init__(self):
            super().__init__(auto_prefix=False)
            self.train_cell = train_cell

        @ms.jit
        def construct(self, x, y):
            return self.train_cell(x, y)

    return _JitStep()


def train(
    net,
    x: np.ndarray,
    y: np.ndarray,
    settings: TrainSettings,
    *,
    teacher=None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> float:
    """Train ``net`` in place with SGD + cosine decay; returns the last epoch's mean loss.

    ``epochs`` may be fractional (a short fine-tune). ``on_epoch(epoch, mean_loss)`` is called
    after each (partial) epoch; it may raise to stop training (e.g. Optuna pruning).
    Raises ``TrialFailed`` when the loss becomes NaN or infinite.
    """
    from mindspore import nn

    use_host_blocking_run()
    lr = _cosine_lr(settings, len(x))
    total_steps = len(lr)
    params = [p for p in net.trainable_params()]
    opt = nn.Momentum(params, learning_rate=lr, momentum=settings.momentum, weight_decay=settings.weight_decay)
    train_step = _jit_step(nn.TrainOneStepCell(_loss_cell(net, teacher, settings), opt))
    train_step.set_train(True)
    last = _epochs(x, y, settings, total_steps, lambda xb, yb, done: float(train_step(xb, yb).asnumpy()), on_epoch)
    net.set_train(False)
    return last


def _cosine_lr(settings: TrainSettings, n_samples: int) -> list[float]:
    """Per-step learning rates: ``settings.epochs`` over ``n_samples``, cosine decay from ``settings.lr``."""
    steps_per_epoch = max(1, math.ceil(n_samples / settings.batch_size))
    total_steps = max(1, int(round(settings.epochs * steps_per_epoch)))
    return [float(settings.lr * 0.5 * (1 + math.cos(math.pi * i / total_steps))) for i in range(total_steps)]


def _jit_value_and_grad(loss_cell, params):
    """``loss_cell``'s (loss, aux) and gradients w.r.t. ``params``, compiled once."""
    import mindspore as ms
    from mindspore import nn

    class _Grads(nn.Cell):
        def __init__(self):
            super().__init__(auto_prefix=False)
            self.loss_cell = loss_cell
            self.grad_fn = ms.value_and_grad(loss_cell, None, params, has_aux=True)

        @ms.jit
        def construct(self, *inputs):
            return self.grad_fn(*inputs)

    return _Grads()


def train_sandwich(
    net,
    x: np.ndarray,
    y: np.ndarray,
    settings: TrainSettings,
    *,
    num_classes: int,
    subnets: Callable[[int], Sequence[Any]],
    activate: Callable[[Any], None],
    on_epoch: Callable[[int, float], None] | None = None,
) -> float:
    """Sandwich-rule training of an elastic network (BigNAS): at each step the gradients of the
    sub-networks ``subnets(step)`` (the largest first) are averaged into one SGD update; the
    largest learns from the labels ``y`` (in ``range(num_classes)``), the others from its
    predictions (in-place distillation, temperature ``settings.temperature``). ``activate(subnet)``
    switches ``net`` to a sub-network by setting parameters (masks), so one compiled graph serves
    every sub-network. Returns the last epoch's mean loss of the largest."""
    import mindspore as ms
    from mindspore import nn, ops

    use_host_blocking_run()
    lr = _cosine_lr(settings, len(x))
    params = net.trainable_params()
    opt = nn.Momentum(params, learning_rate=lr, momentum=settings.momentum, weight_decay=settings.weight_decay)
    t = settings.temperature

    class _SoftTargets(nn.Cell):
        """Cross-entropy against soft targets at a temperature (x temperature^2, Hinton et al.):
        with one-hot labels at temperature 1 it is the labels' cross-entropy, so the largest and
        the distilled sub-networks share one compiled graph. Also returns the predictions at the
        distillation temperature, the smaller sub-networks' targets."""

        def __init__(self):
            super().__init__(auto_prefix=False)
            self.net = net

        def construct(self, xb, targets, temperature):
            logits = self.net(xb)
            loss = -(targets * ops.log_softmax(logits / temperature, axis=-1)).sum(-1).mean()
            return loss * temperature * temperature, ops.stop_gradient(ops.softmax(logits / t, axis=-1))

    grads_of = _jit_value_and_grad(_SoftTargets(), params)
    labels_at, distill_at = ms.Tensor(1.0, ms.float32), ms.Tensor(float(t), ms.float32)

    def step(xb, yb, done: int) -> float:
        first, *rest = subnets(done)
        activate(first)
        one_hot = ms.Tensor(np.eye(num_classes, dtype=np.float32)[yb.asnumpy()])
        (loss, soft), grads = grads_of(xb, one_hot, labels_at)
        for sub in rest:
            activate(sub)
            grads = tuple(g + m for g, m in zip(grads, grads_of(xb, soft, distill_at)[1]))
        opt(tuple(g / (1 + len(rest)) for g in grads) if rest else grads)
        return float(loss.asnumpy())

    mode = ms.get_context("mode")
    # graph mode: a graph compiled under `mindspore.jit` in PyNative mode keeps the parameter values
    # it was compiled with (MindSpore 2.8), so it would see neither the masks set between steps nor
    # the optimizer's updates; graph-mode graphs read parameters by reference
    ms.set_context(mode=ms.GRAPH_MODE)
    net.set_train(True)
    try:
        return _epochs(x, y, settings, len(lr), step, on_epoch)
    finally:
        ms.set_context(mode=mode)
        net.set_train(False)


def _epochs(x, y, settings: TrainSettings, total_steps: int, step: Callable[[Any, Any, int], float],
            on_epoch: Callable[[int, float], None] | None) -> float:
    """Run ``step(x_batch, y_batch, step_index) -> loss`` over shuffled batches for
    ``total_steps``; ``on_epoch(epoch, mean_loss)`` after each (partial) epoch. Returns the last
    epoch's mean loss; raises ``TrialFailed`` when the loss is NaN or infinite."""
    import mindspore as ms

    done, epoch, last = 0, 0, float("nan")
    while done < total_steps:
        losses = []
        batches = iterate_batches(x, y, settings.batch_size, shuffle=True, seed=settings.seed + epoch, full=True)
        for xb, yb in batches:
            if done >= total_steps:
                break
            loss = step(ms.Tensor(xb), ms.Tensor(yb), done)
            if not math.isfinite(loss):
                raise TrialFailed(f"loss became {loss} at step {done} (learning rate {settings.lr} too high?)")
            losses.append(loss)
            done += 1
        last = float(np.mean(losses))
        if on_epoch is not None:
            on_epoch(epoch, last)
        epoch += 1
    return last


def predict(net, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Logits of ``net`` on ``x`` (inference mode), as one numpy array."""
    import mindspore as ms

    use_host_blocking_run()
    net.set_train(False)
    outs = [net(ms.Tensor(xb)).asnumpy() for xb, _ in iterate_batches(x, np.zeros(len(x)), batch_size, shuffle=False)]
    return np.concatenate(outs, axis=0)


def accuracy(net, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> float:
    """Top-1 accuracy in percent."""
    logits = predict(net, x, batch_size)
    if not np.all(np.isfinite(logits)):
        raise TrialFailed("the network produced NaN or infinite outputs")
    return float((logits.argmax(-1) == y).mean() * 100.0)
