"""The experiment YAML is validated up front: one line naming the field, exit code 2 in the CLI."""

import copy
import subprocess
import sys
import textwrap

import pytest

from automc.config import config_from_dict, load_config
from automc.errors import mask_secrets
from automc.errors import ConfigError

BASE = {"name": "t", "model": {"name": "lenet"}, "compress": {"pruning": {"max_ratio": 0.5}}}


def _with(**changes):
    cfg = copy.deepcopy(BASE)
    for path, value in changes.items():
        node = cfg
        *parents, last = path.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return cfg


@pytest.mark.parametrize("changes,needle", [
    ({"model__nmae": "x"}, "model.nmae: unknown key; valid keys here: name, factory, kwargs"),
    ({"search__n_trials": "many"}, "search.n_trials"),
    ({"compress__pruning__max_ratio": 1.0}, "compress.pruning.max_ratio: ratio 1.0 is outside (0, 1)"),
    ({"compress__pruning__max_ratio": -0.1}, "compress.pruning.max_ratio"),
    ({"data__kwargs": {"path": "/no/such/cifar"}}, "data path '/no/such/cifar' does not exist"),
    ({"model": {"factory": "no_such_pkg.nets:build"}}, "cannot import module 'no_such_pkg.nets'"),
    ({"model": {"name": "resnet99"}}, "unknown model 'resnet99'; valid names:"),
    ({"objectives": ["accuracy", "latency"]}, "latency needs a device"),
    ({"objectives": ["accuracy", "speed"]}, "unknown objective 'speed'"),
    ({"constraints": ["size < 2MB"]}, "must look like"),
    ({"constraints": ["size <= 2 parsecs"]}, "unit 'parsecs'"),
    ({"compress": {"quantization": {"w_bits": [0, 8]}}}, "entry = 0 is out of range; use integers 2..16, or 32 for float"),
    ({"compress": {"quantization": {"w_bits": [33]}}}, "entry = 33 is out of range"),
    ({"compress": {"quantization": {"a_bits": [4.5]}}}, "entry = 4.5 is not a valid bit-width"),
    ({"compress": {}}, "enable at least one of pruning, quantization, nas"),
    ({"export": {"measure": {}}}, "export.measure.runner: required field is missing"),
    ({"export": {"measure": {"runner": "ftp://pi/x"}}},
     "export.measure.runner: runner 'ftp://pi/x': unknown runner; use one of local, ssh://user@host[:port]/dir, adb://SERIAL"),
    ({"export": {"measure": {"runner": "ssh://pi@h:22x/x", "benchmark": "/b"}}}, "export.measure.runner: runner "
     "'ssh://pi@h:22x/x': the port is not a number"),
    ({"export": {"measure": {"runner": "ssh://pi@h/x"}}}, "export.measure: benchmark: give the path of MindSpore Lite's "
     "benchmark on the ssh runner's machine"),
    ({"export": {"measure": {"runner": "local", "networks": ["winner", "best"]}}},
     "export.measure.networks: unknown network 'best'; valid: winner, baseline, uniform"),
    ({"export": {"measure": {"runner": "local", "device": "pixel9"}}}, "export.measure.device: unknown device 'pixel9'"),
    ({"export": {"measure": {"runner": "local", "threads": 0}}}, "export.measure.threads"),
    ({"export": {"measure": {"runner": "adb://R58M1"}}}, "export.measure.device: give the device model to compare"),
    ({"export": {"compare_uniform": False, "measure": {"runner": "local", "networks": ["uniform"]}}},
     "export.measure.networks: 'uniform' needs export.compare_uniform: true"),
    ({"export": {"runtime": "tflite"}}, "export.runtime: Input should be 'any', 'lite' or 'onnxruntime'"),
    ({"compress": {"quantization": {"w_bits": [4, 32]}}, "export": {"runtime": "lite"}},
     "compress.quantization.w_bits [4, 32] has no bit-width lite runs with integer kernels; add 8, or set "
     "export.runtime: any"),
])
def test_bad_input_names_the_field(changes, needle):
    with pytest.raises(ConfigError) as err:
        config_from_dict(_with(**changes), source="exp.yaml")
    message = str(err.value)
    assert needle in message and "\n" not in message and message.startswith("exp.yaml: ")


def test_defaults_and_constraint_units():
    from automc.objectives import parse_constraint

    cfg = config_from_dict(_with(constraints=["latency@arm-a76 <= 20ms", "size <= 2MB", "accuracy_drop <= 1.0"]))
    assert cfg.search.n_trials == 20 and cfg.data.name == "digits" and cfg.out_path.as_posix() == "runs/t"
    assert parse_constraint("latency@arm-a76 <= 1500us").value == pytest.approx(1.5)
    assert parse_constraint("size <= 2MiB").value == 2 * 1024 ** 2
    assert parse_constraint("macs <= 5M").value == 5e6


def test_export_measure_defaults():
    m = config_from_dict(_with(export={"measure": {"runner": "local"}})).export.measure
    assert (m.networks, m.threads, m.loops, m.warmup, m.repeat, m.benchmark, m.device) == (
        ["winner", "baseline"], 1, None, 20, 5, None, None)
    adb = config_from_dict(_with(export={"measure": {"runner": "adb://R58M1"}}, objectives=["accuracy", "latency@arm-a76"]))
    assert adb.export.measure.runner == "adb://R58M1"


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="no such experiment file"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_secrets_are_masked():
    assert mask_secrets("postgresql://user:secret@db:5432/x") == "postgresql://user:***@db:5432/x"
    assert mask_secrets("sqlite:///runs/t/study.db") == "sqlite:///runs/t/study.db"


def test_cli_reports_config_errors_in_one_line_with_exit_code_2(tmp_path):
    exp = tmp_path / "exp.yaml"
    exp.write_text(textwrap.dedent("""
        name: t
        model: {name: lenet}
        compress: {pruning: {max_ratio: 1.5}}
    """))
    proc = subprocess.run([sys.executable, "-m", "automc.cli", "search", str(exp)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {exp}: compress.pruning.max_ratio: ratio 1.5 is outside (0, 1); "
                                                "a pruning ratio is the share of channels removed"]
    assert "Traceback" not in proc.stderr
