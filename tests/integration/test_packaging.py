"""Packaging: the wheel carries the C wrapper when a compiler is there, is tagged for what it
needs (py3-none-<platform> with the wrapper, py3-none-any without), and a build without a
compiler says so where an installing user sees it (the terminal: pip hides a successful
build's output), with what it costs.

Each test builds a real wheel with pip (build isolation, the package index of this machine)
from a copy of the source tree, so builds never share a ``build/`` directory.
"""

from __future__ import annotations

import os
import pty
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Dict, Tuple

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SKIP = shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", ".hpilot", ".git", ".*_cache")


@pytest.fixture
def src(tmp_path: Path) -> Path:
    dst = tmp_path / "src"
    shutil.copytree(ROOT, dst, ignore=SKIP)
    return dst


def build(src: Path, out: Path, env: Dict[str, str]) -> Tuple[int, str]:
    """``pip wheel`` under a pseudo-terminal, as a user at a terminal runs it: (status, what they saw)."""
    argv = [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-q", "-w", str(out)]
    pid, fd = pty.fork()
    if pid == 0:  # the child: its controlling terminal is the pty
        try:
            os.execve(sys.executable, argv, env)
        finally:
            os._exit(127)
    seen = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), seen.decode(errors="replace").replace("\r\n", "\n")


def wheel_of(out: Path) -> Tuple[str, Dict[str, str], zipfile.ZipFile]:
    (whl,) = out.glob("*.whl")
    z = zipfile.ZipFile(whl)
    meta = next(n for n in z.namelist() if n.endswith(".dist-info/WHEEL"))
    fields = dict(line.split(": ", 1) for line in z.read(meta).decode().splitlines() if ": " in line)
    return whl.name, fields, z


def no_compiler_env(tmp_path: Path, cc: str = "") -> Dict[str, str]:
    empty = tmp_path / "bin"
    empty.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("CC", "PIP_VERBOSE")}
    env["PATH"] = str(empty)  # no cc, gcc or clang to be found
    if cc:
        env["CC"] = cc
    return env


def test_with_a_compiler_the_wheel_has_the_wrapper_and_a_platform_tag(src: Path, tmp_path: Path) -> None:
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler on this machine")
    code, seen = build(src, tmp_path / "w", dict(os.environ))
    assert code == 0, seen
    name, fields, z = wheel_of(tmp_path / "w")
    assert name.endswith("-py3-none-" + fields["Tag"].split("-")[-1] + ".whl")
    assert fields["Tag"].startswith("py3-none-") and not fields["Tag"].endswith("-any")  # no cpXY: no Python ABI
    assert fields["Root-Is-Purelib"] == "false"
    info = z.getinfo("hpilot/launcher/hpilot-wrapper")
    assert info.file_size > 1000 and (info.external_attr >> 16) & 0o111  # an executable program
    assert "WARNING" not in seen


def test_without_a_compiler_the_install_says_so_and_the_wheel_is_pure(src: Path, tmp_path: Path) -> None:
    code, seen = build(src, tmp_path / "w", no_compiler_env(tmp_path))
    assert code == 0, seen  # the install itself goes on: everything but rt-stats works
    assert "no C compiler found" in seen and "is NOT built" in seen
    assert "--enable-rt-stats" in seen and "Everything else works" in seen  # what it costs
    assert "install a C compiler" in seen
    name, fields, z = wheel_of(tmp_path / "w")
    assert name.endswith("-py3-none-any.whl") and fields["Tag"] == "py3-none-any"
    assert fields["Root-Is-Purelib"] == "true"
    assert not any(n.endswith("hpilot-wrapper") for n in z.namelist())


def test_a_compiler_that_fails_is_said_too(src: Path, tmp_path: Path) -> None:
    code, seen = build(src, tmp_path / "w", no_compiler_env(tmp_path, cc="/bin/false"))
    assert code == 0, seen
    assert "could not be built with /bin/false" in seen and "--enable-rt-stats" in seen
    name, _, z = wheel_of(tmp_path / "w")
    assert name.endswith("-py3-none-any.whl") and not any(n.endswith("hpilot-wrapper") for n in z.namelist())


def test_a_second_build_without_a_compiler_never_ships_the_first_ones_wrapper(src: Path, tmp_path: Path) -> None:
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler on this machine")
    # pip builds in the source tree: the first build leaves build/lib/.../hpilot-wrapper behind
    first = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-q", "-w",
                            str(tmp_path / "a")], capture_output=True, text=True, timeout=110)
    assert first.returncode == 0, first.stderr
    code, seen = build(src, tmp_path / "b", no_compiler_env(tmp_path))
    assert code == 0, seen
    name, _, z = wheel_of(tmp_path / "b")
    assert name.endswith("-py3-none-any.whl") and not any(n.endswith("hpilot-wrapper") for n in z.namelist())
