"""Search strategies (Optuna samplers) and pruners, keyed by their YAML names."""

from __future__ import annotations

from automc.errors import ConfigError


def make_sampler(name: str, *, seed: int, n_objectives: int, n_trials: int = 100):
    """The Optuna sampler of ``search.strategy``. Constraints reach TPE, NSGA-II and GP through
    ``trial.set_constraint`` (the runner sets one value per YAML constraint; > 0 is a violation)."""
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)
    if name == "nsga2":
        # a population of 50 (Optuna's default) would make a small budget one random generation
        population = max(4, min(50, n_trials // 4))
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=population)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        if n_objectives > 1:
            raise ConfigError("search.strategy 'cmaes' handles one objective only; use tpe or nsga2 for several")
        return optuna.samplers.CmaEsSampler(seed=seed)
    if name == "gp":
        try:
            import torch  # noqa: F401  (Optuna's GPSampler needs it)
        except ImportError:
            raise ConfigError("search.strategy 'gp' needs PyTorch: pip install torch") from None
        return optuna.samplers.GPSampler(seed=seed)
    raise ConfigError(f"unknown search.strategy {name!r}; valid: tpe, nsga2, cmaes, random, gp")


def make_pruner(name: str, *, n_objectives: int = 1):
    """Optuna pruners judge intermediate values of single-objective studies; for several
    objectives the runner applies the median rule to validation accuracy itself."""
    import optuna

    if n_objectives > 1:
        if name == "hyperband":
            raise ConfigError("search.pruner 'hyperband' needs a single objective; use 'median' or 'none' with several")
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"unknown search.pruner {name!r}; valid: median, hyperband, none")


def median_says_prune(study, epoch: int, accuracy: float, *, n_startup_trials: int = 4) -> bool:
    """The median rule on validation accuracy, for multi-objective studies: stop a trial whose
    accuracy after ``epoch`` is below the median of completed trials at the same epoch."""
    from optuna.trial import TrialState

    key = f"val_accuracy_epoch_{epoch}"
    seen = [t.user_attrs[key] for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if key in t.user_attrs]
    if len(seen) < n_startup_trials:
        return False
    seen.sort()
    mid = len(seen) // 2
    median = seen[mid] if len(seen) % 2 else 0.5 * (seen[mid - 1] + seen[mid])
    return accuracy < median
