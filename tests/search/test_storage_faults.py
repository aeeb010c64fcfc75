"""The machine's faults at the boundaries of a search: a disk that fills mid-search, a read-only
output folder, and caches or checkpoints that cannot be read (a truncated copy). Each is one line
(no traceback) and loses nothing: the same command continues, an unreadable file is rebuilt."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from search_helpers import study_trials, write_experiment
from services import read_only, tmpfs

pytestmark = pytest.mark.slow


def _automc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    automc = Path(sys.executable).parent / "automc"  # the installed entry point, as a user types it
    return subprocess.run([str(automc), *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "GLOG_v": "3"})


def _complete(trials) -> dict[int, float]:
    """Trial number -> accuracy of the completed trials."""
    return {t.number: t.values[0] for t in trials if t.state.name == "COMPLETE"}


def _finished(trials) -> list:
    """The trials the study counts as finished (a trial re-queued after a stop is not)."""
    return [t for t in trials if t.state.name in ("COMPLETE", "PRUNED", "FAIL") and not t.user_attrs.get("interrupted")]


def test_a_full_disk_stops_the_search_in_one_line_and_the_same_command_finishes_it(tmp_path):
    from automc.config import load_config

    n_trials = 14

    with tmpfs(tmp_path / "small", "3m") as small:  # fills after a few trials' checkpoints
        path = write_experiment(tmp_path, name="full", trained=False, output_dir=str(small / "run"),
                                train={"epochs": 2, "lr": 0.05}, search={"strategy": "tpe", "n_trials": n_trials},
                                export={"formats": ["mindir"], "max_accuracy_drop": 5.0, "compare_uniform": False})
        config = load_config(path)
        proc = _automc("search", str(path), cwd=tmp_path)
        assert proc.returncode == 1, proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr + proc.stdout
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr[-3000:]
        trials = study_trials(config)
        kept = _complete(trials)
        assert 1 <= len(kept) < n_trials, proc.stdout[-2000:]
        assert lines[0].startswith("error: no space left on the device: ") and str(small / "run") in lines[0]
        assert f"{len(_finished(trials))} finished trials are kept" in lines[0]
        assert "run the same command again to continue" in lines[0]

        subprocess.run(["mount", "-o", "remount,size=64m", str(small)], check=True)  # space again
        again = _automc("search", str(path), cwd=tmp_path)
        assert again.returncode == 0, again.stderr[-3000:]
        trials = study_trials(config)
        assert len(_finished(trials)) == n_trials and not [t for t in trials if t.state.name == "RUNNING"]
        assert {n: v for n, v in _complete(trials).items() if n in kept} == kept  # nothing computed is lost
        assert (small / "run" / "export" / "best.mindir").stat().st_size > 1000


def test_a_read_only_output_folder_is_refused_in_one_line_before_any_work(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    with read_only(source, tmp_path / "ro") as ro:
        path = write_experiment(tmp_path, name="ro", trained=False, output_dir=str(ro / "run"))
        proc = _automc("search", str(path), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: output_dir '{ro / 'run'}': the file system is read-only; make it writable, or choose another "
        "output_dir"]
    assert proc.stdout == ""  # nothing ran: not even the accelerator, let alone data loading or training
    assert not list(source.iterdir())


def test_a_truncated_baseline_cache_is_set_aside_and_trained_again(tmp_path):
    import automc

    path = write_experiment(tmp_path, name="cache", search={"strategy": "random", "n_trials": 1, "pruner": "none"},
                            export={"formats": [], "max_accuracy_drop": 100.0, "compare_uniform": False})
    cache = tmp_path / "runs" / "cache" / "cache"
    (ckpt,) = cache.glob("baseline-*.ckpt")
    truncated = ckpt.read_bytes()[: ckpt.stat().st_size // 2]
    ckpt.write_bytes(truncated)  # as an interrupted copy leaves it
    lines: list[str] = []
    result = automc.search(path, log=lines.append)
    notice = [line for line in lines if "cannot be read" in line]
    assert len(notice) == 1 and str(ckpt) in notice[0] and "moved aside to" in notice[0], lines
    assert any(line.startswith("baseline: training lenet") for line in lines)
    (aside,) = cache.glob("baseline-*.ckpt.unreadable-*")
    assert aside.read_bytes() == truncated and ckpt.stat().st_size > len(truncated)  # kept to look at; rebuilt
    assert result.trials[0].state == "COMPLETE"
    rerun: list[str] = []
    automc.search(path, log=rerun.append)  # the retrained cache is read as any other
    assert any(line.startswith("baseline: reusing") for line in rerun), rerun


def test_a_truncated_trial_checkpoint_is_rebuilt_for_its_export(tmp_path):
    """The export reads a trial's fine-tuned weights; a truncated checkpoint is set aside and the
    trial's policy fine-tuned again with its own seed: the same weights, the export goes on."""
    import mindspore as ms

    import automc
    from automc.report.trial_export import export_trial

    path = write_experiment(tmp_path, name="ckpt", search={"strategy": "random", "n_trials": 2, "pruner": "none"},
                            export={"formats": [], "max_accuracy_drop": 100.0, "compare_uniform": False})
    result = automc.search(path, log=lambda s: None)
    trial = result.trials[1]
    ckpt = Path(trial.checkpoint)
    before = {k: v.asnumpy() for k, v in ms.load_checkpoint(str(ckpt)).items()}
    ckpt.chmod(0o644)
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    lines: list[str] = []
    done = export_trial(result.config, trial=trial.number, formats=["mindir"], mlflow=False, log=lines.append)
    assert any(f"trial {trial.number}'s checkpoint" in line and "cannot be read" in line for line in lines), lines
    assert any(f"trial {trial.number}: fine-tuning its policy again" in line for line in lines), lines
    assert done.files["mindir"].stat().st_size > 1000 and not done.errors
    after = ms.load_checkpoint(str(ckpt))
    assert before.keys() == after.keys()
    for name, value in before.items():  # the same training, on the same machine: the same weights
        np.testing.assert_allclose(after[name].asnumpy(), value, rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("uri, expected", [
    ("sqlite:////tmp/x/mlflow.db", "automc ui <experiment.yaml>   (or: mlflow ui --backend-store-uri sqlite:////tmp/x/mlflow.db)"),
    ("postgresql://bob:secret@db:5432/mlflow", "mlflow ui --backend-store-uri postgresql://bob:***@db:5432/mlflow"),
    ("http://127.0.0.1:5005", "open http://127.0.0.1:5005 (the tracking server serves the UI)"),
    ("https://mlflow.example.org", "open https://mlflow.example.org (the tracking server serves the UI)"),
    ("databricks", "open the experiment in your Databricks workspace"),
])
def test_the_closing_hint_opens_the_ui_the_way_each_tracking_uri_needs(uri, expected):
    from automc.search.tracking import ui_hint

    assert expected in ui_hint(uri)
    if uri.startswith("http"):
        assert "mlflow ui" not in ui_hint(uri)
