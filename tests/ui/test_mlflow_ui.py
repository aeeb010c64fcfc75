"""The MLflow UI really shows a search: a tiny real search, `automc ui` as a user starts it, and
headless Chromium (Debian's package, driven by Selenium) reading the runs. Screenshots go to
``test-artifacts/`` (gitignored). ``.ci/install-browser.sh`` installs the browser."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from services import missing, require_module

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = os.environ.get("AUTOMC_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("AUTOMC_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1600,1000")


def _browser_or_skip():
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        missing(f"headless Chromium not installed ({CHROMIUM}, {CHROMEDRIVER}); run .ci/install-browser.sh")
    require_module("selenium", "selenium not installed; run .ci/install-browser.sh (pip install selenium)")


@pytest.fixture(scope="module")
def tiny_search(tmp_path_factory):
    _browser_or_skip()
    import automc

    tmp = tmp_path_factory.mktemp("uisearch")
    cfg = {
        "name": "uisearch", "output_dir": str(tmp / "runs" / "uisearch"), "seed": 0,
        "model": {"name": "lenet"}, "data": {"name": "digits"},
        "train": {"epochs": 1, "lr": 0.05}, "finetune": {"epochs": 0.25, "lr": 0.02},
        "compress": {"pruning": {"max_ratio": 0.6}}, "objectives": ["accuracy", "macs"], "devices": ["arm-a76"],
        "search": {"strategy": "random", "n_trials": 3, "pruner": "none", "heartbeat_s": 1.0},
        "export": {"formats": [], "max_accuracy_drop": 100.0, "compare_uniform": False},
    }
    path = tmp / "uisearch.yaml"
    path.write_text(yaml.safe_dump(cfg))
    result = automc.search(path, log=lambda s: None)
    return path, result


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_ui(path: Path, port: int, log):
    """``automc ui`` as a person starts it: in the caller's process group, no new session."""
    return subprocess.Popen([sys.executable, "-c", "from automc.cli import main; main()", "ui", str(path),
                             "--port", str(port)], cwd=path.parent, stdout=log, stderr=subprocess.STDOUT)


def _wait_up(proc, base: str, log) -> str:
    # 300 s: under xdist a worker and its processes keep to one core (tests/conftest.py), where
    # the signal test's three servers starting side by side took up to ~100 s
    deadline = time.time() + 300
    while True:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
                if r.status == 200:
                    log.seek(0)
                    return log.read()
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            log.seek(0)
            pytest.fail(f"automc ui did not come up on {base}: {log.read()[-2000:]}")
        time.sleep(0.5)


def _port_free(port: int, wait_s: float = 5.0) -> bool:
    """A new server could listen on ``port`` (as servers bind: SO_REUSEADDR, so the closed
    connections' TIME_WAIT entries do not count)."""
    deadline = time.time() + wait_s
    while True:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
                s.listen()
                return True
            except OSError:
                if time.time() > deadline:
                    return False
        time.sleep(0.2)


@pytest.fixture(scope="module")
def ui_server(tiny_search):
    import psutil

    path, _ = tiny_search
    port = _free_port()
    log = open(path.parent / "ui.log", "w+")
    proc = _start_ui(path, port, log)
    try:
        yield f"http://127.0.0.1:{port}", _wait_up(proc, f"http://127.0.0.1:{port}", log)
    finally:
        children = psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        finally:
            for child in children:
                if child.is_running():
                    child.kill()
            log.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _wait_for_text(driver, texts, timeout=60.0) -> str:
    from selenium.webdriver.common.by import By

    deadline = time.time() + timeout
    body = ""
    while time.time() < deadline:
        try:
            body = driver.find_element(By.TAG_NAME, "body").text
        except Exception:
            body = ""
        if all(t in body for t in texts):
            return body
        time.sleep(0.5)
    raise AssertionError(f"the page never showed {texts}; it shows:\n{body[:3000]}")


def _close_assistant(driver) -> None:
    from selenium.webdriver.common.by import By

    for button in driver.find_elements(By.CSS_SELECTOR, "button[aria-label='Close']"):
        try:
            button.click()
        except Exception:
            pass


