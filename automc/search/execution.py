"""Where trials run: in this process (``local``) or on Ray workers (``ray``).

An executor takes ``submit(number, policy, trial)`` and hands back finished trials from
``wait()`` as ``(number, outcome)``, the outcome being a dict of results or the exception the
trial raised. The runner's ask/tell loop is the same for both.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from automc.errors import AutomcError, ConfigError, TrialFailed
from automc.policy import Policy
from automc.search import accelerator
from automc.search.evaluate import Evaluator, TrialContext, save_weights
from automc.search.strategies.fidelity import StoppingRule, band_metric, make_reporter


def run_trial(evaluator: Evaluator, number: int, policy: Policy, ckpt_dir: Path, *, report=None,
              time_limit_s: float | None = None) -> dict[str, Any]:
    """Evaluate trial ``number``'s policy (its seed: the experiment's + ``number``) and save the
    fine-tuned weights to ``ckpt_dir/trial-NNNN.ckpt`` (written aside, renamed into place)."""
    start = time.perf_counter()

    def on_epoch(epoch: int, acc: float) -> None:
        if time_limit_s is not None and time.perf_counter() - start > time_limit_s:
            raise TrialFailed(f"exceeded search.trial_timeout_s = {time_limit_s}s")
        if report is not None:
            report(epoch, acc)

    result = evaluator.evaluate(policy, seed=evaluator.ctx.config.seed + number,
                                report=on_epoch if report is not None or time_limit_s is not None else None)
    path = ckpt_dir / f"trial-{number:04d}.ckpt"
    save_weights(result.network, path)
    return {"accuracy": result.accuracy, "checkpoint": str(path.resolve()),
            "epoch_accuracies": result.epoch_accuracies, "seconds": result.seconds, "epochs": result.epochs,
            "node": _node_id(), **accelerator.current()}


def _node_id() -> str:
    """The Ray node this runs on (its id), or ``local`` outside Ray."""
    try:
        import ray

        if ray.is_initialized():
            return ray.get_runtime_context().get_node_id()
    except ImportError:
        pass
    return "local"


def _reporter(config, trial, band_cost: float | None):
    """``report(step, accuracy)`` for a trial, or None when no rule stops trials."""
    if config.search.pruner == "none":
        return None
    return make_reporter(trial, StoppingRule(config.search.pruner), metric=band_metric(config), cost=band_cost,
                         single_objective=len(config.objectives) == 1, finetune_epochs=config.finetune.epochs)


class LocalExecutor:
    """One trial at a time in this process; reports epochs to Optuna so pruners can stop it."""

    capacity = 1

    def __init__(self, ctx: TrialContext):
        self.evaluator = Evaluator(ctx)
        self.ckpt_dir = ctx.config.out_path / "trials"
        self.time_limit_s = ctx.config.search.trial_timeout_s
        self._pending: list[tuple[int, Policy, Any, float | None]] = []

    def submit(self, number: int, policy: Policy, trial, *, band_cost: float | None = None) -> None:
        self._pending.append((number, policy, trial, band_cost))

    def wait(self) -> list[tuple[int, Any]]:
        number, policy, trial, band_cost = self._pending.pop(0)
        report = _reporter(self.evaluator.ctx.config, trial, band_cost)
        try:
            return [(number, run_trial(self.evaluator, number, policy, self.ckpt_dir, report=report,
                                       time_limit_s=self.time_limit_s))]
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # the trial fails, the search goes on
            return [(number, exc)]

    def close(self) -> None:
        pass


class _RayWorker:
    """A Ray actor holding one Evaluator (the baseline is rebuilt once per worker). It reports
    each epoch to the study's SQL storage itself, so Optuna's pruners work across machines."""

    def __init__(self, ctx: TrialContext, storage_url: str):
        import mindspore as ms

        cfg = ctx.config
        ms.set_context(mode=ms.PYNATIVE_MODE)
        # device 0 of the devices Ray left visible to this worker; on CPU, MindSpore's kernels would
        # use every core of the node: a worker keeps to its share, so N workers on N cores run side
        # by side instead of fighting over all of them
        accelerator.use(cfg.execution.accelerator, 0, cpu_threads=max(1, int(cfg.execution.cpus_per_trial)))
        self.evaluator = Evaluator(ctx)
        self.ckpt_dir = cfg.out_path.resolve() / "trials"
        self.time_limit_s = cfg.search.trial_timeout_s
        self.storage_url = storage_url
        self._study = None

    def _trial(self, trial_id: int):
        import optuna

        cfg = self.evaluator.ctx.config
        if self._study is None:
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            self._study = optuna.load_study(study_name=cfg.name, storage=self.storage_url)
        return optuna.trial.Trial(self._study, trial_id)

    def evaluate(self, number: int, trial_id: int, policy_json: str, band_cost: float | None) -> dict[str, Any]:
        cfg = self.evaluator.ctx.config
        report = _reporter(cfg, self._trial(trial_id), band_cost) if cfg.search.pruner != "none" else None
        return run_trial(self.evaluator, number, Policy.from_json(policy_json), self.ckpt_dir, report=report,
                         time_limit_s=self.time_limit_s)


def check_cluster_devices(ex) -> None:
    """More GPUs or NPUs per trial than any node of the Ray cluster has: one line, before any work."""
    import ray

    for field, resource in (("gpus_per_trial", "GPU"), ("npus_per_trial", "NPU")):
        wanted = getattr(ex, field)
        if not wanted:
            continue
        most = max((n["Resources"].get(resource, 0) for n in ray.nodes() if n.get("Alive")), default=0)
        if most < wanted:
            raise ConfigError(f"execution.{field}: {wanted:g}, but no node of the Ray cluster has more than {most:g} "
                              f"{resource} (`ray status` lists them); lower it or add nodes with {resource}s")


#: how long the search waits for a Ray worker to start when none is running (then: an error)
WORKER_START_TIMEOUT_S = 300.0


class RayExecutor:
    """``workers`` Ray actors; the trial context goes to the object store once.

    An actor gets trials once it has started (``__ray_ready__``): a worker whose node left the
    cluster is replaced by one that waits for room, and until it has room the search goes on with
    the workers that run (``capacity``). With no worker running and none able to start within
    ``WORKER_START_TIMEOUT_S``, the search stops with the resources it lacks.
    """

    def __init__(self, ctx: TrialContext, storage_url: str):
        import ray

        ex = ctx.config.execution
        self._owns_ray = False
        if not ray.is_initialized():
            import logging

            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
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
        self._ex = ex
        self._ctx_ref = ray.put(ctx)
        try:
            check_cluster_devices(ex)
        except ConfigError:
            if self._owns_ray:
                ray.shutdown()
            raise
        self._actor_cls = ray.remote(num_cpus=ex.cpus_per_trial, num_gpus=ex.gpus_per_trial,
                                     resources={"NPU": ex.npus_per_trial} if ex.npus_per_trial else None)(_RayWorker)
        self._storage_url = storage_url
        self._starting: dict[Any, Any] = {}   # ready ref -> actor not yet started
        self._free: list[Any] = []
        self._running: dict[Any, tuple[int, Any, float]] = {}
        self._start_failures = 0
        for _ in range(ex.workers):
            self._start_actor()
        # a worker stuck past the soft limit (checked between epochs) is killed and replaced
        limit = ctx.config.search.trial_timeout_s
        self._hard_limit_s = None if limit is None else 1.5 * limit + 60

    def _start_actor(self) -> None:
        actor = self._actor_cls.remote(self._ctx_ref, self._storage_url)
        self._starting[actor.__ray_ready__.remote()] = actor

    def _promote(self, ready: list) -> None:
        """Started actors take trials; one that failed to start (its node left, its process died)
        is started again, up to ``3 * workers`` times in all (then the error is the search's)."""
        for ref in ready:
            actor = self._starting.pop(ref)
            try:
                self._ray.get(ref)
                self._free.append(actor)
            except self._ray.exceptions.RayError as exc:
                self._start_failures += 1
                if self._start_failures > 3 * self._ex.workers:
                    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
                    raise AutomcError(f"Ray workers keep failing to start ({self._start_failures} times); the last: "
                                      f"{lines[-1] if lines else type(exc).__name__}") from None
                self._start_actor()

    @property
    def capacity(self) -> int:
        """Trials that can run now: the started workers. With none started and nothing running,
        waits for one up to ``WORKER_START_TIMEOUT_S``."""
        deadline = time.monotonic() + WORKER_START_TIMEOUT_S
        while self._starting:
            idle = not (self._free or self._running)
            ready, _ = self._ray.wait(list(self._starting), num_returns=1,
                                      timeout=max(0.0, deadline - time.monotonic()) if idle else 0)
            if not ready:
                break
            self._promote(ready)
        if not (self._free or self._running):
            raise AutomcError(f"no Ray worker could start within {WORKER_START_TIMEOUT_S:.0f}s: no node of the "
                              f"cluster has {self._ex.cpus_per_trial:g} free CPUs"
                              + (f" and {self._ex.gpus_per_trial:g} GPUs" if self._ex.gpus_per_trial else "")
                              + " (execution.cpus_per_trial / gpus_per_trial); `ray status` shows what it has")
        return len(self._free) + len(self._running)

    def submit(self, number: int, policy: Policy, trial, *, band_cost: float | None = None) -> None:
        actor = self._free.pop()
        ref = actor.evaluate.remote(number, trial._trial_id, policy.to_json(), band_cost)
        self._running[ref] = (number, actor, time.perf_counter())

    def _replace(self, actor) -> None:
        """A fresh worker in place of a dead or killed one (it takes trials once it has started)."""
        self._ray.kill(actor)
        self._start_actor()

    def _kill_overdue(self) -> list[tuple[int, Any]]:
        out = []
        now = time.perf_counter()
        for ref, (number, actor, started) in list(self._running.items()):
            if self._hard_limit_s is not None and now - started > self._hard_limit_s:
                del self._running[ref]
                self._replace(actor)
                out.append((number, TrialFailed(f"killed after {now - started:.0f}s (search.trial_timeout_s)")))
        return out

    def wait(self) -> list[tuple[int, Any]]:
        ray = self._ray
        while True:
            ready, _ = ray.wait(list(self._running) + list(self._starting), num_returns=1, timeout=5.0)
            self._promote([r for r in ready if r in self._starting])
            overdue = self._kill_overdue()
            if overdue or any(r in self._running for r in ready):
                break
        out = overdue
        for ref in [r for r in ready if r in self._running]:
            number, actor, _ = self._running.pop(ref)
            try:
                out.append((number, ray.get(ref)))
                self._free.append(actor)
            except ray.exceptions.RayActorError as exc:  # the worker or its node died: fail the trial, replace it
                out.append((number, TrialFailed(f"Ray worker died: {str(exc).splitlines()[0]}")))
                self._replace(actor)
            except ray.exceptions.RayTaskError as exc:
                self._free.append(actor)
                cause = exc.cause if getattr(exc, "cause", None) is not None else exc
                out.append((number, cause))
        return out

    def close(self) -> None:
        for actor in [*self._starting.values(), *self._free, *(a for _, a, _ in self._running.values())]:
            self._ray.kill(actor)
        if self._owns_ray:
            self._ray.shutdown()


def make_executor(config, ctx: TrialContext, storage_url: str):
    if config.execution.backend == "ray":
        return RayExecutor(ctx, storage_url)
    return LocalExecutor(ctx)
