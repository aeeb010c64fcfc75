"""Runners that time a .ms with MindSpore Lite's ``benchmark``: this machine's real Lite runtime, a
real OpenSSH server on 127.0.0.1 started here, and the adb command sequence against a stand-in
``adb`` that runs the commands on this machine (no phone ran these tests)."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services import missing

from automc.deploy.runners import AdbRunner, LocalRunner, RunnerError, SshRunner, make_runner
from automc.errors import AutomcError, ConfigError

SSHD = "/usr/sbin/sshd"
QUICK = {"threads": 1, "loops": 5, "warmup": 1}


# ------------------------------------------------------------------ runner URLs (no device needed)
@pytest.mark.parametrize("url,needle", [
    ("ftp://host/x", "runner 'ftp://host/x': unknown runner; use one of local, ssh://user@host[:port]/dir, adb://SERIAL"),
    ("remote", "runner 'remote': unknown runner"),
    ("local://x", "the local runner is written just 'local'"),
    ("ssh:///tmp/x", "runner 'ssh:///tmp/x': no host; use ssh://user@host[:port]/dir"),
    ("ssh://me@host:port/x", "the port is not a number"),
    ("ssh://me@host/x", "give the path of MindSpore Lite's benchmark on host"),
    ("ssh://me@host/x?benchmark=/b&key=k", "unknown option 'key' in the URL query; valid: identity, option, benchmark"),
    ("adb://", "no device serial; use adb://SERIAL"),
    ("adb://X?libs=/x", "unknown option 'libs'"),
])
def test_a_bad_runner_url_is_one_line_naming_it(url, needle):
    with pytest.raises(ConfigError) as err:
        make_runner(url)
    assert needle in str(err.value) and "\n" not in str(err.value)
    assert err.value.exit_code == 2


def test_runner_urls_and_their_defaults():
    ssh = make_runner("ssh://pi@10.0.0.7:2222/home/pi/bench?identity=~/.ssh/pi&option=Compression=yes",
                      benchmark="/opt/lite/benchmark")
    assert isinstance(ssh, SshRunner)
    assert (ssh.user, ssh.host, ssh.port, ssh.directory, ssh.benchmark) == ("pi", "10.0.0.7", 2222, "/home/pi/bench",
                                                                           "/opt/lite/benchmark")
    cmd = ssh.ssh("true")
    assert cmd[:5] == ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=15"]
    assert ["-o", "Compression=yes"] == cmd[7:9] and cmd[-3:] == ["2222", "pi@10.0.0.7", "true"]
    assert make_runner("ssh://h/d?benchmark=/b").benchmark == "/b"
    adb = make_runner("adb://R58M12345")
    assert isinstance(adb, AdbRunner)
    assert (adb.serial, adb.directory, adb.benchmark, adb.lib_dir) == (
        "R58M12345", "/data/local/tmp/automc", "/data/local/tmp/benchmark", "/data/local/tmp")
    assert make_runner("adb://X/sdcard/m?lib=/data/local/tmp/lib").lib_dir == "/data/local/tmp/lib"
    assert isinstance(make_runner("local"), LocalRunner)


def test_a_missing_local_benchmark_binary_is_exit_code_2(tmp_path):
    with pytest.raises(RunnerError) as err:
        make_runner("local", benchmark=str(tmp_path / "benchmark")).check()
    assert f"no executable benchmark binary at {tmp_path / 'benchmark'}" in str(err.value)
    assert err.value.exit_code == 2 and isinstance(err.value, AutomcError)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_ssh_runner_that_cannot_connect_names_the_command_and_the_fix():
    if shutil.which("ssh") is None:
        missing("the OpenSSH client (ssh) is not installed: apt-get install openssh-client")
    runner = make_runner(f"ssh://nobody@127.0.0.1:{_free_port()}/tmp/x", benchmark="/b")
    start = time.monotonic()
    with pytest.raises(RunnerError) as err:
        runner.check()
    message = str(err.value)
    assert message.startswith(f"runner {runner.url}: cannot connect: `ssh -o BatchMode=yes")
    assert "Connection refused" in message and "ssh-copy-id" in message and "\n" not in message
    assert err.value.exit_code == 1 and time.monotonic() - start < 30


# ------------------------------------------------------------------ real Lite runtime
@pytest.fixture(scope="module")
def toolchain():
    from automc.deploy.lite import ensure_toolchain

    return ensure_toolchain()


@pytest.fixture(scope="module")
def small_ms(toolchain, tmp_path_factory) -> Path:
    import deploy_nets
    from automc.deploy import convert_to_ms, export_mindir

    root = tmp_path_factory.mktemp("runner-ms")
    mindir = export_mindir(deploy_nets.build("small_cnn"), deploy_nets.batch(1), root / "small_cnn")
    return convert_to_ms(mindir, root / "small_cnn.ms", toolchain=toolchain)


def _is_small_cnn(run, threads=1):
    assert run.model == "small_cnn.ms" and run.threads == threads
    assert 0 < run.min_ms <= run.avg_ms <= run.max_ms


@pytest.mark.slow
def test_the_local_runner_times_a_model_in_the_real_lite_runtime(small_ms):
    run = make_runner("local").run(small_ms, **QUICK)
    _is_small_cnn(run)
    assert run.ops == ()


@pytest.mark.slow
def test_time_profiling_gives_lite_s_per_operator_tables(small_ms, toolchain):
    proc = subprocess.run([str(toolchain.benchmark), f"--modelFile={small_ms}", "--numThreads=1", "--loopCount=4",
                           "--warmUpLoopCount=1", "--timeProfiling=true", "--cpuBindMode=0"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "\nopName " in proc.stdout and "\nopType " in proc.stdout and "Run Benchmark small_cnn.ms Success." in proc.stdout
    run = make_runner("local").run(small_ms, threads=1, loops=4, warmup=1, time_profiling=True)
    _is_small_cnn(run)
    types = run.by_type()
    assert "Conv2DFusion" in types and types["Conv2DFusion"].calls == 4 * 2  # two convolutions, 4 loops
    assert {op.calls for op in run.by_name().values()} == {4}
    assert sum(op.avg_ms for op in run.by_name().values()) <= run.max_ms


@pytest.mark.slow
def test_the_benchmark_refuses_what_lite_s_benchmark_refuses(small_ms, toolchain):
    for args, needle in ((["--modelFile=" + str(small_ms), "--inDataFile=x.bin"], "unknown flag --inDataFile"),
                         (["--modelFile=" + str(small_ms), "--numThreads=0"], "bad value in --numThreads=0"),
                         (["--numThreads=1"], "--modelFile=<model.ms> is required"),
                         (["--modelFile=/no/such.ms"], "cannot read /no/such.ms")):
        proc = subprocess.run([str(toolchain.benchmark), *args], capture_output=True, text=True)
        assert proc.returncode == 1 and needle in proc.stderr, (args, proc.stderr)
    with pytest.raises(RunnerError, match="runner local: `.*--modelFile=/no/such.ms.*` failed .*cannot read /no/such.ms"):
        make_runner("local").run("/no/such.ms", **QUICK)


# ------------------------------------------------------------------ a real OpenSSH server on 127.0.0.1
@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """(port, client key) of an sshd on 127.0.0.1 that this test started, accepting only that key."""
    if not Path(SSHD).exists():
        missing("the OpenSSH server is not installed (apt-get install openssh-server)")
    if shutil.which("ssh") is None or shutil.which("scp") is None:
        missing("the OpenSSH client is not installed (apt-get install openssh-client)")
    root = tmp_path_factory.mktemp("sshd")
    for key in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / key)], check=True)
    shutil.copy(root / "client_key.pub", root / "authorized_keys")
    port = _free_port()
    (root / "sshd_config").write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {root / 'host_key'}",
        f"AuthorizedKeysFile {root / 'authorized_keys'}", f"PidFile {root / 'sshd.pid'}", "StrictModes no",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no", "PermitRootLogin yes",
        "Subsystem sftp internal-sftp", "LogLevel ERROR", ""]))
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation folder
    proc = subprocess.Popen([SSHD, "-f", str(root / "sshd_config"), "-D", "-e"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 15
    while True:
        if proc.poll() is not None:
            missing(f"sshd did not start: {proc.stderr.read().strip()[-300:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                missing("sshd did not listen within 15 s")
            time.sleep(0.1)
    yield port, root / "client_key"
    proc.terminate()
    proc.wait(timeout=10)


def _ssh_url(port: int, key: Path, folder: Path) -> str:
    return (f"ssh://{getpass.getuser()}@127.0.0.1:{port}{folder}?identity={key}"
            "&option=StrictHostKeyChecking=no&option=UserKnownHostsFile=/dev/null&option=LogLevel=ERROR")


@pytest.mark.slow
def test_the_ssh_runner_copies_and_times_the_model_on_the_remote_machine(sshd, small_ms, toolchain, tmp_path):
    port, key = sshd
    folder = tmp_path / "remote"
    runner = make_runner(_ssh_url(port, key, folder), benchmark=str(toolchain.benchmark))
    run = runner.run(small_ms, threads=1, loops=4, warmup=1, time_profiling=True)
    _is_small_cnn(run)
    assert "Conv2DFusion" in run.by_type()
    assert folder.is_dir() and not (folder / "small_cnn.ms").exists()  # copied there, removed after the run


@pytest.mark.slow
def test_the_ssh_runner_says_when_the_remote_benchmark_is_missing(sshd, tmp_path):
    port, key = sshd
    runner = make_runner(_ssh_url(port, key, tmp_path / "remote"), benchmark="/no/such/benchmark")
    with pytest.raises(RunnerError) as err:
        runner.check()
    assert "no executable benchmark binary at /no/such/benchmark" in str(err.value) and err.value.exit_code == 2


@pytest.mark.slow
def test_an_unauthorized_key_fails_at_once_instead_of_asking_for_a_password(sshd, tmp_path):
    port, _ = sshd
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    runner = make_runner(_ssh_url(port, tmp_path / "other", tmp_path), benchmark="/b")
    with pytest.raises(RunnerError) as err:
        runner.check()
    assert "cannot connect" in str(err.value) and "Permission denied" in str(err.value)
    assert err.value.exit_code == 1


# ------------------------------------------------------------------ adb, against a stand-in adb
STAND_IN_ADB = '''#!{python}
"""Stand-in adb: runs what adb would run on the device on this machine, the device's /data/local/tmp
mapped to $ADB_ROOT/data/local/tmp, and logs each call to $ADB_LOG."""
import json, os, shutil, subprocess, sys

args = sys.argv[1:]
with open(os.environ["ADB_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
if args[:1] != ["-s"] or args[1] != os.environ["ADB_SERIAL"]:
    sys.exit(f"error: device '{{args[1] if len(args) > 1 else ''}}' not found")
mapped = [a.replace("/data/local/tmp", os.environ["ADB_ROOT"] + "/data/local/tmp") for a in args[2:]]
if mapped[0] == "push":
    shutil.copy(mapped[1], mapped[2])
    print(f"{{args[3]}}: 1 file pushed")
elif mapped[0] == "shell":
    sys.exit(subprocess.run(["sh", "-c", " ".join(mapped[1:])]).returncode)
else:
    sys.exit(f"stand-in adb: {{mapped[0]}} is not supported")
'''


@pytest.fixture
def stand_in_adb(tmp_path, monkeypatch, toolchain):
    """The log of a stand-in ``adb`` first on PATH, its device holding /data/local/tmp/benchmark."""
    bin_dir, device = tmp_path / "bin", tmp_path / "device"
    bin_dir.mkdir()
    (device / "data/local/tmp").mkdir(parents=True)
    adb = bin_dir / "adb"
    adb.write_text(STAND_IN_ADB.format(python=sys.executable))
    adb.chmod(0o755)
    bench = device / "data/local/tmp/benchmark"
    bench.write_text(f"#!/bin/sh\nexec {toolchain.benchmark} \"$@\"\n")
    bench.chmod(0o755)
    log = tmp_path / "adb.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ADB_ROOT", str(device))
    monkeypatch.setenv("ADB_SERIAL", "emulator-5554")
    monkeypatch.setenv("ADB_LOG", str(log))
    return log


@pytest.mark.slow
def test_the_adb_runner_pushes_sets_the_library_path_and_runs_the_benchmark(stand_in_adb, small_ms):
    run = make_runner("adb://emulator-5554").run(small_ms, **QUICK)
    _is_small_cnn(run)
    calls = [json.loads(line) for line in stand_in_adb.read_text().splitlines()]
    assert [c[:3] for c in calls] == [["-s", "emulator-5554", "shell"], ["-s", "emulator-5554", "push"],
                                      ["-s", "emulator-5554", "shell"]]
    assert calls[0][3] == ("mkdir -p /data/local/tmp/automc && { test -x /data/local/tmp/benchmark || "
                           "echo 'automc-runner: no executable benchmark at /data/local/tmp/benchmark'; }")
    assert calls[1][3:] == [str(small_ms), "/data/local/tmp/automc/small_cnn.ms"]
    assert calls[2][3] == ("cd /data/local/tmp/automc && LD_LIBRARY_PATH=/data/local/tmp:$LD_LIBRARY_PATH "
                           "/data/local/tmp/benchmark --modelFile=/data/local/tmp/automc/small_cnn.ms --numThreads=1 "
                           "--loopCount=5 --warmUpLoopCount=1 --timeProfiling=false 2>&1; "
                           "rm -f /data/local/tmp/automc/small_cnn.ms")


@pytest.mark.slow
def test_the_adb_runner_names_the_device_that_is_not_there_and_a_missing_benchmark(stand_in_adb, small_ms):
    with pytest.raises(RunnerError) as err:
        make_runner("adb://R58M12345").run(small_ms, **QUICK)
    message = str(err.value)
    assert message.startswith("runner adb://R58M12345: cannot reach the device: `adb -s R58M12345 shell 'mkdir -p")
    assert "device 'R58M12345' not found" in message and "adb devices" in message and err.value.exit_code == 1
    with pytest.raises(RunnerError) as err:
        make_runner("adb://emulator-5554", benchmark="/data/local/tmp/lite/benchmark").run(small_ms, **QUICK)
    assert "no executable benchmark binary at /data/local/tmp/lite/benchmark" in str(err.value)
    assert err.value.exit_code == 2
