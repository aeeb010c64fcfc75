"""The contract every ``search.strategy`` keeps, checked for each name in the registry (a new
strategy is checked as soon as it is registered), on real networks driven the way the search
drives a strategy: ``make_strategy`` -> ``propose`` -> ``sampler`` -> the proposals enqueued
once -> ask / ``space.suggest`` / tell, for at most ``max_trials`` trials.

- it is a ``Strategy`` registered under its own ``name``, with a seed stream of its own that
  ``search.seed`` moves;
- it refuses a setting it cannot handle with a ``ConfigError`` that names it, when it is built:
  a strategy that builds has a sampler that samples (the search calls ``propose`` before
  ``sampler``, and ``propose`` may take minutes: a sensitivity analysis, proxies);
- it proposes policies of the search space (every value on a decision's grid or among its
  choices, no key outside the space), distinct, JSON-storable (the study is SQL), within the cost
  constraints, at most ``search.n_trials``; the study then evaluates exactly those, in order; a
  strategy that caps the study proposes at least one policy;
- it observes results: completed, failed and pruned trials are told, and it goes on proposing
  valid policies after them;
- it respects its seed: the same seed, computed afresh (not read from a cache), gives the same
  proposals and trials; another seed is allowed to give others (not asserted).

Two spaces, each on a baseline trained for a few seconds: LeNet on digits with channel pruning
under two cost constraints (one objective, so ``cmaes`` is in), and ResNet-20 (width 8, 8x8
inputs) with an elastic NAS space (two objectives). Quantization is left out: each quantized
candidate takes ~0.7 s to build here, so ``sensitivity`` and ``greedy`` over a joint LeNet space
took 30 s and 170 s. A completed trial is told the real proxy accuracy a trial sees at step 0 (the
compressed baseline, batch norm re-estimated, on 100 validation samples), memoised per policy so
two runs are told the same values.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from automc.config import config_from_dict
from automc.errors import ConfigError
from automc.policy import Policy
from automc.search.baseline import prepare
from automc.search.costs import cost_metrics
from automc.search.evaluate import Evaluator
from automc.search.strategies import STRATEGIES, Proposal, Strategy, enqueue_once, make_strategy

NAMES = STRATEGIES.names()
N_TRIALS = 5
#: trial k (0-based) of every run is told failed / pruned, as the runner tells a trial whose
#: fine-tune raised or that a stopping rule stopped (such a trial has no accuracy)
FAILED, PRUNED = 1, 2

SEARCH = {"n_trials": N_TRIALS, "sensitivity_samples": 100, "proxy_subnets": 10, "proxy_samples": 100,
          "candidates": 100, "pruner": "none", "heartbeat_s": 1.0}
SPACES = {
    "lenet-pruning": {
        "model": {"name": "lenet"}, "data": {"name": "digits", "max_samples": 800},
        "train": {"epochs": 3, "lr": 0.05},
        "compress": {"pruning": {"max_ratio": 0.6, "step": 0.2}},
        "objectives": ["accuracy"], "constraints": ["macs <= 50%", "size <= 70%"],
    },
    "resnet20-nas": {
        "model": {"name": "resnet20", "kwargs": {"width": 8}},
        "data": {"name": "digits", "resize": [8, 8], "channels": 3, "max_samples": 800},
        "train": {"epochs": 1, "lr": 0.05, "batch_size": 32},
        "compress": {"nas": {"width": [0.5, 1.0], "depth": [1, 2, 3]}},
        "objectives": ["accuracy", "macs"], "constraints": ["macs <= 70%"],
    },
}


@dataclasses.dataclass
class Space:
    name: str
    prepared: object  # what ``prepare`` returns: context (config, table, data), space, objectives, constraints
    root: Path
    cost_metrics: object
    accuracy: object  # Policy -> the proxy accuracy told for it (memoised)


@dataclasses.dataclass
class Run:
    """One strategy driven through a study: what it proposed, what the study asked, what was told."""

    strategy: Strategy | None = None
    refused: str = ""  # where it refused ("make_strategy", "propose", "sampler") and why
    proposals: list = dataclasses.field(default_factory=list)
    cap: int | None = None
    asked: list = dataclasses.field(default_factory=list)  # the policies of the asked trials, in order
    study: object = None


@pytest.fixture(scope="module", params=list(SPACES))
def space(request, tmp_path_factory) -> Space:
    from automc.training import accuracy

    root = tmp_path_factory.mktemp(request.param)
    cfg = config_from_dict({"name": request.param, "output_dir": str(root / "baseline"), "seed": 0,
                            "finetune": {"epochs": 0.5, "lr": 0.02}, "search": SEARCH,
                            "export": {"formats": [], "compare_uniform": False}, **SPACES[request.param]})
    prepared = prepare(cfg)
    evaluator = Evaluator(prepared.context)
    val = prepared.context.data.val
    x, y = val.x[:100], val.y[:100]
    seen: dict[str, float] = {}

    def proxy(policy) -> float:
        key = policy.to_json()
        if key not in seen:
            seen[key] = accuracy(evaluator.compress(policy, recalibrate=True, seed=0), x, y)
        return seen[key]

    return Space(request.param, prepared, root, cost_metrics, proxy)


def _with_strategy(cfg, name: str, **search):
    """``cfg`` with ``search.strategy`` ``name``, set without validation: the config's list of
    strategy names need not know every strategy the registry has."""
    return cfg.model_copy(update={"search": cfg.search.model_copy(update={"strategy": name, **search})})


def _drive(space: Space, name: str, out: str) -> Run:
    """``name`` driven as the search drives it, in output folder ``out`` (where its caches start
    empty: sensitivity, proxies)."""
    import optuna
    from optuna.trial import TrialState

    base = space.prepared
    cfg = _with_strategy(base.context.config, name).model_copy(update={"output_dir": str(space.root / out)})
    cfg.out_path.mkdir(parents=True, exist_ok=True)
    # what ``prepare(cfg)`` returns for this config: the same baseline, layer table and space
    prepared = dataclasses.replace(base, context=dataclasses.replace(base.context, config=cfg))
    run, log = Run(), (lambda s: None)
    step = "make_strategy"
    try:
        run.strategy = make_strategy(cfg, n_objectives=len(prepared.objectives))
        step = "propose"
        run.proposals = run.strategy.propose(prepared, log)
        step = "sampler"
        sampler = run.strategy.sampler(len(run.proposals))
    except ConfigError as exc:
        run.refused = f"{step}: {exc}"
        return run
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run.study = optuna.create_study(directions=[m.direction for m in prepared.objectives], sampler=sampler,
                                    pruner=optuna.pruners.NopPruner())
    enqueue_once(run.study, prepared.space, run.proposals, log)
    run.cap = run.strategy.max_trials(run.proposals)
    tracked = list({m.name: m for m in prepared.objectives + [c.metric for c in prepared.constraints]
                    if not m.needs_training}.values())
    for k in range(N_TRIALS if run.cap is None else min(N_TRIALS, run.cap)):
        trial = run.study.ask()
        policy = prepared.space.suggest(trial)
        run.asked.append(policy)
        metrics = {n: float(v[0]) for n, v in space.cost_metrics(prepared.context.table, policy, tracked).items()}
        for c in prepared.constraints:
            trial.set_constraint(c.text, float(c.violation(metrics[c.metric.name])))
        if k == FAILED:
            run.study.tell(trial, state=TrialState.FAIL)
        elif k == PRUNED:
            run.study.tell(trial, state=TrialState.PRUNED)
        else:
            metrics["accuracy"] = space.accuracy(policy)
            run.study.tell(trial, [metrics[m.name] for m in prepared.objectives])
    return run


@pytest.fixture(scope="module")
def runs(space):
    """name -> {"a": a run, "b": the same seed afresh in another folder}, driven on first use (an
    error is kept and raised again in each test that reads the runs)."""
    cache: dict[str, dict[str, Run] | Exception] = {}

    def get(name: str) -> dict[str, Run]:
        if name not in cache:
            try:
                cache[name] = {"a": _drive(space, name, f"{name}-a"), "b": _drive(space, name, f"{name}-b")}
            except Exception as exc:
                cache[name] = exc
        if isinstance(cache[name], Exception):
            raise cache[name]
        return cache[name]

    return get


def _skip_if_refused(run: Run, name: str) -> None:
    """A ``ConfigError`` refusal is within the contract; the rest then has nothing to check."""
    if run.refused:
        pytest.skip(f"{name} refuses this space: {run.refused}")


def _off_space(space: Space, policy) -> list[str]:
    """What in ``policy`` is outside the search space: keys no decision has, values off a
    decision's range, step grid or choices."""
    decisions = {d.param_name: d for d in space.prepared.space.decisions}
    bad = []
    for section, values in policy.to_dict().items():
        for key, v in values.items():
            d = decisions.get(f"{section}.{key}")
            if d is None:
                bad.append(f"{section}.{key}: no such decision")
            elif d.kind == "float":
                on_grid = d.step is None or abs((v - d.low) / d.step - round((v - d.low) / d.step)) < 1e-6
                if not (d.low - 1e-9 <= v <= d.high + 1e-9 and on_grid):
                    bad.append(f"{section}.{key}={v}: not in [{d.low}, {d.high}] step {d.step}")
            elif v not in d.choices:
                bad.append(f"{section}.{key}={v!r}: not one of {list(d.choices)}")
    return bad