def test_the_printed_link_opens_on_the_trials_and_their_metrics(tiny_search, ui_server, browser):
    """A person opens exactly the link `automc ui` printed: the experiment's runs page (not MLflow
    3's GenAI overview), every trial listed (not folded under the parent run), and charts of their
    accuracy and cost metrics with the values MLflow stored; no click needed."""
    import re

    from mlflow.tracking import MlflowClient

    path, result = tiny_search
    base, ui_log = ui_server
    links = re.findall(r"open (http\S+)", ui_log)
    assert len(links) == 1 and links[0].startswith(f"{base}/#/experiments/") and "/runs?" in links[0], ui_log
    client = MlflowClient(result.artifacts["tracking_uri"])
    exp = client.get_experiment_by_name("uisearch")
    assert links[0].startswith(f"{base}/#/experiments/{exp.experiment_id}/runs?")
    trials = client.search_runs([exp.experiment_id], "tags.`automc.trial` != ''")
    assert len(trials) == 3
    ARTIFACTS.mkdir(exist_ok=True)

    browser.get(links[0])
    charted = [f"{run.data.metrics['accuracy']:.2f}" for run in trials]  # each trial's accuracy, as charted
    body = _wait_for_text(browser, ["Training runs", "trial-0000", "trial-0001", "trial-0002", "3 matching runs",
                                    "accuracy", "latency_at_arm-a76", "energy_at_arm-a76", *charted], timeout=120)
    assert "search-" not in body  # the parent run is not what a person lands on
    browser.save_screenshot(str(ARTIFACTS / "mlflow_ui_trials.png"))
    assert (ARTIFACTS / "mlflow_ui_trials.png").stat().st_size > 10_000


def test_automc_ui_stops_the_mlflow_server_and_its_workers_on_sigterm_sigint_and_sighup(tiny_search):
    """Each signal goes to automc's process only (as from `kill PID`, Ctrl-C's SIGINT, a closed
    terminal): the MLflow server and its uvicorn workers stop with it and the port is free again.
    The three servers start side by side (starting one takes ~20 s of imports)."""
    import psutil

    path, _ = tiny_search
    signals = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    ports = {sig: _free_port() for sig in signals}
    logs = {sig: open(path.parent / f"ui-{sig.name}.log", "w+") for sig in signals}
    procs = {sig: _start_ui(path, ports[sig], logs[sig]) for sig in signals}
    servers: list = []  # every MLflow process, killed at the end even if a check fails
    try:
        for sig in signals:
            _wait_up(procs[sig], f"http://127.0.0.1:{ports[sig]}", logs[sig])
            servers += psutil.Process(procs[sig].pid).children(recursive=True)
        for sig in signals:
            proc = procs[sig]
            children = psutil.Process(proc.pid).children(recursive=True)
            assert children, "automc ui runs the MLflow server as a child process"
            proc.send_signal(sig)
            assert proc.wait(timeout=30) == 0, sig.name
            gone, alive = psutil.wait_procs(children, timeout=15)
            for p in alive:
                p.kill()
            assert not alive, (sig.name, [p.cmdline() for p in alive])
            assert _port_free(ports[sig]), sig.name
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
        for p in servers:  # they run in their own session: killing automc alone would orphan them
            if p.is_running():
                p.kill()
        for log in logs.values():
            log.close()


def test_the_compare_view_shows_each_trials_policy_and_metrics(tiny_search, ui_server, browser):
    from mlflow.tracking import MlflowClient

    path, result = tiny_search
    base, ui_log = ui_server
    assert "open http://127.0.0.1:" in ui_log  # local by default, and the URL is printed
    client = MlflowClient(result.artifacts["tracking_uri"])
    exp = client.get_experiment_by_name("uisearch")
    ARTIFACTS.mkdir(exist_ok=True)

    # the compare view of the trial runs: run names, the policy params and the metrics
    trials = client.search_runs([exp.experiment_id], "tags.`automc.trial` != ''")
    ids = [r.info.run_id for r in sorted(trials, key=lambda r: r.info.run_name)]
    assert len(ids) == 3
    query = urllib.parse.urlencode({"runs": json.dumps(ids), "experiments": json.dumps([exp.experiment_id])})
    browser.get(f"{base}/#/compare-runs?{query}")
    body = _wait_for_text(browser, ["trial-0000", "trial-0001", "trial-0002", "prune.conv1.0", "accuracy", "macs"])
    _close_assistant(browser)
    for name in ("prune.conv2.0", "prune.conv3.0", "prune.fc1"):
        assert name in body
    # a trial's accuracy value as MLflow stored it is on the page
    acc = trials[0].data.metrics["accuracy"]
    assert any(f"{acc:.{n}f}".rstrip("0").rstrip(".") in body for n in (1, 2, 3, 4, 5)), acc
    browser.set_window_size(1600, 2400)  # tall enough for the run details: names, params, metrics
    time.sleep(2)
    browser.save_screenshot(str(ARTIFACTS / "mlflow_ui.png"))
    assert (ARTIFACTS / "mlflow_ui.png").stat().st_size > 10_000
