"""The strategy extension point: a strategy proposes policies and observes results; it never trains.

A strategy owns the Optuna sampler of the study (each strategy its own seed stream, so TPE or
NSGA-II never replay the first trials of random search) and may propose policies up front
(solver solutions, uniform references), which are enqueued once into the study: the sampler
observes them like any other trial and refines from there.
"""

from __future__ import annotations

import abc
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import numpy as np

from automc.policy import Policy

Log = Callable[[str], None]
#: ``search.warm_start`` entries: ``(config, prepared, log) -> proposals`` enqueued before any strategy's own
WarmStart = Callable[[Any, Any, Log], "list[Proposal]"]
PROPOSED_ATTR = "automc.proposed"


def strategy_seed(seed: int, name: str) -> int:
    """The sampler seed of strategy ``name`` for the experiment's ``seed``: distinct streams per
    strategy, reproducible per experiment."""
    return int(np.random.SeedSequence([int(seed), zlib.crc32(name.encode())]).generate_state(1)[0])


@dataclass(frozen=True)
class Proposal:
    """A policy to evaluate, with where it came from (stored on the trial as ``proposal``)."""

    policy: Policy
    attrs: dict[str, Any] = field(default_factory=dict)


class Strategy(abc.ABC):
    """Base class of ``search.strategy`` entries."""

    name: ClassVar[str]

    def __init__(self, config, *, n_objectives: int, warm_start: WarmStart | None = None):
        self.config = config
        self.n_objectives = n_objectives
        self.warm_start = warm_start
        self.seed = strategy_seed(config.seed if config.search.seed is None else config.search.seed, self.name)

    def propose(self, prepared, log: Log) -> list[Proposal]:
        """Policies to enqueue before the sampler takes over (default: the warm start's, e.g. the
        solver's solutions for ``search.warm_start: sensitivity``, else none)."""
        return self.warm_start(self.config, prepared, log) if self.warm_start is not None else []

    @abc.abstractmethod
    def sampler(self, n_proposed: int):
        """The Optuna sampler; ``n_proposed`` policies were enqueued before it samples."""

    def max_trials(self, proposals: list[Proposal]) -> int | None:
        """An upper bound on useful trials (``None``: as many as ``search.n_trials``)."""
        return None


def warm_start_size(n_trials: int) -> int:
    """How many solver solutions seed a study of ``n_trials``: about a third, 2 to 8."""
    return int(min(8, max(2, n_trials // 3)))


def enqueue_once(study, space, proposals: list[Proposal], log: Log) -> int:
    """Enqueue ``proposals`` into ``study`` unless an earlier run of this study already did."""
    if not proposals or study.user_attrs.get(PROPOSED_ATTR):
        return 0
    for p in proposals:
        study.enqueue_trial(space.params_from_policy(p.policy), user_attrs={"proposal": p.attrs},
                            skip_if_exists=True)
    study.set_user_attr(PROPOSED_ATTR, len(proposals))
    log(f"enqueued {len(proposals)} proposed policies ({proposals[0].attrs.get('source', 'strategy')})")
    return len(proposals)
