"""The training loop, including distillation from the baseline into a compressed copy of it."""

import numpy as np

from automc.algorithms.pruning import prune
from automc.analysis import build_layer_table
from automc.data import load_dataset
from automc.models import build_model
from automc.policy import Policy
from automc.training import TrainSettings, accuracy, train


def test_distillation_into_a_pruned_copy_with_the_same_parameter_names():
    data = load_dataset("digits", seed=0)
    teacher = build_model("lenet", num_classes=10, input_shape=(1, 8, 8))
    train(teacher, data.train.x, data.train.y, TrainSettings(epochs=3, lr=0.05))
    table = build_layer_table(teacher, (1, 8, 8))
    student = prune(teacher, table, Policy(prune={"conv2.0": 0.5, "fc1": 0.5}))
    before = {p.name for p in teacher.get_parameters()}
    loss = train(student, data.train.x, data.train.y,
                 TrainSettings(epochs=1, lr=0.02, distill_weight=0.5), teacher=teacher)
    assert np.isfinite(loss) and accuracy(student, data.val.x, data.val.y) > 80
    assert {p.name for p in teacher.get_parameters()} == before  # the caller's teacher is untouched


def test_training_on_cpu_runs_the_host_pipeline_synchronously(monkeypatch):
    import os

    monkeypatch.delenv("MS_DEV_HOST_BLOCKING_RUN", raising=False)
    data = load_dataset("digits", seed=0)
    net = build_model("lenet", num_classes=10, input_shape=(1, 8, 8))
    train(net, data.train.x[:64], data.train.y[:64], TrainSettings(epochs=1))
    assert os.environ["MS_DEV_HOST_BLOCKING_RUN"] == "1"
    monkeypatch.setenv("MS_DEV_HOST_BLOCKING_RUN", "0")  # a value the user chose is kept
    accuracy(net, data.val.x, data.val.y)
    assert os.environ["MS_DEV_HOST_BLOCKING_RUN"] == "0"


def test_training_new_networks_in_one_process_does_not_warn_about_recompiling():
    # a search fine-tunes a new network per trial: each compiles once, and MindSpore must not
    # log "compiled again" (its warning for a re-created jitted closure) into the user's output
    import logging

    from mindspore import log

    ms_logger = log._get_logger()
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    level = ms_logger.level
    ms_logger.setLevel(logging.WARNING)  # the tests run MindSpore at errors only
    ms_logger.addHandler(handler)
    try:
        data = load_dataset("digits", seed=0)
        for _ in range(3):
            net = build_model("lenet", num_classes=10, input_shape=(1, 8, 8))
            train(net, data.train.x[:128], data.train.y[:128], TrainSettings(epochs=1))
    finally:
        ms_logger.removeHandler(handler)
        ms_logger.setLevel(level)
    assert not [r for r in records if "compiled again" in r.getMessage()]
