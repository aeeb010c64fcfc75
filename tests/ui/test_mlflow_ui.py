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
        "compress": {"pruning": {"max_ratio": 0.6}}, "objectives": ["accuracy", "macs"],
        "search": {"strategy": "random", "n_trials": 3, "pruner": "none", "heartbeat_s": 1.0},
        "export": {"formats": [], "max_accuracy_drop": 100.0},
    }
    path = tmp / "uisearch.yaml"
    path.write_text(yaml.safe_dump(cfg))
    result = automc.search(path, log=lambda s: None)
    return path, result


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ui_server(tiny_search):
    path, _ = tiny_search
    port = _free_port()
    log = open(path.parent / "ui.log", "w+")
    proc = subprocess.Popen([sys.executable, "-c", "from automc.cli import main; main()", "ui", str(path),
                             "--port", str(port)], cwd=path.parent, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                log.seek(0)
                pytest.fail(f"automc ui did not come up on {base}: {log.read()[-2000:]}")
            time.sleep(0.5)
        log.seek(0)
        yield base, log.read()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # automc ui and the mlflow server it started
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
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


def test_the_mlflow_ui_shows_the_trials_with_their_policy_and_metrics(tiny_search, ui_server, browser):
    from mlflow.tracking import MlflowClient
    from selenium.webdriver.common.by import By

    path, result = tiny_search
    base, ui_log = ui_server
    assert "open http://127.0.0.1:" in ui_log  # local by default, and the URL is printed
    client = MlflowClient(result.artifacts["tracking_uri"])
    exp = client.get_experiment_by_name("uisearch")
    ARTIFACTS.mkdir(exist_ok=True)

    # 1. the experiment's runs table: the search's parent run, expanded to its trial runs
    browser.get(f"{base}/#/experiments/{exp.experiment_id}/runs")
    _wait_for_text(browser, ["search-"])
    _close_assistant(browser)
    deadline = time.time() + 30
    while time.time() < deadline and "trial-0000" not in browser.find_element(By.TAG_NAME, "body").text:
        for button in browser.find_elements(By.CSS_SELECTOR, "button[data-component-id*='runnamecellrenderer']"):
            try:
                button.click()
            except Exception:
                pass
        time.sleep(1)
    _wait_for_text(browser, ["trial-0000", "trial-0001", "trial-0002"])
    browser.save_screenshot(str(ARTIFACTS / "mlflow_ui_runs.png"))

    # 2. the compare view of the trial runs: run names, the policy params and the metrics
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
