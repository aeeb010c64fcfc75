"""``automc measure`` and ``export.measure``: a finished search's networks timed in this machine's real
MindSpore Lite runtime, beside the host-cpu prediction, logged to MLflow and ``export/measured.json``."""

from __future__ import annotations

import json
import socket

import pytest
import yaml

from lenet_digits import LENET_DIGITS

QUICK = ("--loops", "20", "--warmup", "2", "--repeat", "2")


@pytest.mark.slow
def test_measure_the_baseline_then_the_winner_on_this_machine(store, cli, tmp_path):
    from automc.config import load_config
    from automc.report._mlflow import SearchRuns
    from automc.search.tracking import find_trial_run

    path, result = store
    csv_path = tmp_path / "calib" / "mine.csv"
    code, out, err = cli("measure", str(path), "--on", "local", "--baseline", "--append", str(csv_path), *QUICK)
    assert code == 0, err
    assert "measure: baseline: measured " in out and ") on local; predicted " in out and "on host-cpu" in out
    assert "appended: lenet,1x8x8,fp32," in out and ",1,1,10" in out
    assert csv_path.read_text().splitlines()[0] == "network,input,precision,latency_ms,threads,batch,classes"

    first = json.loads((result.out_dir / "export" / "measured.json").read_text())
    assert [m["network"] for m in first] == ["baseline"] and len(first[0]["runs_ms"]) == 2

    code, out, err = cli("measure", str(path), "--on", "local", *QUICK)
    assert code == 0, err
    best = result.best.number
    assert f"measure: winner (trial {best}): measured " in out and "measure: baseline: measured " in out
    assert "winner vs baseline: measured speed-up " in out and "x (fastest inference of each run, round by round" in out
    assert "x on host-cpu (" in out

    measured = {m["network"]: m for m in json.loads((result.out_dir / "export" / "measured.json").read_text())}
    assert {n: (m["runner"], m["device"], m["trial"]) for n, m in measured.items()} == {
        "baseline": ("local", "host-cpu", None), "winner": ("local", "host-cpu", best)}
    assert measured["winner"]["measured_at"] == measured["baseline"]["measured_at"]  # one session, side by side
    assert all(m["measured_latency_ms"] > 0 and m["predicted_latency_ms"] > 0 and len(m["runs_ms"]) == 2
               for m in measured.values())

    runs = SearchRuns(load_config(path))
    trial_run = runs.client.get_run(find_trial_run(runs.client, runs.experiment_id, best))
    assert trial_run.data.metrics["measured_latency_ms"] == pytest.approx(measured["winner"]["measured_latency_ms"])
    assert trial_run.data.tags["measured_device"] == "host-cpu" and "predicted_latency_ms" in trial_run.data.metrics
    parent = runs.client.get_run(runs.parent_for_trial(best)).data
    assert {"best_measured_latency_ms", "baseline_measured_latency_ms", "baseline_predicted_latency_ms",
            "best_measured_speedup", "best_predicted_speedup"} <= set(parent.metrics)
    assert trial_run.data.metrics["predicted_speedup"] == pytest.approx(
        measured["baseline"]["predicted_latency_ms"] / measured["winner"]["predicted_latency_ms"])

    from automc.hw_cost.user import read_measurements  # the calibration's own reader takes the row

    (row,) = read_measurements(csv_path)
    assert (row.network, row.input_shape, row.precision, row.threads, row.classes) == ("lenet", (1, 8, 8), "fp32", 1, 10)
    assert row.latency_ms == pytest.approx(first[0]["measured_latency_ms"], rel=1e-5)

    from automc.report import build, to_text

    text = to_text(build(result))
    assert "Latency measured on a device vs predicted" in text and "(host-cpu)" in text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("args,needle,exit_code", [
    (("--on", "ftp://pi/x"), "error: runner 'ftp://pi/x': unknown runner; use one of local, ssh://user@host[:port]/dir, "
     "adb://SERIAL", 2),
    (("--on", "ssh://pi@10.0.0.7/home/pi"), "give the path of MindSpore Lite's benchmark on 10.0.0.7 (--benchmark PATH", 2),
    (("--on", "local", "--trial", "1", "--baseline"), "error: give one of --trial N, --baseline, --uniform", 2),
    (("--on", "local", "--threads", "0"), "error: threads, loops and repeat must be >= 1 and warmup >= 0 (got threads 0", 2),
    (("--on", "local", "--device", "pixel9"), "error: unknown device 'pixel9'; valid names:", 2),
    (("--on", "local", "--trial", "99"), "error: no trial #99 in study 'clistore'; trials are 0..2", 2),
    (("--on", "local", "--uniform"), "no uniform reference in", 2),
    (("--on", "local", "--append", "x.csv"), "only the baseline can be appended (--baseline)", 2),
    (("--on", "local", "--benchmark", "/no/such/benchmark"), "runner local: no executable benchmark binary at "
     "/no/such/benchmark", 2),
])
def test_bad_input_is_one_line_before_any_work(store, cli, args, needle, exit_code):
    path, _ = store
    code, out, err = cli("measure", str(path), *args)
    assert code == exit_code and needle in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and out == ""


def test_a_calibration_csv_with_another_header_is_refused(store, cli, tmp_path):
    path, _ = store
    bad = tmp_path / "bad.csv"
    bad.write_text("model,ms\nlenet,0.1\n")
    code, _, err = cli("measure", str(path), "--on", "local", "--baseline", "--append", str(bad))
    assert code == 2 and f"--append {bad}: its header has no 'network' column" in err


