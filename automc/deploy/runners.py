"""Where a ``.ms`` model is timed: runners that run MindSpore Lite's ``benchmark`` on a device.

A runner is named by a URL, its scheme the key of :data:`RUNNERS`:

- ``local``: this machine, with the toolchain's ``benchmark`` (``automc_lite benchmark``: Lite's
  flags and output) or the ``benchmark`` binary given;
- ``ssh://user@host[:port]/dir``: the model is copied to ``dir`` with ``scp`` and timed there by
  the ``benchmark`` binary on that machine (``benchmark=PATH``, required); the URL's query may add
  ``identity=KEY_FILE`` and any number of ``option=Name=value`` (``ssh -o``); ``BatchMode=yes``
  always, so a missing key fails at once instead of asking for a password;
- ``adb://SERIAL[/dir]``: ``adb -s SERIAL push`` to ``dir`` (default ``/data/local/tmp/automc``) and
  ``adb -s SERIAL shell`` with ``LD_LIBRARY_PATH`` set to the benchmark's folder (or ``lib=DIR``
  in the query), the binary at ``benchmark=PATH`` (default ``/data/local/tmp/benchmark``).

Every runner returns a :class:`~automc.deploy.benchmark.BenchmarkRun` parsed from one output
format. A runner that cannot connect raises :class:`RunnerError` (exit code 1) naming the command
that failed and the fix; a benchmark binary that is not there, exit code 2.
"""

from __future__ import annotations

import abc
import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence
from urllib.parse import parse_qs, urlsplit

from automc.deploy.benchmark import BenchmarkRun, benchmark_command, parse_benchmark_output
from automc.deploy.lite import ensure_toolchain
from automc.errors import ConfigError, DeployError
from automc.registry import Registry

#: seconds one benchmark run (or copy) may take before the runner gives up
TIMEOUT_S = 900.0
#: marker a remote shell prints when the benchmark binary is not there
_MISSING = "automc-runner: no executable benchmark at"


