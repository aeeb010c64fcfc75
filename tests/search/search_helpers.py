"""Helpers shared by the search tests (a module, not conftest, so names cannot clash)."""

import atexit
import shutil
import textwrap
from pathlib import Path

import yaml

from lenet_digits import LENET_DIGITS


#: one Optuna storage per study file in this test process: opening one costs ~0.1 s of CPU (~17 ms
#: to read the trials with it), which a test polling the study would take from the search it watches
_STORAGES: dict[str, object] = {}


def study_trials(config) -> list:
    """The Optuna trials of ``config``'s SQLite study as another process sees them ([] before it exists)."""
    import optuna

    path = (config.out_path / "study.db").resolve()
    if not path.exists():
        return []
    url = f"sqlite:///{path}"
    try:
        if url not in _STORAGES:
            _STORAGES[url] = optuna.storages.RDBStorage(url)
        return optuna.load_study(study_name=config.name, storage=_STORAGES[url]).get_trials(deepcopy=False)
    except Exception:
        return []


#: baseline cache folders trained in this test process, by the settings that make the cache key
_BASELINES: dict[str, Path] = {}


def _trained_baseline(cfg: dict) -> Path:
    """The ``cache`` folder of a search on ``cfg`` after its baseline was trained: trained once per
    test process (each xdist worker), by the product's own ``prepare``. Copied into an experiment's
    output folder, the search finds its baseline there as a rerun would (the cache key covers the
    model, data, training settings and seed)."""
    import json
    import tempfile

    from automc.config import config_from_dict
    from automc.search.baseline import prepare

    key = json.dumps({k: cfg[k] for k in ("seed", "model", "data", "train")}, sort_keys=True)
    if key not in _BASELINES:
        root = Path(tempfile.mkdtemp(prefix="automc-test-baseline-"))
        atexit.register(shutil.rmtree, root, True)
        prepare(config_from_dict({**cfg, "name": "baseline", "output_dir": str(root / "run")}))
        _BASELINES[key] = root / "run" / "cache"
    return _BASELINES[key]


def write_experiment(tmp_path: Path, name: str = "e2e", *, trained: bool = True, **overrides) -> Path:
    """A small but real experiment: LeNet on digits, short training, a handful of trials.

    ``trained``: for the built-in LeNet on digits, the output folder starts with the baseline
    already trained and cached (once per test process; see ``_trained_baseline``): most tests are
    about the search, and each would otherwise train the same baseline again."""
    cfg = {
        **LENET_DIGITS,
        "name": name,
        "output_dir": str(tmp_path / "runs" / name),
        "train": {"epochs": 4, "lr": 0.05},
        "search": {"strategy": "tpe", "n_trials": 4, "heartbeat_s": 1.0},
        "export": {"formats": ["mindir"], "max_accuracy_drop": 5.0, "compare_uniform": False},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict) and key != "model":
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    if trained and cfg["model"] == {"name": "lenet"} and cfg["data"] == {"name": "digits"}:
        shutil.copytree(_trained_baseline(cfg), Path(cfg["output_dir"]) / "cache", dirs_exist_ok=True)
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



KILLER_NETS = textwrap.dedent('''
    """LeNet, except that the first Ray worker to run it in a trial kills its own process (SIGKILL)."""
    import os
    import signal

    from automc.models.zoo import LeNet


    class Killer(LeNet):
        def __call__(self, *args):  # not construct: graph mode (tracing, export) parses that
            if os.getpid() != int(os.environ["AUTOMC_TEST_DRIVER_PID"]):
                try:  # exactly one worker wins the marker (O_EXCL) and dies, mid-trial
                    os.close(os.open(os.environ["AUTOMC_TEST_KILL_MARKER"], os.O_CREAT | os.O_EXCL))
                except FileExistsError:
                    pass
                else:
                    os.kill(os.getpid(), signal.SIGKILL)
            return super().__call__(*args)


    def build(num_classes):
        return Killer(num_classes=num_classes, input_shape=(1, 8, 8))
''')


TWO_PATH_NETS = textwrap.dedent('''
    """A dense 3x3 stage, then a depthwise-separable stage: devices disagree on which to prune."""
    from mindspore import nn


    class TwoPath(nn.Cell):
        def __init__(self, num_classes=10, width=32):
            super().__init__()
            w, e = width, 4 * width
            self.conv1 = nn.Conv2d(3, w, 3, pad_mode="same")
            self.bn1 = nn.BatchNorm2d(w)
            self.conv2 = nn.Conv2d(w, w, 3, pad_mode="same")
            self.bn2 = nn.BatchNorm2d(w)
            self.pw1 = nn.Conv2d(w, e, 1)
            self.bnp1 = nn.BatchNorm2d(e)
            self.dw = nn.Conv2d(e, e, 3, pad_mode="same", group=e)
            self.bnd = nn.BatchNorm2d(e)
            self.pw2 = nn.Conv2d(e, w, 1)
            self.bnp2 = nn.BatchNorm2d(w)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.flat = nn.Flatten()
            self.fc = nn.Dense(w, num_classes)
            self.relu = nn.ReLU()

        def construct(self, x):
            x = self.relu(self.bn1(self.conv1(x)))
            x = self.relu(self.bn2(self.conv2(x)))
            x = self.relu(self.bnp1(self.pw1(x)))
            x = self.relu(self.bnd(self.dw(x)))
            x = self.relu(self.bnp2(self.pw2(x)))
            return self.fc(self.flat(self.pool(x)))


    def build(num_classes=10, input_shape=(3, 64, 64)):
        return TwoPath(num_classes)
''')
