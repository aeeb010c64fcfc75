"""TrialRecord reads back what the runner stored on an Optuna trial (real in-memory studies)."""

import optuna

from automc.policy import Policy
from automc.search.result import TrialRecord


def _finished_trial(**user_attrs):
    study = optuna.create_study(directions=["maximize", "minimize"])
    trial = study.ask()
    trial.suggest_float("prune.conv1", 0.0, 0.8, step=0.05)
    for key, value in user_attrs.items():
        trial.set_user_attr(key, value)
    study.tell(trial, [97.5, 1e6])
    return study.trials[0]


def test_the_evaluated_policy_and_metrics_come_from_the_result_attr():
    projected = Policy(prune={"conv1": 0.3})  # what projection made of the sampled params
    t = _finished_trial(result={"policy": projected.to_dict(), "metrics": {"accuracy": 97.5, "macs": 1e6},
                                "eval_seconds": 1.25, "checkpoint": "/x/trial-0000.ckpt"})
    record = TrialRecord.from_optuna(t)
    assert record.policy == projected
    assert record.metrics == {"accuracy": 97.5, "macs": 1e6}
    assert (record.state, record.eval_seconds, record.checkpoint) == ("COMPLETE", 1.25, "/x/trial-0000.ckpt")


def test_studies_written_by_earlier_versions_still_read():
    old = Policy(prune={"conv1": 0.5})
    t = _finished_trial(policy=old.to_json(), result={"metrics": {"accuracy": 97.5}})
    assert TrialRecord.from_optuna(t).policy == old
    # before the 'result' attr: every field was a user attr of its own
    t = _finished_trial(policy=old.to_json(), metrics={"accuracy": 97.5}, checkpoint="/x/trial-0000.ckpt",
                        eval_seconds=1.25)
    record = TrialRecord.from_optuna(t)
    assert (record.policy, record.metrics, record.checkpoint, record.eval_seconds) == (
        old, {"accuracy": 97.5}, "/x/trial-0000.ckpt", 1.25)
    assert TrialRecord.from_optuna(_finished_trial()).policy is None  # a trial whose process died


def test_the_final_checkpoint_counts_only_for_the_winner_it_was_made_for(tmp_path):
    import os

    from automc.config import config_from_dict
    from automc.search.result import final_checkpoint

    config = config_from_dict({"name": "fc", "output_dir": str(tmp_path), "model": {"name": "lenet"},
                               "compress": {"pruning": {}}})
    export = tmp_path / "export"
    export.mkdir()
    own = tmp_path / "trial-0003.ckpt"
    own.write_bytes(b"x")
    final = export / "best_final.ckpt"
    final.write_bytes(b"x")
    os.utime(own, (1_000, 1_000))
    trial = TrialRecord(number=3, state="COMPLETE", policy=None, metrics={}, checkpoint=str(own))
    summary = export / "summary.json"
    assert final_checkpoint(config, trial) is None  # no summary: nothing says whose it is
    summary.write_text('{"best": {"trial": 3, "final_finetune_epochs": 1}}')
    assert final_checkpoint(config, trial) == final
    assert final_checkpoint(config, TrialRecord(number=4, state="COMPLETE", policy=None, metrics={})) is None
    os.utime(own, (final.stat().st_mtime + 10,) * 2)  # the trial ran again (`--new`) after that fine-tune
    assert final_checkpoint(config, trial) is None
    os.utime(own, (1_000, 1_000))
    summary.write_text('{"best": {"trial": 3}}')  # exported without export.final_finetune
    assert final_checkpoint(config, trial) is None
