"""A real two-node Ray cluster on this machine (`ray start --head`, `ray start --address=...`):
trials run on both nodes (node id recorded per trial, in the study and MLflow), and when one
node's raylet is killed mid-search its trial fails while the search completes on the other."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import psutil
import pytest
import yaml

from search_helpers import study_trials as _trials

pytestmark = [pytest.mark.slow, pytest.mark.ray]

#: Ray 2.60's `ray start` enables token authentication; on one trusted machine the test turns it off
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def _ray(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "ray.scripts.scripts", *args], check=True, capture_output=True,
                   env={**os.environ, **RAY_ENV}, timeout=180)


def _own(temp_dir: str) -> list[psutil.Process]:
    """The processes of the cluster whose session lives in ``temp_dir``: those naming it on their
    command line (GCS, raylets, monitors, dashboard) and everything they started (workers,
    agents). Never another test's or user's Ray."""
    roots = []
    for p in psutil.process_iter(["cmdline"]):
        if any(temp_dir in arg for arg in p.info["cmdline"] or []):
            roots.append(p)
    found = {p.pid: p for p in roots}
    for p in roots:
        try:
            found.update({c.pid: c for c in p.children(recursive=True)})
        except psutil.NoSuchProcess:
            pass
    return list(found.values())


def _raylets(temp_dir: str) -> dict[bool, list[psutil.Process]]:
    """The raylets of this test's cluster, by whether they are the head's."""
    out: dict[bool, list[psutil.Process]] = {True: [], False: []}
    for p in _own(temp_dir):
        try:
            cmd = p.cmdline()
        except psutil.NoSuchProcess:
            continue
        if cmd and cmd[0].endswith("/raylet"):
            out["--head" in cmd].append(p)
    return out


def _stop(temp_dir: str) -> list[psutil.Process]:
    """Stop this test's cluster only (SIGTERM, then SIGKILL after 3 s: some of Ray's processes
    were still there 10 s after SIGTERM, so a longer grace only waits); returns what is still alive."""
    procs = _own(temp_dir)
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=3)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    _, alive = psutil.wait_procs(alive, timeout=10)
    return alive + _own(temp_dir)


def _node_id(process: psutil.Process) -> str:
    return next(a.split("=", 1)[1] for a in process.cmdline() if a.startswith("--node_id="))


@pytest.fixture
def two_nodes(monkeypatch):
    """Head and one more node, 1 CPU each, in a session folder of their own; yields (head node id,
    the other node's raylet, the head's address). Only these two nodes are stopped afterwards,
    also when starting them failed; no process of theirs is left."""
    for key, value in RAY_ENV.items():
        monkeypatch.setenv(key, value)
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths live under it
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    common = ["--num-cpus=1", "--object-store-memory=300000000", "--disable-usage-stats"]
    try:
        _ray("start", "--head", f"--port={port}", f"--temp-dir={temp_dir}", "--include-dashboard=false", *common)
        _ray("start", f"--address=127.0.0.1:{port}", *common)
        raylets = _raylets(temp_dir)
        assert len(raylets[True]) == 1 and len(raylets[False]) == 1, raylets
        yield _node_id(raylets[True][0]), raylets[False][0], f"127.0.0.1:{port}"
    finally:
        left = _stop(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not left, f"processes of the test's Ray cluster still running: {left}"


def test_a_search_on_two_ray_nodes_survives_losing_one(tmp_path, two_nodes):
    from mlflow.tracking import MlflowClient

    from automc.config import load_config

    head_id, other_raylet, address = two_nodes
    other_id = _node_id(other_raylet)
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump({
        "name": "cluster", "output_dir": str(tmp_path / "runs"), "seed": 0,
        "model": {"name": "lenet"}, "data": {"name": "digits"},
        "train": {"epochs": 2, "lr": 0.05}, "finetune": {"epochs": 4, "lr": 0.02},
        "compress": {"pruning": {"max_ratio": 0.6}}, "objectives": ["accuracy", "macs"],
        "execution": {"backend": "ray", "ray_address": address, "workers": 2, "cpus_per_trial": 1},
        "search": {"strategy": "random", "n_trials": 8, "pruner": "none", "heartbeat_s": 1.0},
        "export": {"formats": [], "max_accuracy_drop": 100.0, "compare_uniform": False},
    }))
    config = load_config(path)
    proc = subprocess.Popen([sys.executable, "-m", "automc.cli", "search", str(path)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # 1. trials run on both nodes
        deadline = time.time() + 300
        nodes: set[str] = set()
        while time.time() < deadline and nodes != {head_id, other_id}:
            nodes = {t.user_attrs["result"].get("node") for t in _trials(config)
                     if t.state.name == "COMPLETE" and "result" in t.user_attrs}
            time.sleep(0.5)
        assert nodes == {head_id, other_id}, (nodes, head_id, other_id)
        # 2. the other node's raylet dies mid-trial (by pid: `ray stop` would stop both nodes)
        while not any(t.state.name == "RUNNING" for t in _trials(config)):
            time.sleep(0.2)
        killed_at = len([t for t in _trials(config) if t.state.name != "RUNNING"])
        other_raylet.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-3000:]
    trials = _trials(config)
    finished = [t for t in trials if t.state.name in ("COMPLETE", "FAIL")]
    assert len(finished) == 8 and not [t for t in trials if t.state.name == "RUNNING"], out[-3000:]
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert len(failed) == 1 and all("Ray worker died" in t.user_attrs["result"]["fail_reason"] for t in failed)
    later = [t for t in trials if t.number >= killed_at + 2 and t.state.name == "COMPLETE"]
    assert later and {t.user_attrs["result"]["node"] for t in later} == {head_id}  # the rest ran on the head
    # the node of each trial is in MLflow too
    client = MlflowClient(f"sqlite:///{config.out_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("cluster")
    runs = client.search_runs([exp.experiment_id], "tags.`automc.trial` != ''")
    assert {r.data.tags.get("automc.node") for r in runs if r.data.tags.get("automc.state") == "COMPLETE"} == {head_id, other_id}
