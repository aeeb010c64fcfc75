import textwrap
from pathlib import Path

import yaml


def write_experiment(tmp_path: Path, name: str = "e2e", **overrides) -> Path:
    """A small but real experiment: LeNet on digits, short training, a handful of trials."""
    cfg = {
        "name": name,
        "output_dir": str(tmp_path / "runs" / name),
        "seed": 0,
        "model": {"name": "lenet"},
        "data": {"name": "digits"},
        "train": {"epochs": 4, "lr": 0.05},
        "finetune": {"epochs": 0.5, "lr": 0.02},
        "compress": {"pruning": {"max_ratio": 0.6, "step": 0.05}},
        "objectives": ["accuracy", "macs"],
        "search": {"strategy": "tpe", "n_trials": 4, "heartbeat_s": 1.0},
        "export": {"formats": ["mindir"], "max_accuracy_drop": 5.0},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict) and key != "model":
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


FRAGILE_NETS = textwrap.dedent('''
    """A user network that refuses to run with fewer than 12 channels after conv1."""
    from mindspore import nn, ops


    class Fragile(nn.Cell):
        def __init__(self, num_classes=10):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 16, 3, pad_mode="same")
            self.bn1 = nn.BatchNorm2d(16)
            self.conv2 = nn.Conv2d(16, 16, 3, pad_mode="same")
            self.fc = nn.Dense(16, num_classes)

        def construct(self, x):
            x = ops.relu(self.bn1(self.conv1(x)))
            if x.shape[1] < 12:
                raise ValueError("Fragile needs at least 12 channels after conv1")
            return self.fc(ops.relu(self.conv2(x)).mean((2, 3)))


    def build(num_classes):
        return Fragile(num_classes)
''')


import os
import shutil
import socket
import subprocess
import tempfile

import pytest


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for root in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (root / name).exists():
            return str(root / name)
    return None


@pytest.fixture(scope="session")
def postgres_url():
    """A throw-away PostgreSQL cluster on 127.0.0.1 (``.ci/run`` installs the server)."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL server not installed (apt-get install postgresql); .ci/run installs it")
    pytest.importorskip("psycopg", reason="psycopg (SQLAlchemy's default PostgreSQL driver) is in the test extras")
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        if not shutil.which("runuser"):
            pytest.skip("running as root without runuser: cannot start PostgreSQL as an unprivileged user")
        as_user = ["runuser", "-u", "postgres", "--"]
    data = Path(tempfile.mkdtemp(prefix="automc-pg-"))
    if as_user:
        shutil.chown(data, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run([*as_user, initdb, "-D", str(data / "db"), "-U", "postgres", "--auth=trust"],
                   check=True, capture_output=True)
    subprocess.run([*as_user, pg_ctl, "-D", str(data / "db"), "-w", "-l", str(data / "log"), "-o",
                    f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "start"], check=True, capture_output=True)
    try:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE automc")
        yield f"postgresql://postgres:s3cret@127.0.0.1:{port}/automc"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data / "db"), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)