def _params(space: Space, policy) -> dict:
    return space.prepared.space.params_from_policy(policy)


def _same_params(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        math.isclose(a[k], b[k], abs_tol=1e-9) if isinstance(a[k], float) else a[k] == b[k] for k in a)


def _lenet_config(name: str, n_objectives: int = 1, seed: int = 0, search_seed: int | None = None):
    cfg = config_from_dict({"name": "s", "seed": seed, "model": {"name": "lenet"}, "compress": {"pruning": {}},
                            "objectives": ["accuracy", "macs"][:n_objectives], "constraints": ["macs <= 50%"]})
    return _with_strategy(cfg, name, seed=search_seed)


# -- the registry entry, its seed stream, its refusals (no network) ---------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_registry_entry_is_a_strategy_under_its_own_name(name):
    cls = STRATEGIES.get(name)
    assert isinstance(cls, type) and issubclass(cls, Strategy), cls
    assert cls.name == name  # its seed stream (and the search's log lines) use ``name``
    try:
        built = make_strategy(_lenet_config(name), n_objectives=1)
    except ConfigError as exc:  # refused when built, naming itself (e.g. gp without PyTorch)
        assert repr(name) in str(exc)
        return
    assert type(built) is cls


@pytest.mark.parametrize("name", NAMES)
def test_seed_stream_is_the_strategys_own_and_search_seed_moves_it(name):
    def seed(n, **kw):
        try:
            return make_strategy(_lenet_config(n, **kw), n_objectives=1).seed
        except ConfigError as exc:  # refused when built (test_refuses_when_built_or_its_sampler_samples)
            return pytest.skip(str(exc)) if n == name else None

    own = seed(name)
    assert isinstance(own, int) and own == seed(name) == seed(name, search_seed=0)
    assert seed(name, search_seed=7) != own and seed(name, seed=3) != own
    others = {n: s for n in NAMES if n != name and (s := seed(n)) is not None}
    assert own not in others.values(), f"{name} shares its seed stream: {others}"