def test_a_runner_that_cannot_connect_is_exit_code_1_with_the_command(store, cli):
    import shutil

    from services import missing

    if shutil.which("ssh") is None:
        missing("the OpenSSH client (ssh) is not installed: apt-get install openssh-client")
    path, _ = store
    url = f"ssh://nobody@127.0.0.1:{_free_port()}/tmp/automc"
    code, out, err = cli("measure", str(path), "--on", url, "--benchmark", "/opt/lite/benchmark")
    assert code == 1 and err.startswith(f"error: runner {url}: cannot connect: `ssh -o BatchMode=yes")
    assert "Connection refused" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_search_measures_its_exports_and_shows_them_beside_the_predictions(tmp_path):
    import automc
    from automc.report import build, summary_text, to_text
    from automc.report._mlflow import SearchRuns
    from automc.search.tracking import find_trial_run

    path = tmp_path / "measured.yaml"
    path.write_text(yaml.safe_dump({
        **LENET_DIGITS, "name": "measured", "output_dir": str(tmp_path / "runs"), "train": {"epochs": 1, "lr": 0.05},
        "search": {"strategy": "random", "n_trials": 2, "pruner": "none", "heartbeat_s": 1.0},
        "export": {"formats": [], "max_accuracy_drop": 50.0, "compare_uniform": True,
                   "measure": {"runner": "local", "networks": ["winner", "baseline", "uniform"], "loops": 10,
                               "warmup": 1, "repeat": 2}}}, sort_keys=False))
    lines: list[str] = []
    result = automc.search(path, log=lines.append)
    summary = json.loads((result.out_dir / "export" / "summary.json").read_text())
    assert set(summary["measured"]) == {"winner", "baseline", "uniform"}
    for m in summary["measured"].values():
        assert m["runner"] == "local" and m["device"] == "host-cpu" and m["measured_latency_ms"] > 0
        assert m["predicted_latency_ms"] > 0
    assert summary["measured"]["winner"]["trial"] == result.best.number
    assert any(line.startswith("measure: winner vs baseline: measured speed-up") for line in lines)
    assert any(line.startswith("measure: uniform vs baseline: measured speed-up") for line in lines)

    runs = SearchRuns(result.config)
    parent = runs.client.get_run(result.run_id).data
    for prefix in ("best_", "baseline_", "uniform_"):
        assert {f"{prefix}measured_latency_ms", f"{prefix}predicted_latency_ms"} <= set(parent.metrics)
    trial = runs.client.get_run(find_trial_run(runs.client, runs.experiment_id, result.best.number)).data
    assert "measured_latency_ms" in trial.metrics and trial.tags["measured_runner"] == "local"

    assert "Latency measured on a device vs predicted" in to_text(build(result))
    assert "measured on a device:" in summary_text(result)


def test_speed_ups_pair_the_rounds_measured_together_and_keep_their_baseline(tmp_path):
    from automc.search.finish.measure import Measurement, latest, read_measurements, record, speedups

    def m(network, stamp, runs, predicted, trial=None):
        return Measurement(network=network, trial=trial, runner="local", device="host-cpu", threads=1, loops=100,
                           measured_latency_ms=sorted(runs)[len(runs) // 2], min_ms=min(runs), max_ms=max(runs),
                           predicted_latency_ms=predicted, runs_ms=tuple(runs), measured_at=stamp,
                           runs_min_ms=tuple(0.9 * r for r in runs))

    # the machine slowed down 2x in rounds 2 and 3: each round's ratio is still 1.5
    winner = m("winner", "t1", [1.0, 2.0, 2.0], 1.0, trial=4)
    base_1 = m("baseline", "t1", [1.5, 3.0, 3.0], 1.6)
    record(tmp_path, [winner, base_1])
    uniform, base_2 = m("uniform", "t2", [1.0, 1.0, 1.0], 1.0), m("baseline", "t2", [1.8, 1.8, 1.8], 1.6)
    record(tmp_path, [uniform, base_2])
    kept = read_measurements(tmp_path)
    assert [(k.network, k.measured_at) for k in kept] == [("winner", "t1"), ("baseline", "t1"), ("uniform", "t2"),
                                                          ("baseline", "t2")]
    assert [(k.network, k.measured_at) for k in latest(kept)] == [("winner", "t1"), ("baseline", "t2"),
                                                                  ("uniform", "t2")]
    assert speedups([winner, uniform], kept) == [
        "winner vs baseline: measured speed-up 1.50x (fastest inference of each run, round by round; on the runs' "
        "averages 1.50x), predicted 1.60x on host-cpu (-6.2%: within +-15%)",
        "uniform vs baseline: measured speed-up 1.80x (fastest inference of each run, round by round; on the runs' "
        "averages 1.80x), predicted 1.60x on host-cpu (+12.5%: within +-15%)"]
    record(tmp_path, [m("winner", "t3", [1.0], 1.0, trial=5)])  # a newer winner: its old baseline goes
    assert [(k.network, k.measured_at) for k in read_measurements(tmp_path)] == [
        ("uniform", "t2"), ("baseline", "t2"), ("winner", "t3")]
    assert speedups(read_measurements(tmp_path)[2:], read_measurements(tmp_path))[0].startswith(
        "winner vs baseline: measured speed-up 1.80x (fastest inferences; baseline measured t2; on the runs' averages "
        "1.80x), predicted 1.60x")
