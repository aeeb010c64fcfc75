"""The ``automc`` command on a tiny real search store: every subcommand, errors, secrets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cli_helpers import run_cli

COMMANDS = ("search", "status", "report", "export", "devices", "ui", "init")


def test_help_lists_every_command():
    from typer.testing import CliRunner

    from automc.cli import app

    proc = run_cli("--help")  # the real entry point once; each subcommand's help in this process
    assert proc.returncode == 0
    for name in COMMANDS:
        assert f"  {name} " in proc.stdout
    for name in COMMANDS:
        result = CliRunner().invoke(app, [name, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output, (name, result.output)


@pytest.mark.parametrize("content, expected", [
    ("name: x\nmodel: {name: lenet\n", "not valid YAML"),
    ("name: x\nmodel: {name: lenet}\ncompress: {pruning: {}}\nsearch: {n_trails: 3}\n", "search.n_trails: unknown key"),
    ("name: x\nmodel: {name: nonet}\ncompress: {pruning: {}}\n", "unknown model 'nonet'"),
    (None, "no such experiment file"),
])
def test_a_bad_experiment_is_one_line_and_exit_code_2(tmp_path, content, expected):
    """Every command that reads an experiment loads it through one function; each kind of error is
    checked on ``search``, and on every such command for one of them."""
    path = tmp_path / "bad.yaml"
    if content is not None:
        path.write_text(content)
    commands = ("search", "status", "report", "export") if expected == "not valid YAML" else ("search",)
    for command in commands:
        proc = run_cli(command, str(path), cwd=tmp_path, timeout=60)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], proc.stderr
        assert "Traceback" not in proc.stderr + proc.stdout


def _installed_automc() -> str:
    """The ``automc`` script that ``pip install`` put beside this Python (what a user types)."""
    script = Path(sys.executable).parent / "automc"
    assert script.is_file(), f"{script} missing: run `pip install -e .`"
    return str(script)


@pytest.mark.parametrize("args, usage, error", [
    (["nosuchcommand"], "Usage: automc [OPTIONS] COMMAND [ARGS]...", "No such command 'nosuchcommand'"),
    (["search"], "Usage: automc search [OPTIONS]", "Missing argument"),
    (["search", "--bogus", "x.yaml"], "Usage: automc search [OPTIONS]", "No such option: --bogus"),
    (["search", "x.yaml", "--trials", "many"], "Usage: automc search [OPTIONS]", "Invalid value for '--trials'"),
    (["ui", "x.yaml", "--port", "notaport"], "Usage: automc ui [OPTIONS]", "Invalid value for '--port'"),
    (["status"], "Usage: automc status [OPTIONS]", "Missing argument"),
])
def test_a_mistyped_command_line_prints_clicks_usage_and_exits_2(tmp_path, args, usage, error):
    proc = subprocess.run([_installed_automc(), *args], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    command = args[0] if args[0] != "nosuchcommand" else ""
    assert usage in proc.stderr and f"Try 'automc {command} --help'".replace("  ", " ") in proc.stderr
    assert f"Error: {error}" in proc.stderr, proc.stderr


def test_automc_alone_prints_the_command_list():
    proc = subprocess.run([_installed_automc()], capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stdout + proc.stderr
    for name in COMMANDS:
        assert f"  {name} " in proc.stdout + proc.stderr


def test_init_writes_a_commented_template_that_passes_the_dry_run(tmp_path, cli, monkeypatch):
    from automc.config import ExperimentConfig

    monkeypatch.chdir(tmp_path)
    code, out, _ = cli("init", "starter.yaml")
    assert code == 0 and "automc search starter.yaml --dry-run" in out
    text = Path("starter.yaml").read_text()
    assert yaml.safe_load(text)["name"] == "starter"
    # every key of the schema is shown (set or commented out) in the starter
    for section, field in ExperimentConfig.model_fields.items():
        assert f"{section}:" in text, section
    for key in ("max_ratio", "w_bits", "a_bits", "width", "depth", "kernel", "storage", "ray_address",
                "tracking_uri", "select_by", "max_accuracy_drop", "final_finetune", "distill_weight", "trial_timeout_s"):
        assert f"{key}:" in text, key
    assert sum(line.strip().startswith("#") or " # " in line for line in text.splitlines()) > 40
    code, out, err = cli("search", "starter.yaml", "--dry-run")
    assert code == 0, err
    assert "experiment 'starter' is valid" in out and "prune.conv1.0" in out
    code, _, err = cli("init", "starter.yaml")
    assert code == 2 and "exists already" in err


def test_devices_lists_the_builtin_devices(cli):
    code, out, _ = cli("devices")
    assert code == 0
    for name in ("arm-a76", "kirin990-npu", "ascend310", "t4"):
        assert name in out


def test_status_shows_progress_best_per_device_and_next_steps(store, cli):
    path, result = store
    code, out, err = cli("status", str(path))
    assert code == 0, err
    assert "study 'clistore': 3/3 trials finished (3 complete)" in out
    assert f"best so far: trial #{result.best.number}" in out
    assert "best on arm-a76: trial #" in out and "best on kirin990-npu: trial #" in out
    assert "latest trials:" in out and "#2" in out
    assert f"automc report {path}" in out


def _parent_artifacts(result) -> set[str]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(result.artifacts["tracking_uri"])
    exp = client.get_experiment_by_name("clistore")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parent = [r for r in runs if "mlflow.parentRunId" not in r.data.tags][0]

    def walk(path=None):
        for a in client.list_artifacts(parent.info.run_id, path):
            yield from (walk(a.path) if a.is_dir else [a.path])

    return set(walk())


def test_report_prints_tables_writes_html_with_plots_and_logs_them(store, cli):
    path, result = store
    code, out, err = cli("report", str(path))
    assert code == 0, err
    for title in ("Pareto front over accuracy, macs", "Best policy per device", "Per-layer breakdown of the winner"):
        assert title in out
    assert "ms@arm-a76" in out and "ms@kirin990-npu" in out and "conv2.0" in out
    report = result.out_dir / "report" / "report.html"
    assert out.strip().splitlines()[-1] == f"report: {report}"
    html = report.read_text()
    assert html.count("data:image/png;base64,") == 4 and "<table>" in html
    for name in ("pareto", "policy", "layer_latency", "history"):
        png = result.out_dir / "report" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert {"plots/pareto.png", "plots/policy.png", "plots/layer_latency.png", "plots/history.png",
            "report/report.html"} <= _parent_artifacts(result)


def test_report_in_markdown_links_its_plots(store, cli):
    path, result = store
    code, out, err = cli("report", str(path), "--format", "md", "--no-mlflow")
    assert code == 0, err
    md = (result.out_dir / "report" / "report.md").read_text()
    assert "| trial |" in md and "![pareto](pareto.png)" in md and "![history](history.png)" in md
    code, _, err = cli("report", str(path), "--format", "pdf")
    assert code == 2 and "use html or md" in err


def test_best_per_device_is_the_lowest_latency_feasible_trial(store):
    from automc.report.analysis import best_per_device

    _, result = store
    close = [t for t in result.trials if t.state == "COMPLETE"
             and result.baseline["accuracy"] - t.metrics["accuracy"] <= 5.0]
    for d in best_per_device(result):
        key = f"latency@{d.device}"
        assert d.trial is not None and d.best_ms == min(t.metrics[key] for t in close)
        assert d.baseline_ms == pytest.approx(result.baseline[key]) and d.speedup > 1


def test_export_reexports_any_trial_with_parity_and_logs_it(store, cli):
    path, result = store
    other = next(t for t in result.trials if t.number != result.best.number)
    code, out, err = cli("export", str(path), "--trial", str(other.number), "--format", "mindir,onnx")
    assert code == 0, err
    folder = result.out_dir / "export" / f"trial-{other.number:04d}"
    for suffix in (".mindir", ".onnx"):
        assert (folder / f"trial-{other.number:04d}{suffix}").stat().st_size > 1000
    assert "mindir parity" in out and "onnx parity" in out and "argmax 100.0%" in out
    assert f"exports/trial-{other.number:04d}/" in out
    arts = _parent_artifacts(result)
    assert {f"exports/trial-{other.number:04d}/trial-{other.number:04d}.onnx",
            f"exports/trial-{other.number:04d}/policy.json"} <= arts
    # the exported network is the trial's: its policy was replayed
    import json

    assert json.loads((folder / "policy.json").read_text())["prune"] == dict(other.policy.prune)


@pytest.mark.parametrize("args, expected", [
    (("--trial", "99"), "no trial #99"),
    (("--format", "mindir,tflite"), "unknown export format 'tflite'"),
])
def test_export_errors_are_one_line(store, cli, args, expected):
    path, _ = store
    code, out, err = cli("export", str(path), *args)
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1


def test_passwords_never_reach_the_console_or_the_report(store, cli, tmp_path):
    from automc.report import write_report

    path, result = store
    secret_url = "postgresql://user:secret@127.0.0.1:1/db"
    cfg = yaml.safe_load(path.read_text())
    pg = tmp_path / "pg.yaml"
    cfg["search"] = {**cfg["search"], "storage": secret_url}
    cfg["tracking"] = {"tracking_uri": "http://admin:secret@mlflow-server:5000"}
    pg.write_text(yaml.safe_dump(cfg))
    code, out, err = cli("search", str(pg), "--dry-run")
    assert code == 0 and "postgresql://user:***@127.0.0.1:1/db" in out
    code, out, err = cli("status", str(pg))  # the baseline is cached; the database is unreachable
    assert code == 2 and "cannot open the study storage postgresql://user:***@" in err
    assert len(err.strip().splitlines()) == 1
    code, out2, err2 = cli("ui", str(pg))
    assert code == 0 and "http://admin:***@mlflow-server:5000" in out2
    masked = result.config.model_copy(update={"search": result.config.search.model_copy(update={"storage": secret_url})})
    from dataclasses import replace

    report = write_report(replace(result, config=masked), out_dir=tmp_path / "rep", mlflow=False)
    text = report.read_text()
    assert "user:***@127.0.0.1" in text
    assert "secret" not in out + err + out2 + err2 + text


USER_FACTORY = '''
from mindspore import nn


def build(num_classes=10, width=24):
    return nn.SequentialCell([nn.Conv2d(1, width, 3), nn.ReLU(), nn.Flatten(), nn.Dense(width * 64, num_classes)])
'''


def test_a_factory_given_num_classes_in_its_kwargs_runs_and_a_disagreement_is_one_line(tmp_path, cli, monkeypatch):
    (tmp_path / "user_nets.py").write_text(USER_FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    base = {"name": "userkw", "output_dir": str(tmp_path / "runs"), "data": {"name": "digits"},
            "train": {"epochs": 1, "lr": 0.05}, "finetune": {"epochs": 0.2, "lr": 0.02},
            "compress": {"pruning": {"max_ratio": 0.5}}, "objectives": ["accuracy", "macs"],
            "search": {"strategy": "random", "n_trials": 1, "pruner": "none"}, "export": {"formats": [], "compare_uniform": False}}
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({**base, "model": {"factory": "user_nets:build", "kwargs": {"num_classes": 10, "width": 8}}}))
    code, out, err = cli("search", str(good))
    assert code == 0 and "trial 1/1 #0 complete" in out, err[-2000:]
    for kwargs, expected in (({"num_classes": 7}, "model.kwargs.num_classes = 7 but the data set has 10 classes"),
                             ({"input_shape": [3, 8, 8]}, "model.kwargs.input_shape = [3, 8, 8] but the data set has "
                                                          "samples of shape [1, 8, 8]")):
        bad = tmp_path / "bad.yaml"
        bad.write_text(yaml.safe_dump({**base, "name": "userkw-bad", "model": {"factory": "user_nets:build", "kwargs": kwargs}}))
        for args in (("search", str(bad), "--dry-run"), ("search", str(bad))):
            code, out, err = cli(*args)
            lines = err.strip().splitlines()
            assert code == 2 and len(lines) == 1 and expected in lines[0], err[-2000:]


def test_one_formats_missing_dependency_does_not_stop_the_others(store, tmp_path):
    """As right after ``pip install -e .`` (no onnxruntime): MindIR and .ms are still written and
    checked, ONNX reports its own failure with the extra to install, exit code 1."""
    path, result = store
    blocked = tmp_path / "site"
    blocked.mkdir()
    (blocked / "onnxruntime.py").write_text('raise ImportError("No module named \'onnxruntime\'")\n')
    import os

    env_path = os.pathsep.join([str(blocked), os.environ.get("PYTHONPATH", "")])
    trial = result.trials[0].number
    proc = run_cli("export", str(path), "--trial", str(trial), "--format", "mindir,onnx,ms", "--no-mlflow",
                   "--out", str(tmp_path / "out"), env={"PYTHONPATH": env_path})
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "mindir parity" in proc.stdout and "ms parity" in proc.stdout and "onnx: FAILED" in proc.stdout
    stem = tmp_path / "out" / f"trial-{trial:04d}"
    assert stem.with_suffix(".mindir").stat().st_size > 1000 and stem.with_suffix(".ms").stat().st_size > 1000
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: 1 of 3 formats failed (onnx: ONNX parity needs onnxruntime")
    assert "pip install -e '.[onnx]'" in lines[0] and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_a_terminal_gets_a_live_progress_bar_with_the_best_per_device(tmp_path):
    """Under a pseudo-terminal (as a person runs it): a live bar with trials done/total, running,
    ETA, best so far and the best per device, beside the plain trial lines. Piped output (CI, files)
    keeps only the plain lines: see test_ctrl_c_... in tests/search/test_search_e2e.py."""
    import os
    import pty
    import subprocess
    import sys

    path = tmp_path / "live.yaml"
    path.write_text(yaml.safe_dump({"name": "live", "output_dir": str(tmp_path / "runs"), "model": {"name": "lenet"},
                                    "data": {"name": "digits"}, "train": {"epochs": 1, "lr": 0.05},
                                    "finetune": {"epochs": 0.3, "lr": 0.02}, "compress": {"pruning": {"max_ratio": 0.6}},
                                    "objectives": ["accuracy", "macs"], "devices": ["arm-a76", "kirin990-npu"],
                                    "search": {"strategy": "random", "n_trials": 3, "pruner": "none"},
                                    "export": {"formats": [], "max_accuracy_drop": 100.0, "compare_uniform": False}}))
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(TERM="xterm", COLUMNS="200", GLOG_v="3")
    proc = subprocess.Popen([sys.executable, "-c", "from automc.cli import main; main()", "search", str(path)],
                            stdin=slave, stdout=slave, stderr=slave, env=env, cwd=tmp_path)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.wait(timeout=300) == 0
    text = b"".join(chunks).decode(errors="replace")
    assert "trial 3/3" in text  # the plain lines are still there
    assert "━" in text and "\x1b[" in text  # a drawn bar
    bars = [line for line in text.splitlines() if "trials" in line and "running  ETA" in line]
    assert any("3/3" in b and "0 running" in b for b in bars) and any("1 running" in b for b in bars), bars[-3:]
    assert any("best so far #" in b for b in bars)
    assert "best per device: arm-a76 #" in text and "| kirin990-npu #" in text
