"""Where trials run: in this process (``local``) or on Ray workers (``ray``).

An executor takes ``submit(number, policy, trial)`` and hands back finished trials from
``wait()`` as ``(number, outcome)``, the outcome being a dict of results or the exception the
trial raised. The runner's ask/tell loop is the same for both.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from automc.errors import ConfigError, TrialFailed
from automc.policy import Policy
from automc.search.evaluate import Evaluator, TrialContext
from automc.search.strategies import median_says_prune


def _run_trial(evaluator: Evaluator, number: int, policy: Policy, ckpt_dir: Path, *, report=None,
               time_limit_s: float | None = None) -> dict[str, Any]:
    import mindspore as ms

    start = time.perf_counter()

    def on_epoch(epoch: int, acc: float) -> None:
        if time_limit_s is not None and time.perf_counter() - start > time_limit_s:
            raise TrialFailed(f"exceeded search.trial_timeout_s = {time_limit_s}s")
        if report is not None:
            report(epoch, acc)

    result = evaluator.evaluate(policy, seed=evaluator.ctx.config.seed + number, report=on_epoch)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    path = ckpt_dir / f"trial-{number:04d}.ckpt"
    ms.save_checkpoint(result.network, str(path))
    return {"accuracy": result.accuracy, "checkpoint": str(path.resolve()),
            "epoch_accuracies": result.epoch_accuracies, "seconds": result.seconds}


class LocalExecutor:
    """One trial at a time in this process; reports epochs to Optuna so pruners can stop it."""

    capacity = 1

    def __init__(self, ctx: TrialContext):
        self.evaluator = Evaluator(ctx)
        self.ckpt_dir = ctx.config.out_path / "trials"
        self.time_limit_s = ctx.config.search.trial_timeout_s
        self._pending: list[tuple[int, Policy, Any]] = []
        self._multi = len(ctx.config.objectives) > 1
        self._median = ctx.config.search.pruner == "median"

    def submit(self, number: int, policy: Policy, trial) -> None:
        self._pending.append((number, policy, trial))

    def wait(self) -> list[tuple[int, Any]]:
        import optuna

        number, policy, trial = self._pending.pop(0)

        def report(epoch: int, acc: float) -> None:
            trial.set_user_attr(f"val_accuracy_epoch_{epoch}", acc)
            if self._multi:  # Optuna's pruners judge single-objective studies only
                prune = self._median and median_says_prune(trial.study, epoch, acc)
            else:
                trial.report(acc, epoch)
                prune = trial.should_prune()
            if prune:
                raise optuna.TrialPruned(f"val accuracy {acc:.2f}% at epoch {epoch} is below the median")

        try:
            return [(number, _run_trial(self.evaluator, number, policy, self.ckpt_dir, report=report,
                                        time_limit_s=self.time_limit_s))]
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # the trial fails, the search goes on
            return [(number, exc)]

    def close(self) -> None:
        pass


class _RayWorker:
    """A Ray actor holding one Evaluator (the baseline is rebuilt once per worker)."""

    def __init__(self, ctx: TrialContext):
        import mindspore as ms

        ms.set_context(mode=ms.PYNATIVE_MODE)
        self.evaluator = Evaluator(ctx)
        self.ckpt_dir = ctx.config.out_path.resolve() / "trials"
        self.time_limit_s = ctx.config.search.trial_timeout_s

    def evaluate(self, number: int, policy_json: str) -> dict[str, Any]:
        return _run_trial(self.evaluator, number, Policy.from_json(policy_json), self.ckpt_dir,
                          time_limit_s=self.time_limit_s)

    def pid(self) -> int:
        import os

        return os.getpid()


class RayExecutor:
    """``workers`` Ray actors; the trial context goes to the object store once."""

    def __init__(self, ctx: TrialContext):
        import ray

        ex = ctx.config.execution
        self._owns_ray = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if ex.ray_address:
                kwargs["address"] = ex.ray_address
            else:
                kwargs["num_cpus"] = max(int(ex.workers * ex.cpus_per_trial), 1)
            try:
                ray.init(**kwargs)
            except ConnectionError as exc:
                raise ConfigError(f"execution.ray_address {ex.ray_address!r}: cannot connect ({exc}); "
                                  "start the cluster with `ray start --head` or drop ray_address") from None
            self._owns_ray = True
        self._ray = ray
        self._ctx_ref = ray.put(ctx)
        self._actor_cls = ray.remote(num_cpus=ex.cpus_per_trial, num_gpus=ex.gpus_per_trial, max_restarts=-1)(_RayWorker)
        self._actors = [self._actor_cls.remote(self._ctx_ref) for _ in range(ex.workers)]
        self._free = list(self._actors)
        self._running: dict[Any, tuple[int, Any]] = {}
        self.capacity = ex.workers

    def submit(self, number: int, policy: Policy, trial) -> None:
        actor = self._free.pop()
        ref = actor.evaluate.remote(number, policy.to_json())
        self._running[ref] = (number, actor)

    def wait(self) -> list[tuple[int, Any]]:
        ray = self._ray
        ready, _ = ray.wait(list(self._running), num_returns=1)
        out = []
        for ref in ready:
            number, actor = self._running.pop(ref)
            self._free.append(actor)
            try:
                out.append((number, ray.get(ref)))
            except ray.exceptions.RayActorError as exc:
                out.append((number, TrialFailed(f"Ray worker died: {str(exc).splitlines()[0]}")))
            except ray.exceptions.RayTaskError as exc:
                cause = exc.cause if getattr(exc, "cause", None) is not None else exc
                out.append((number, cause))
        return out

    def close(self) -> None:
        for actor in self._actors:
            self._ray.kill(actor)
        if self._owns_ray:
            self._ray.shutdown()


def make_executor(config, ctx: TrialContext):
    if config.execution.backend == "ray":
        return RayExecutor(ctx)
    return LocalExecutor(ctx)
