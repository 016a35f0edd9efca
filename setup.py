"""Build step for the C wrapper; all the metadata stays in pyproject.toml.

``pip install .`` compiles ``wrapper_c/hpilot_wrapper.c`` with the machine's C
compiler (``$CC``, else ``cc``/``gcc``/``clang``) and installs the program as
``hpilot/launcher/hpilot-wrapper``, where ``--enable-rt-stats`` finds it.  Without a
compiler the install still succeeds (a warning says so); ``--enable-rt-stats`` then
explains what is missing.  The wheel is marked platform specific, since it carries
a binary.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join("wrapper_c", "hpilot_wrapper.c")
PROGRAM = "hpilot-wrapper"


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
        sys.stderr.write(f"warning: no C compiler found: {PROGRAM} not built (--enable-rt-stats unavailable)\n")
        return False
    os.makedirs(os.path.dirname(out), exist_ok=True)
    err = ""
    for extra in (["-static"], []):
        proc = subprocess.run([*cc, "-std=c99", "-O2", "-Wall", "-Wextra", *extra, "-o", out, src],
                              capture_output=True, text=True)
        if proc.returncode == 0:
            os.chmod(out, 0o755)
            return True
        err = proc.stderr
    sys.stderr.write(f"warning: {PROGRAM} could not be built (--enable-rt-stats unavailable):\n{err}\n")
    return False


class BuildPyWithWrapper(build_py):
    """build_py, then the wrapper into the built hpilot.launcher package."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install builds it on first use from wrapper_c/ (launcher/rtstats.py)
        out = os.path.join(self.build_lib, "hpilot", "launcher", PROGRAM)
        if compile_wrapper(out):
            self._wrapper = out

    def get_outputs(self, include_bytecode: bool = True) -> list:
        outputs = list(super().get_outputs(include_bytecode))
        wrapper = getattr(self, "_wrapper", None)
        if wrapper:
            outputs.append(wrapper)
        return outputs


class BinaryDistribution(Distribution):
    def has_ext_modules(self) -> bool:
        return True


setup(cmdclass={"build_py": BuildPyWithWrapper}, distclass=BinaryDistribution)
