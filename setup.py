"""Build step for the C wrapper; all the metadata stays in pyproject.toml.

``pip install .`` compiles ``wrapper_c/hpilot_wrapper.c`` with the machine's C
compiler (``$CC``, else ``cc``/``gcc``/``clang``) and installs the program as
``hpilot/launcher/hpilot-wrapper``, where ``--enable-rt-stats`` finds it.

Without a compiler (or when the compile fails) the install still succeeds, and says so
where it will be seen: pip shows a build's output only when the build fails (or with
``-v``), so the notice goes to the terminal (``/dev/tty``) as well as to stderr, with
what it costs (``--enable-rt-stats`` and ``hpilot report launch-stats``; nothing else)
and how to get it.  ``--enable-rt-stats`` says the same again when it is asked for.

The wheel is tagged for what it really needs: the wrapper is a C program that does not
use Python, so a wheel with it is ``py3-none-<platform>`` (any Python 3 on that
platform), and one without it (no compiler) is pure Python, ``py3-none-any``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Any, Tuple

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join("wrapper_c", "hpilot_wrapper.c")
PROGRAM = "hpilot-wrapper"
BUILT = {"wrapper": False}  # set by the build; the wheel's tag follows it

COST = ("  What this costs: --enable-rt-stats (each task's exact start and stop, measured by the wrapper;\n"
        "  `hpilot report launch-stats`) will not work. Everything else works: runs, Slurm, governor mode,\n"
        "  task output, the other reports and plots.\n"
        "  To get it: install a C compiler (e.g. `apt install gcc`, `dnf install gcc`, `module load gcc`)\n"
        "  and reinstall hpilot, or give --wrapper-rt-stats PATH to a wrapper built elsewhere.\n")


def _say(text: str) -> None:
    """To stderr (pip -v shows it) and to the terminal, which pip does not capture."""
    sys.stderr.write(text)
    try:
        with open("/dev/tty", "w") as tty:
            tty.write(text)
    except OSError:  # no terminal (a batch job, CI): stderr only
        pass


def _compiler() -> list:
    cc = os.environ.get("CC")
    if cc:
        return cc.split()
    for name in ("cc", "gcc", "clang"):
        found = shutil.which(name)
        if found:
            return [found]
    return []


def compile_wrapper(out: str) -> bool:
    """Static first (saves the dynamic loader on every task start), then dynamic."""
    cc = _compiler()
    src = os.path.join(HERE, SOURCE)
    if not cc:
        _say(f"\nhpilot: WARNING: no C compiler found ($CC, cc, gcc or clang): the C wrapper {PROGRAM} "
             f"is NOT built.\n{COST}\n")
        return False
    os.makedirs(os.path.dirname(out), exist_ok=True)
    err = ""
    for extra in (["-static"], []):
        try:
            proc = subprocess.run([*cc, "-std=c99", "-O2", "-Wall", "-Wextra", *extra, "-o", out, src],
                                  capture_output=True, text=True)
        except OSError as e:
            err = f"{cc[0]}: {e.strerror}"
            break
        if proc.returncode == 0:
            os.chmod(out, 0o755)
            return True
        err = proc.stderr
    _say(f"\nhpilot: WARNING: the C wrapper {PROGRAM} could not be built with {' '.join(cc)}:\n"
         f"{err.strip()[-1500:]}\n{COST}\n")
    return False


class BuildPyWithWrapper(build_py):
    """build_py, then the wrapper into the built hpilot.launcher package."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            # an editable install builds it on first use from wrapper_c/ (launcher/rtstats.py): that needs cc
            if not _compiler():
                _say(f"\nhpilot: WARNING: no C compiler found ($CC, cc, gcc or clang): {PROGRAM} cannot be "
                     f"built on first use.\n{COST}\n")
            return
        out = os.path.join(self.build_lib, "hpilot", "launcher", PROGRAM)
        if os.path.exists(out):  # from an earlier build (pip builds in place): never ship a stale one
            os.remove(out)
        if compile_wrapper(out):
            self._wrapper = out
            BUILT["wrapper"] = True

    def get_outputs(self, include_bytecode: bool = True) -> list:
        outputs = list(super().get_outputs(include_bytecode))
        wrapper = getattr(self, "_wrapper", None)
        if wrapper:
            outputs.append(wrapper)
        return outputs


class BinaryDistribution(Distribution):
    def has_ext_modules(self) -> bool:
        return True


cmdclass: dict = {"build_py": BuildPyWithWrapper}
try:  # setuptools >= 70.1 has its own; older ones use the wheel package's
    from setuptools.command.bdist_wheel import bdist_wheel as _bdist_wheel
except ImportError:  # pragma: no cover - depends on the build environment
    try:
        from wheel.bdist_wheel import bdist_wheel as _bdist_wheel  # type: ignore[no-redef]
    except ImportError:
        _bdist_wheel = None  # type: ignore[assignment,misc]

if _bdist_wheel is not None:
    class BdistWheel(_bdist_wheel):  # type: ignore[misc,valid-type]
        """``py3-none-<platform>`` with the wrapper (a C program: any Python 3 on that platform will
        do), ``py3-none-any`` without it (pure Python then)."""

        def get_tag(self) -> Tuple[str, str, str]:
            tag: Any = super().get_tag()
            if not BUILT["wrapper"]:
                self.root_is_pure = True  # what the WHEEL file says: nothing platform specific inside
                return "py3", "none", "any"
            return "py3", "none", tag[2]

    cmdclass["bdist_wheel"] = BdistWheel


setup(cmdclass=cmdclass, distclass=BinaryDistribution)
