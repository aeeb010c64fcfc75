"""The MindSpore Lite 2.0 toolchain: native converter + runtime libraries and automc's C++ runner.

PyPI's ``mindspore-lite`` has Python 3.7 wheels only, so its Python API cannot be imported here;
its x86-64 wheel however ships C++ headers and native libraries that do not link libpython.
``ensure_toolchain`` downloads that wheel with ``pip download`` (once), unpacks headers and
libraries into the user's cache folder and compiles ``native/automc_lite.cc`` against them. Work
happens in a temporary folder renamed into place, so an interrupted setup leaves nothing half-done
and concurrent setups do not clash.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from automc._files import cache_root
from automc.errors import DeployError

LITE_VERSION = "2.0.0"
WHEEL_NAME = f"mindspore_lite-{LITE_VERSION}-cp37-cp37m-manylinux1_x86_64.whl"
_NATIVE_SOURCE = Path(__file__).with_name("native") / "automc_lite.cc"
# Libraries of the wheel that only serve Python 3.7, Ascend or TensorRT: not unpacked.
_SKIPPED_LIBS = ("_c_lite_wrapper", "libascend_", "libtensorrt_plugin", "libdvpp_utils")
_CXXFLAGS = ("-std=c++17", "-O2", "-D_GLIBCXX_USE_CXX11_ABI=0")
# The converter first: FULL_QUANT calibration builds the float graph with mindspore::Model::Build,
# which must resolve to the converter's (extendrt's expects a protobuf MindIR and fails to parse).
_LIBS = ("-lmindspore_converter", "-lmindspore-extendrt_python", "-lmindspore_core")


@dataclass(frozen=True)
class LiteToolchain:
    """Paths of a ready toolchain: ``runner`` converts MindIR to .ms and runs .ms models."""

    root: Path
    lib_dir: Path
    include_dir: Path
    runner: Path
    version: str = LITE_VERSION

    def env(self) -> dict[str, str]:
        """Process environment for the runner: Lite's libraries first on the loader path, quiet logs."""
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(self.lib_dir), env.get("LD_LIBRARY_PATH", "")) if p)
        env.setdefault("GLOG_v", "3")  # errors only
        return env

    @property
    def benchmark(self) -> Path:
        """A ``benchmark`` executable with MindSpore Lite's flags and output (a shell script that
        sets the loader path and runs ``automc_lite benchmark``); written by ``ensure_toolchain``."""
        return self.runner.with_name("benchmark")

    def run(self, args: list[str], *, what: str, timeout_s: float = 600.0) -> str:
        """Run the runner with ``args``; return its stdout or raise DeployError with its last error line."""
        try:
            proc = subprocess.run(
                [str(self.runner), *args], capture_output=True, text=True, env=self.env(), timeout=timeout_s
            )
        except subprocess.TimeoutExpired:
            raise DeployError(f"{what}: MindSpore Lite did not finish within {timeout_s:.0f} s") from None
        if proc.returncode != 0:
            raise DeployError(f"{what} failed: {_last_error(proc.stderr + proc.stdout)}")
        return proc.stdout