class RunnerError(DeployError):
    """A runner could not reach its device or run the benchmark there; the message names the
    command that failed and the fix. Exit code 1 (the device, not the input); 2 for a benchmark
    binary that is missing (a path to fix)."""

    def __init__(self, message: str, *, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def _quote(cmd: Sequence[str]) -> str:
    return " ".join(shlex.quote(str(c)) for c in cmd)


def _tail(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no output"


def _call(cmd: list[str], *, what: str, fix: str = "", timeout_s: float = TIMEOUT_S,
          check: bool = True) -> subprocess.CompletedProcess:
    """Run ``cmd``; a missing program, a time-out or (with ``check``) a non-zero exit is a
    RunnerError quoting the command, its last output line and ``fix``."""
    fix = f"; {fix}" if fix else ""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except FileNotFoundError:
        raise RunnerError(f"{what}: `{cmd[0]}` is not installed here{fix}", exit_code=2) from None
    except subprocess.TimeoutExpired:
        raise RunnerError(f"{what}: `{_quote(cmd)}` did not finish within {timeout_s:.0f} s{fix}") from None
    if check and proc.returncode != 0:
        raise RunnerError(f"{what}: `{_quote(cmd)}` failed (exit {proc.returncode}: "
                          f"{_tail(proc.stderr) if proc.stderr.strip() else _tail(proc.stdout)}){fix}")
    return proc


def _parse(text: str, *, where: str) -> BenchmarkRun:
    try:
        return parse_benchmark_output(text)
    except DeployError as exc:
        raise RunnerError(f"{where}: {exc}") from None


def _probe(cmd: list[str], *, url: str, benchmark: str, what: str, fix: str) -> None:
    """Run the shell probe ``cmd`` (it makes the model folder and looks for the benchmark binary)."""
    proc = _call(cmd, what=f"runner {url}: {what}", fix=fix, timeout_s=60.0)
    if _MISSING in proc.stdout:
        raise RunnerError(f"runner {url}: no executable benchmark binary at {benchmark} (`{_quote(cmd)}`); copy "
                          "MindSpore Lite's benchmark there (tools/benchmark/benchmark of the Lite release for that "
                          "device) or give its path with --benchmark", exit_code=2)


def _probe_script(directory: str, benchmark: str) -> str:
    d, b = shlex.quote(directory), shlex.quote(benchmark)
    return f"mkdir -p {d} && {{ test -x {b} || echo '{_MISSING} {benchmark}'; }}"


@dataclass(frozen=True)
class Runner(abc.ABC):
    """Times ``.ms`` models on one device with a ``benchmark``-compatible binary."""

    url: str

    def check(self) -> None:
        """Reach the device and find its benchmark binary (cheap; before any export work)."""

    @abc.abstractmethod
    def run(self, model: str | Path, *, threads: int = 1, loops: int = 100, warmup: int = 10,
            time_profiling: bool = False) -> BenchmarkRun:
        """Copy ``model`` where it runs, time it with ``benchmark``, return what it printed."""


@dataclass(frozen=True)
class LocalRunner(Runner):
    """This machine: the toolchain's ``benchmark`` (MindSpore Lite 2.0 through automc's runner),
    or the ``benchmark`` binary given (e.g. a Lite release's own)."""

    benchmark: str = ""

    def binary(self) -> Path:
        if self.benchmark:
            path = Path(self.benchmark).expanduser()
            if not (path.is_file() and os.access(path, os.X_OK)):
                raise RunnerError(f"runner local: no executable benchmark binary at {path}; give the path of "
                                  "MindSpore Lite's benchmark, or leave --benchmark out to use automc's own",
                                  exit_code=2)
            return path
        return ensure_toolchain().benchmark

    def check(self) -> None:
        self.binary()

    def run(self, model, *, threads=1, loops=100, warmup=10, time_profiling=False) -> BenchmarkRun:
        cmd = benchmark_command(self.binary(), Path(model).resolve(), threads=threads, loops=loops, warmup=warmup,
                                time_profiling=time_profiling)
        proc = _call(cmd, what="runner local")
        return _parse(proc.stdout, where="runner local")


def _query(url: str, parts, allowed: Sequence[str]) -> dict[str, list[str]]:
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - set(allowed))
    if unknown:
        raise ConfigError(f"runner {url!r}: unknown option {unknown[0]!r} in the URL query; valid: {', '.join(allowed)}")
    return query


@dataclass(frozen=True)
class SshRunner(Runner):
    """A machine reached with OpenSSH: ``scp`` the model to ``directory``, ``ssh`` the benchmark."""

    host: str = ""
    user: str = ""
    port: int = 22
    directory: str = "/tmp/automc"
    benchmark: str = ""
    identity: str = ""
    options: tuple[str, ...] = ()

    @classmethod
    def from_url(cls, url: str, *, benchmark: str = "") -> "SshRunner":
        parts = urlsplit(url)
        query = _query(url, parts, ("identity", "option", "benchmark"))
        try:
            port = parts.port or 22
        except ValueError:
            raise ConfigError(f"runner {url!r}: the port is not a number; use ssh://user@host:2222/dir") from None
        if not parts.hostname:
            raise ConfigError(f"runner {url!r}: no host; use ssh://user@host[:port]/dir")
        benchmark = benchmark or query.get("benchmark", [""])[-1]
        if not benchmark:
            raise ConfigError(f"runner {url!r}: give the path of MindSpore Lite's benchmark on {parts.hostname} "
                              "(--benchmark PATH, export.measure.benchmark, or ?benchmark=PATH)")
        return cls(url=url, host=parts.hostname, user=parts.username or "", port=port,
                   directory=parts.path.rstrip("/") or "/tmp/automc", benchmark=benchmark,
                   identity=query.get("identity", [""])[-1], options=tuple(query.get("option", [])))

    @property
    def target(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def _common(self) -> list[str]:
        args = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=15"]
        if self.identity:
            args += ["-i", str(Path(self.identity).expanduser())]
        for opt in self.options:
            args += ["-o", opt]
        return args

    def ssh(self, remote: str) -> list[str]:
        """The ``ssh`` command that runs the shell text ``remote`` on the host."""
        return ["ssh", *self._common(), "-p", str(self.port), self.target, remote]

    def scp(self, local: Path, remote_path: str) -> list[str]:
        return ["scp", "-q", *self._common(), "-P", str(self.port), str(local), f"{self.target}:{remote_path}"]

    def _fix(self) -> str:
        key = f" -i {self.identity}" if self.identity else ""
        return (f"check that `ssh{key} -p {self.port} {self.target}` logs in without a password (ssh-copy-id; "
                "identity=KEY_FILE and option=Name=value in the runner URL's query)")

    def check(self) -> None:
        _probe(self.ssh(_probe_script(self.directory, self.benchmark)), url=self.url, benchmark=self.benchmark,
               what="cannot connect", fix=self._fix())

    def run(self, model, *, threads=1, loops=100, warmup=10, time_profiling=False) -> BenchmarkRun:
        model = Path(model)
        remote = f"{self.directory}/{model.name}"
        self.check()
        _call(self.scp(model, remote), what=f"runner {self.url}: copying {model.name}", fix=self._fix())
        cmd = benchmark_command(self.benchmark, remote, threads=threads, loops=loops, warmup=warmup,
                                time_profiling=time_profiling)
        script = f"{_quote(cmd)} 2>&1; rm -f {shlex.quote(remote)}"
        proc = _call(self.ssh(script), what=f"runner {self.url}: the benchmark", check=False)
        if proc.returncode == 255:  # ssh's own failure: the connection dropped
            raise RunnerError(f"runner {self.url}: cannot connect: `{_quote(self.ssh(script))}` failed (exit 255: "
                              f"{_tail(proc.stderr)}); {self._fix()}")
        return _parse(proc.stdout, where=f"runner {self.url}")


@dataclass(frozen=True)
class AdbRunner(Runner):
    """An Android device: ``adb push`` the model, ``adb shell`` the benchmark with its libraries
    on ``LD_LIBRARY_PATH``."""

    serial: str = ""
    directory: str = "/data/local/tmp/automc"
    benchmark: str = "/data/local/tmp/benchmark"
    lib_dir: str = ""

    @classmethod
    def from_url(cls, url: str, *, benchmark: str = "") -> "AdbRunner":
        parts = urlsplit(url)
        query = _query(url, parts, ("benchmark", "lib"))
        serial = parts.netloc
        if not serial:
            raise ConfigError(f"runner {url!r}: no device serial; use adb://SERIAL (`adb devices` lists them)")
        benchmark = benchmark or query.get("benchmark", [""])[-1] or cls.benchmark
        return cls(url=url, serial=serial, directory=parts.path.rstrip("/") or cls.directory, benchmark=benchmark,
                   lib_dir=query.get("lib", [""])[-1] or str(Path(benchmark).parent))

    def adb_cmd(self, *args: str) -> list[str]:
        return ["adb", "-s", self.serial, *args]

    def _fix(self) -> str:
        return (f"check that `adb devices` lists {self.serial} as 'device' (USB debugging on, the computer "
                "authorized; for a network device: adb connect HOST:PORT)")

    def check(self) -> None:
        _probe(self.adb_cmd("shell", _probe_script(self.directory, self.benchmark)), url=self.url,
               benchmark=self.benchmark, what="cannot reach the device", fix=self._fix())

    def run(self, model, *, threads=1, loops=100, warmup=10, time_profiling=False) -> BenchmarkRun:
        model = Path(model)
        remote = f"{self.directory}/{model.name}"
        self.check()
        _call(self.adb_cmd("push", str(model), remote), what=f"runner {self.url}: pushing {model.name}",
              fix=self._fix())
        cmd = benchmark_command(self.benchmark, remote, threads=threads, loops=loops, warmup=warmup,
                                time_profiling=time_profiling)
        lib = shlex.quote(self.lib_dir)
        script = (f"cd {shlex.quote(self.directory)} && LD_LIBRARY_PATH={lib}:$LD_LIBRARY_PATH {_quote(cmd)} 2>&1; "
                  f"rm -f {shlex.quote(remote)}")
        proc = _call(self.adb_cmd("shell", script), what=f"runner {self.url}: the benchmark", fix=self._fix(),
                     check=False)
        return _parse(proc.stdout, where=f"runner {self.url}")


#: runner classes by URL scheme
RUNNERS: Registry = Registry("runner")
RUNNERS.register("local", LocalRunner)
RUNNERS.register("ssh", SshRunner)
RUNNERS.register("adb", AdbRunner)

#: how each scheme is written, for messages
URL_FORMS = {"local": "local", "ssh": "ssh://user@host[:port]/dir", "adb": "adb://SERIAL"}


def runner_scheme(url: str) -> str:
    """The scheme of a runner URL (``local`` for ``local``); ConfigError for an unknown one."""
    scheme = url.split("://", 1)[0] if "://" in url else url
    if scheme not in RUNNERS:
        raise ConfigError(f"runner {url!r}: unknown runner; use one of {', '.join(URL_FORMS.values())}")
    if scheme == "local" and url != "local":
        raise ConfigError(f"runner {url!r}: the local runner is written just 'local'")
    return scheme


def make_runner(url: str, *, benchmark: str | None = None) -> Runner:
    """The runner for ``url`` (see the module's docstring); ``benchmark``: the benchmark binary's path on
    the device. Bad URLs raise ConfigError naming the URL and the form to use."""
    scheme = runner_scheme(url)
    cls = RUNNERS.get(scheme)
    if scheme == "local":
        return cls(url="local", benchmark=benchmark or "")
    return cls.from_url(url, benchmark=benchmark or "")


def check_runner_url(url: str) -> str:
    """``url`` if it is a well-formed runner URL (the benchmark path aside); else ConfigError."""
    make_runner(url, benchmark="benchmark")
    return url
