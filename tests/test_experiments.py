"""Every shipped experiment passes ``automc search --dry-run`` without contacting anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from services import missing

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


DATA = {  # experiment -> data set folder an apt package installs (.ci/run installs it; CI fails without it)
    "fashion_mnist_resnet20": "/usr/share/datasets/fashion-mnist",
    "fashion_mnist_mindcv_resnet18": "/usr/share/datasets/fashion-mnist",
    "fashion_mnist_mindcv_densenet121": "/usr/share/datasets/fashion-mnist",
}


def _cases():
    return [pytest.param(path, id=path.stem) for path in sorted(EXPERIMENTS.glob("*.yaml"))]


def test_the_expected_experiments_ship():
    names = {p.stem for p in EXPERIMENTS.glob("*.yaml")}
    assert {"quickstart", "mixed_precision_resnet20", "joint_kirin_npu", "nas_mobilenetv2_arm",
            "multi_device_pareto", "ray_postgres", "fashion_mnist_resnet20"} <= names


@pytest.fixture
def offline(monkeypatch):
    """Fail loudly if a dry-run tries to reach a database, a Ray cluster or an MLflow server."""
    import sqlalchemy

    def refuse(*args, **kwargs):
        raise AssertionError(f"--dry-run tried to connect: {args[:1]}")

    monkeypatch.setattr(sqlalchemy, "create_engine", refuse)
    try:
        import ray

        monkeypatch.setattr(ray, "init", refuse)
    except ImportError:
        pass
    import mlflow.tracking

    monkeypatch.setattr(mlflow.tracking, "MlflowClient", refuse)
    monkeypatch.setattr(mlflow, "set_tracking_uri", refuse)


@pytest.mark.parametrize("path", _cases())
def test_dry_run_passes(path, capsys, offline, monkeypatch, tmp_path):
    from automc.cli import main

    if path.stem in DATA and not Path(DATA[path.stem]).is_dir():
        missing(f"{DATA[path.stem]} missing: apt-get install dataset-fashion-mnist (.ci/run installs it)")
    monkeypatch.chdir(tmp_path)  # nothing is written next to the repository's experiments
    text = path.read_text()
    assert text.lstrip().startswith("#"), "each experiment opens with comments saying what it does"
    try:
        main(["search", str(path), "--dry-run"])
    except SystemExit as exc:
        pytest.fail(f"exit {exc.code}: {capsys.readouterr().err}")
    out = capsys.readouterr().out
    assert f"experiment '{path.stem}' is valid" in out and "search space" in out
    assert "(--dry-run contacts none of these)" in out
    if path.stem == "ray_postgres":
        assert "postgresql://user:***@db-host:5432/automc" in out and "password@" not in out
        assert "ray at ray://ray-head:10001" in out and "http://mlflow-server:5000" in out
    if path.stem == "fashion_mnist_resnet20":  # the relative budget, resolved against the baseline
        assert "10 classes" in out and "macs <= 30% of baseline = 9.31M" in out
    if "mindcv" in path.stem:  # a zoo network: every group but the classifier's prunable (issue 33)
        assert "prunable: 100.0% of the MACs" in out
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.db"))


def test_quickstart_keeps_its_behaviour():
    import yaml

    cfg = yaml.safe_load((EXPERIMENTS / "quickstart.yaml").read_text())
    assert cfg["model"]["name"] == "lenet" and cfg["data"]["name"] == "digits"
    assert set(cfg["compress"]) == {"pruning"} and cfg["search"]["n_trials"] == 20
