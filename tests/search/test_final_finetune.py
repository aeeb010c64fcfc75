"""``export.final_finetune``: the winner is fine-tuned again before export, and that network is
what ``summary.json``, MLflow and ``best_network()`` (also after ``load_result``) refer to."""

import json

import numpy as np
import pytest
import yaml

import automc
from automc.training import accuracy

from search_helpers import write_experiment

pytestmark = pytest.mark.slow


def _weights(net) -> dict[str, np.ndarray]:
    return {p.name: p.asnumpy() for p in net.get_parameters()}


def _checkpoint(path) -> dict[str, np.ndarray]:
    import mindspore as ms

    return {k: v.asnumpy() for k, v in ms.load_checkpoint(str(path)).items()}


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("final")
    path = write_experiment(tmp, name="final", search={"n_trials": 2, "heartbeat_s": 1.0},
                            export={"final_finetune": {"epochs": 1, "lr": 0.01}})
    logs: list[str] = []
    result = automc.search(path, log=logs.append)
    return path, result, logs


def test_the_final_fine_tune_is_saved_summarised_and_returned_by_best_network(finetuned):
    from mlflow.tracking import MlflowClient

    from automc.search.baseline import load_data

    path, result, logs = finetuned
    export = result.out_dir / "export"
    final = export / "best_final.ckpt"
    assert final.is_file() and result.artifacts["final_checkpoint"] == str(final)
    best = json.loads((export / "summary.json").read_text())["best"]
    assert best["trial"] == result.best.number and best["final_finetune_epochs"] == 1
    assert 0 < best["test_accuracy_before_final_finetune"] <= 100 and 0 < best["val_accuracy_after_final_finetune"] <= 100
    assert any(l.startswith("final fine-tune: 1 epochs, val ") and "test " in l for l in logs)

    loaded = automc.load_result(path)
    net = loaded.best_network()
    assert _same(_weights(net), _checkpoint(final))
    assert not _same(_weights(net), _checkpoint(loaded.best.checkpoint))  # not the trial's weights
    assert _same(_weights(result.best_network()), _checkpoint(final))  # the search's own result too
    data = load_data(loaded.config)
    assert accuracy(net, data.test.x, data.test.y) == best["test_accuracy"]

    client = MlflowClient(result.artifacts["tracking_uri"])
    exp = client.get_experiment_by_name(result.config.name)
    parent = next(r for r in client.search_runs([exp.experiment_id]) if "mlflow.parentRunId" not in r.data.tags)
    assert parent.data.metrics["best_test_accuracy"] == best["test_accuracy"]
    assert parent.data.metrics["best_test_accuracy_before_final_finetune"] == best["test_accuracy_before_final_finetune"]
    assert parent.data.metrics["best_final_finetune_epochs"] == 1
    assert parent.data.params["final_finetune.lr"] == "0.01"


def test_without_final_finetune_the_trial_checkpoint_is_exported_and_returned(finetuned):
    """Runs last: exports the same study again with the key removed (no new trials)."""
    path, first, _ = finetuned
    cfg = yaml.safe_load(path.read_text())
    del cfg["export"]["final_finetune"]
    path.write_text(yaml.safe_dump(cfg))
    logs: list[str] = []
    result = automc.search(path, log=logs.append)
    assert [t.number for t in result.trials] == [t.number for t in first.trials]
    export = result.out_dir / "export"
    assert not (export / "best_final.ckpt").exists()  # the earlier export's, removed
    best = json.loads((export / "summary.json").read_text())["best"]
    assert "test_accuracy_before_final_finetune" not in best and "final_finetune_epochs" not in best
    assert not any(l.startswith("final fine-tune") for l in logs)
    loaded = automc.load_result(path)
    assert _same(_weights(loaded.best_network()), _checkpoint(loaded.best.checkpoint))
