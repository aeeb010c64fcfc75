"""Where trials train (issue: GPU and Ascend trials). Only a CPU is here: `auto` resolves to it,
gpu/ascend fail in one line naming their missing runtime, and Ray's GPU/NPU resources work
independently of the accelerator: declared on a local Ray, each worker gets its own physical ids,
recorded per trial, while MindSpore reports the device the YAML asked for."""

from __future__ import annotations

from pathlib import Path

import pytest

import automc
from automc.search.accelerator import resolve, use

from search_helpers import write_experiment


def test_auto_resolves_to_the_cpu_here_and_mindspore_runs_there():
    import mindspore as ms

    assert resolve("auto") == "cpu"
    assert use("auto") == "cpu" and ms.get_current_device()[0] == "CPU"


@pytest.mark.parametrize("accelerator, expected", [
    ("gpu", "execution.accelerator: gpu, but MindSpore 2.8.0 finds no usable GPU here: install an NVIDIA driver "
            "and the CUDA toolkit of one of its GPU plugins (CUDA 11.1 or 11.6)"),
    ("ascend", "execution.accelerator: ascend, but MindSpore 2.8.0 finds no Ascend runtime here (libge_runner.so: "
               "cannot open shared object file"),
])
def test_an_accelerator_without_its_runtime_is_one_line_before_any_work(tmp_path, capsys, accelerator, expected):
    from automc.cli import main

    path = write_experiment(tmp_path, name=f"on-{accelerator}", trained=False,
                            execution={"accelerator": accelerator})
    for args in (["search", str(path), "--dry-run"], ["search", str(path)]):
        with pytest.raises(SystemExit) as exc:
            main(args)
        err = capsys.readouterr().err.strip().splitlines()
        assert exc.value.code == 2 and len(err) == 1 and expected in err[0], err
    assert not (tmp_path / "runs" / f"on-{accelerator}" / "cache").exists()  # nothing trained


@pytest.mark.parametrize("execution, expected", [
    ({"npus_per_trial": 0.5}, "execution.npus_per_trial: 0.5 NPUs: automc gives a trial whole Ascend devices"),
    ({"backend": "ray", "npus_per_trial": 1}, "execution.npus_per_trial: 1, but no node of the Ray cluster has more "
                                              "than 0 NPU"),
])
@pytest.mark.ray
def test_device_requests_the_cluster_cannot_meet_are_one_line(tmp_path, capsys, execution, expected):
    from automc.cli import main

    path = write_experiment(tmp_path, name="npus", trained=False, execution=execution)  # refused before any work
    with pytest.raises(SystemExit) as exc:
        main(["search", str(path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and expected in err[0], err


@pytest.mark.slow
@pytest.mark.ray
def test_ray_gpu_and_npu_resources_give_each_worker_its_own_devices_recorded_per_trial(tmp_path):
    """Trials in parallel Ray workers: a local Ray declaring 2 GPUs and 2 NPUs (no real ones), accelerator cpu, one of each per
    trial: the two workers hold different physical ids (Ray's CUDA_VISIBLE_DEVICES /
    ASCEND_RT_VISIBLE_DEVICES), each trial records them, and MindSpore in the worker runs on CPU."""
    import ray
    from mlflow.tracking import MlflowClient

    ray.init(num_cpus=2, num_gpus=2, resources={"NPU": 2}, include_dashboard=False, log_to_driver=False)
    try:
        path = write_experiment(tmp_path, name="devices", execution={
            "backend": "ray", "workers": 2, "accelerator": "cpu", "gpus_per_trial": 1, "npus_per_trial": 1},
            search={"n_trials": 4, "heartbeat_s": 1.0, "pruner": "none"})
        result = automc.search(path, log=lambda s: None)
    finally:
        ray.shutdown()
    trials = [t for t in result.trials if t.state == "COMPLETE"]
    assert len(trials) == 4
    assert all(Path(t.checkpoint).is_file() for t in trials)  # each worker saved its trial's network
    assert result.best_network() is not None
    import optuna

    from automc.search.study import storage_url

    study = optuna.load_study(study_name="devices", storage=storage_url(result.config))
    records = [t.user_attrs["result"] for t in study.get_trials() if t.state.name == "COMPLETE"]
    assert {r["accelerator"] for r in records} == {"cpu"} and {r["mindspore_device"] for r in records} == {"CPU:0"}
    held = {r["ray_devices"] for r in records}  # e.g. {"GPU:0,NPU:1", "GPU:1,NPU:0"}
    assert len(held) == 2, held
    gpus = {d.split(",")[0] for d in held}
    npus = {d.split(",")[1] for d in held}
    assert gpus == {"GPU:0", "GPU:1"} and npus == {"NPU:0", "NPU:1"}
    client = MlflowClient(result.artifacts["tracking_uri"])
    exp = client.get_experiment_by_name("devices")
    runs = client.search_runs([exp.experiment_id], "tags.`automc.trial` != ''")
    assert {r.data.params["ray_devices"] for r in runs} == held
    assert {r.data.params["accelerator"] for r in runs} == {"cpu"}
