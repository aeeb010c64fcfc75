"""Optuna's own samplers as strategies: tpe, nsga2, random, cmaes, gp."""

from __future__ import annotations

import importlib.util

from automc.errors import ConfigError
from automc.search.strategies.base import Strategy, WarmStart


class TPE(Strategy):
    """Multivariate TPE; after proposed policies it starts modelling at once instead of sampling
    ten random policies first."""

    name = "tpe"

    def sampler(self, n_proposed: int):
        import optuna

        startup = 10 if n_proposed == 0 else max(n_proposed, 2)
        return optuna.samplers.TPESampler(seed=self.seed, multivariate=True, n_startup_trials=startup)


class NSGA2(Strategy):
    name = "nsga2"

    def sampler(self, n_proposed: int):
        import optuna

        # a population of 50 (Optuna's default) would make a small budget one random generation
        population = max(4, min(50, self.config.search.n_trials // 4))
        return optuna.samplers.NSGAIISampler(seed=self.seed, population_size=population)


class Random(Strategy):
    name = "random"

    def sampler(self, n_proposed: int):
        import optuna

        return optuna.samplers.RandomSampler(seed=self.seed)


def _needs(package: str, strategy: str, why: str) -> None:
    """Refuse ``strategy`` when it is built (before any work) if ``package`` is not installed."""
    if importlib.util.find_spec(package) is None:
        raise ConfigError(f"search.strategy {strategy!r} needs {why}: pip install {package}")


class CmaEs(Strategy):
    name = "cmaes"

    def __init__(self, config, *, n_objectives: int, warm_start: WarmStart | None = None):
        if n_objectives > 1:
            raise ConfigError("search.strategy 'cmaes' handles one objective only; use tpe or nsga2 for several")
        _needs("cmaes", self.name, "the cmaes package (Optuna's CmaEsSampler imports it)")
        super().__init__(config, n_objectives=n_objectives, warm_start=warm_start)

    def sampler(self, n_proposed: int):
        import optuna

        return optuna.samplers.CmaEsSampler(seed=self.seed)


class GP(Strategy):
    name = "gp"

    def __init__(self, config, *, n_objectives: int, warm_start: WarmStart | None = None):
        _needs("torch", self.name, "PyTorch (Optuna's GPSampler uses it)")
        super().__init__(config, n_objectives=n_objectives, warm_start=warm_start)

    def sampler(self, n_proposed: int):
        import optuna

        return optuna.samplers.GPSampler(seed=self.seed)