@pytest.mark.parametrize("n_objectives", [1, 2])
@pytest.mark.parametrize("name", NAMES)
def test_refuses_when_built_or_its_sampler_samples(name, n_objectives):
    """A ``ConfigError`` from ``make_strategy`` names the strategy; a strategy that builds gives
    a sampler that samples and is told (here on a one-parameter study)."""
    import optuna

    try:
        strategy = make_strategy(_lenet_config(name, n_objectives), n_objectives=n_objectives)
    except ConfigError as exc:
        assert name in str(exc)
        return
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize"][:n_objectives], sampler=strategy.sampler(0))
    for _ in range(3):
        trial = study.ask()
        r = trial.suggest_float("prune.g", 0.0, 0.6, step=0.05)
        study.tell(trial, [1 - r, r][:n_objectives])


# -- proposing, observing, seeding, on real spaces ---------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_proposes_valid_policies_of_the_space_within_the_budget(space, runs, name):
    run = runs(name)["a"]
    _skip_if_refused(run, name)
    props, constraints = run.proposals, space.prepared.constraints
    assert all(isinstance(p, Proposal) and isinstance(p.policy, Policy) for p in props)
    assert len(props) <= N_TRIALS, f"{len(props)} proposals for search.n_trials {N_TRIALS}"
    for p in props:
        assert not _off_space(space, p.policy), (p.attrs, _off_space(space, p.policy))
        json.dumps(_params(space, p.policy)), json.dumps(p.attrs)  # stored in the SQL study as JSON
    keys = [json.dumps(_params(space, p.policy), sort_keys=True) for p in props]
    assert len(set(keys)) == len(keys), "duplicate proposals (each enqueued once, they would shrink the study)"
    if props:
        costs = space.cost_metrics(space.prepared.context.table, [p.policy for p in props],
                                   [c.metric for c in constraints])
        for c in constraints:
            ok = c.satisfied(costs[c.metric.name])
            assert ok.all(), f"proposals {np.flatnonzero(~ok).tolist()} miss {c.text}"
    assert run.cap is None or run.cap >= 1, (
        f"{name} proposes {len(props)} policies and caps the study at {run.cap} trials: the search would "
        "evaluate nothing")
    # the study evaluates what was proposed, in order, then what the sampler asks: all in the space
    for p, asked in zip(props, run.asked):
        assert _same_params(_params(space, p.policy), _params(space, asked)), (p.attrs, asked)
    for asked in run.asked:
        assert not _off_space(space, asked)