def _last_error(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    mine = [ln for ln in lines if ln.startswith("automc_lite:")]
    errors = [ln for ln in lines if "[ERROR]" in ln]
    picked = (errors[-3:] if errors else []) + mine[-1:]
    if not picked:
        picked = lines[-3:] or ["no output"]
    return " | ".join(_strip_log_prefix(ln) for ln in picked)


def _strip_log_prefix(line: str) -> str:
    # "[ERROR] LITE(123,7f..,automc_lite):2026-...:[path:line] Func] message" -> "path:line Func] message"
    if line.startswith("[ERROR]") and " [" in line:
        return line.split(" [", 1)[1].replace("]", "", 1)
    return line


def _source_hash() -> str:
    return hashlib.sha256(_NATIVE_SOURCE.read_bytes() + " ".join(_CXXFLAGS + _LIBS).encode()).hexdigest()[:16]


def _check_platform() -> None:
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise DeployError(
            f"the MindSpore Lite {LITE_VERSION} toolchain is only available for Linux x86-64 "
            f"(this is {sys.platform}/{platform.machine()}); use MindIR/ONNX export instead"
        )


def _download_wheel(dest: Path) -> Path:
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--python-version", "3.7",
        "--platform", "manylinux1_x86_64", "--only-binary=:all:", f"mindspore-lite=={LITE_VERSION}",
        "-d", str(dest), "--quiet",
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    except subprocess.TimeoutExpired:
        raise DeployError(f"downloading mindspore-lite {LITE_VERSION} (~170 MB) took over 30 min; check the network") from None
    wheel = dest / WHEEL_NAME
    if proc.returncode != 0 or not wheel.exists():
        detail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise DeployError(
            f"cannot download the mindspore-lite {LITE_VERSION} wheel with pip ({detail}); "
            "it needs network access to PyPI once, or put the wheel in $AUTOMC_LITE_WHEEL"
        )
    return wheel


def _unpack(wheel: Path, dest: Path) -> None:
    try:
        with zipfile.ZipFile(wheel) as zf:
            for info in zf.infolist():
                name = info.filename
                if not name.startswith(("mindspore_lite/include/", "mindspore_lite/lib/")) or name.endswith("/"):
                    continue
                if name.startswith("mindspore_lite/lib/") and Path(name).name.startswith(_SKIPPED_LIBS):
                    continue
                target = dest / Path(name).relative_to("mindspore_lite")
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
    except zipfile.BadZipFile as exc:
        raise DeployError(f"{wheel} is not a valid wheel ({exc}); delete it and retry") from None


def _compile(root: Path, out: Path) -> None:
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        raise DeployError("no C++ compiler found (g++); install it (e.g. apt-get install g++) to build the Lite runner")
    lib_dir = root / "lib"
    cmd = [
        cxx, *_CXXFLAGS, f"-I{root}", f"-I{root / 'include'}", str(_NATIVE_SOURCE), "-o", str(out),
        f"-L{lib_dir}", f"-Wl,-rpath,{lib_dir}", *_LIBS,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        first = next((ln for ln in proc.stderr.splitlines() if "error" in ln), proc.stderr.strip()[:300])
        raise DeployError(f"compiling the Lite runner failed: {first}")


def _replace_dir(tmp: Path, final: Path) -> None:
    try:
        os.replace(tmp, final)
    except OSError:
        if (final / "STAMP.json").exists():  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)


def _write_benchmark_wrapper(tc: LiteToolchain) -> None:
    lib = shlex.quote(str(tc.lib_dir))
    text = ("#!/bin/sh\n# MindSpore Lite's benchmark flags and output, run by automc's Lite runner "
            "(written by automc.deploy.lite.ensure_toolchain)\n"
            f'LD_LIBRARY_PATH={lib}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}\nexport LD_LIBRARY_PATH\n'
            'GLOG_v="${GLOG_v:-3}"\nexport GLOG_v\n'
            f'exec {shlex.quote(str(tc.runner))} benchmark "$@"\n')
    tmp = tc.benchmark.with_name(f".benchmark.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.chmod(0o755)
    os.replace(tmp, tc.benchmark)


def ensure_toolchain(*, cache_dir: str | Path | None = None) -> LiteToolchain:
    """Return the cached Lite toolchain, downloading the wheel and compiling the runner when absent."""
    _check_platform()
    root = Path(cache_dir) if cache_dir is not None else cache_root() / "lite" / LITE_VERSION
    sdk = root / "sdk"
    build = root / "build"
    root.mkdir(parents=True, exist_ok=True)

    if not (sdk / "STAMP.json").exists():
        with tempfile.TemporaryDirectory(dir=root, prefix=".sdk-") as tmp:
            tmp_sdk = Path(tmp) / "sdk"
            tmp_sdk.mkdir()
            local = os.environ.get("AUTOMC_LITE_WHEEL")
            wheel = Path(local) if local else _download_wheel(Path(tmp))
            if not wheel.exists():
                raise DeployError(f"$AUTOMC_LITE_WHEEL points to {wheel}, which does not exist")
            _unpack(wheel, tmp_sdk)
            (tmp_sdk / "STAMP.json").write_text(json.dumps({"version": LITE_VERSION, "wheel": wheel.name}))
            _replace_dir(tmp_sdk, sdk)

    digest = _source_hash()
    runner = build / digest / "automc_lite"
    if not runner.exists():
        build.mkdir(exist_ok=True)
        with tempfile.TemporaryDirectory(dir=build, prefix=".build-") as tmp:
            tmp_dir = Path(tmp) / digest
            tmp_dir.mkdir()
            _compile(sdk, tmp_dir / "automc_lite")
            (tmp_dir / "STAMP.json").write_text(json.dumps({"source_sha256": digest}))
            _replace_dir(tmp_dir, build / digest)
    toolchain = LiteToolchain(root=root, lib_dir=sdk / "lib", include_dir=sdk / "include", runner=runner)
    if not toolchain.benchmark.exists():
        _write_benchmark_wrapper(toolchain)
    return toolchain
