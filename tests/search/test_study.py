"""The study's heartbeats: a trial whose process died is found, whenever the process died."""

from __future__ import annotations

import time

from automc.config import load_config
from automc.objectives import parse_objective
from automc.search.study import Heartbeat, counts, fail_stale, open_study

from search_helpers import write_experiment


def test_a_trial_whose_process_dies_right_after_its_ask_is_failed_as_stale(tmp_path):
    """The first heartbeat is on record when ``Heartbeat.add`` returns. A process killed at that
    point takes its heartbeat thread with it (here: the thread is stopped first, so only ``add``
    can beat); the next run must fail the trial as stale, not wait for it forever (a CI run of
    the SIGKILL test hung 10 minutes on such a trial when the first beat was the thread's)."""
    config = load_config(write_experiment(tmp_path, name="stale", trained=False, search={"heartbeat_s": 0.5}))
    study = open_study(config, [parse_objective(o) for o in config.objectives])
    heartbeat = Heartbeat(study, config.search.heartbeat_s)
    heartbeat.stop()
    heartbeat._thread.join()  # noqa: SLF001
    heartbeat.add(study.ask())
    assert counts(study) == (0, 1)
    time.sleep(4 * config.search.heartbeat_s)  # past the grace period of 3 intervals
    logs: list[str] = []
    fail_stale(study, logs.append)
    assert counts(study) == (1, 0) and logs == ["marked 1 trial(s) of a stopped process as failed"]