@pytest.mark.parametrize("name", NAMES)
def test_observes_completed_failed_and_pruned_trials(space, runs, name):
    from optuna.trial import TrialState

    run = runs(name)["a"]
    _skip_if_refused(run, name)
    trials = run.study.get_trials(deepcopy=False)
    expected = N_TRIALS if run.cap is None else min(N_TRIALS, run.cap)
    assert len(trials) == len(run.asked) == expected
    for k, t in enumerate(trials):
        want = {FAILED: TrialState.FAIL, PRUNED: TrialState.PRUNED}.get(k, TrialState.COMPLETE)
        assert t.state == want
        if want == TrialState.COMPLETE:
            assert len(t.values) == len(space.prepared.objectives)
    assert sum("proposal" in t.user_attrs for t in trials) == min(len(run.proposals), expected)
    if run.cap is None:  # the sampler took over after the proposals, told their results
        assert len(run.asked) > len(run.proposals)


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_gives_the_same_proposals_and_trials(space, runs, name):
    a, b = runs(name)["a"], runs(name)["b"]
    _skip_if_refused(a, name)
    assert not b.refused and a.strategy.seed == b.strategy.seed
    assert [_params(space, p.policy) for p in a.proposals] == [_params(space, p.policy) for p in b.proposals]
    assert [p.attrs for p in a.proposals] == [p.attrs for p in b.proposals]
    assert a.cap == b.cap and len(a.asked) == len(b.asked)
    for k, (x, y) in enumerate(zip(a.asked, b.asked)):
        assert _same_params(_params(space, x), _params(space, y)), f"trial {k} differs"
