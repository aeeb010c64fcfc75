"""The search, as three stages run in order by ``pipeline.run_search``:

``baseline``   data, network, accelerator, the baseline (trained once, cached), elastic training,
               the layer table, the search space and the budgets: a ``Prepared``
``runner``     the trial loop: ask, project onto the budget, submit, tell (Optuna, MLflow)
``finish``     the Pareto front, the winner's final fine-tune and export, the uniform reference

``strategies`` propose and observe (never train), with the intelligence they use (sensitivity,
budget solver, proxy accuracy, stopping rules, evolution). The plumbing the stages share:
``evaluate`` (one policy on a copy of the baseline), ``execution`` (in this process or on Ray),
``costs``, ``projection``, ``space``, ``selection``, ``result``, ``study`` and ``sqlite`` (Optuna
storage), ``tracking`` (MLflow), ``accelerator``, ``interrupt``, ``progress``, ``dryrun``.
"""
