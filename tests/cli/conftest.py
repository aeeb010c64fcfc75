"""A tiny real search store (LeNet on digits, 3 trials, short training), made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lenet_digits import LENET_DIGITS


STORE_CONFIG = {
    **LENET_DIGITS,
    "name": "clistore",
    "train": {"epochs": 3, "lr": 0.05},
    "devices": ["arm-a76", "kirin990-npu"],
    "search": {"strategy": "random", "n_trials": 3, "pruner": "none", "heartbeat_s": 1.0},
    "export": {"formats": [], "max_accuracy_drop": 5.0, "compare_uniform": False},
}


def write_yaml(path: Path, **overrides) -> Path:
    cfg = {**STORE_CONFIG, **overrides}
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def store(tmp_path_factory):
    """(experiment YAML path, SearchResult) of a finished 3-trial search in a temp folder."""
    import automc

    tmp = tmp_path_factory.mktemp("clistore")
    path = write_yaml(tmp / "clistore.yaml", output_dir=str(tmp / "runs" / "clistore"))
    result = automc.search(path, log=lambda s: None)
    assert [t.state for t in result.trials] == ["COMPLETE"] * 3
    return path, result


@pytest.fixture
def cli(capsys):
    """Run ``automc ARGS`` in this process (fast: no re-import); returns (exit code, stdout, stderr)."""
    from automc.cli import main

    def _run(*args: str) -> tuple[int, str, str]:
        code = 0
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    return _run
