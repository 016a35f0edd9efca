"""The command line reads well: grouped options with their defaults, no double negatives,
each command offering what makes sense for it, ``--json`` on every client command, and
lazy imports (a client command never imports the service)."""

from __future__ import annotations

import subprocess
import sys
from typing import List

import click
import pytest
from click.testing import CliRunner
from hpilot.governor.cli import serve
from hpilot.governor.cli.main import COMMANDS, cli
from hpilot.governor.service.config import CHOICES

CLIENT = ("status", "list", "info", "submit", "wait", "cancel", "remove", "resources", "finish", "top")


def help_text(*args: str) -> str:
    result = CliRunner().invoke(cli, [*args, "--help"], terminal_width=120)
    assert result.exit_code == 0, result.output
    return str(result.output)


def option_names(command: str) -> List[str]:
    cmd = cli.get_command(click.Context(cli), command)
    assert cmd is not None
    return [o for p in cmd.params for o in (*p.opts, *getattr(p, "secondary_opts", ())) if not getattr(p, "hidden", 0)]


def test_choices_agree_with_the_config() -> None:
    assert CHOICES["resources"] == serve.RESOURCES and CHOICES["nl_start_method"] == serve.NL_START
    assert CHOICES["envschema"] == serve.ENVSCHEMA and CHOICES["report_format"] == serve.REPORT_FORMAT
    assert CHOICES["log"] == serve.LOG


def test_every_command_in_the_table_loads() -> None:
    for name in COMMANDS:
        assert cli.get_command(click.Context(cli), name) is not None, name


def test_run_help_is_grouped_with_defaults() -> None:
    text = help_text("run")
    for title in ("The run:", "Resources:", "Network interface (QCG-PilotJob's):", "Slurm node agents:",
                  "Statistics:", "Governor mode: partition managers run the work:",
                  "A command line instead of a request file (after --):"):
        assert f"\n{title}\n" in text, title
    assert "[default: info]" in text and "[default: 127.0.0.1]" in text and "[default: 30.0]" in text
    assert "--progress / --no-progress" in text


@pytest.mark.parametrize("command", ["run", "service", "resume"])
def test_no_double_negatives(command: str) -> None:
    names = option_names(command)
    assert not [n for n in names if n.startswith("--no-disable") or n.startswith("--no-enable")], names
    assert "--disable-pub" in names and "--enable-rt-stats" in names


def test_resume_offers_only_what_makes_sense() -> None:
    names = option_names("resume")
    for gone in ("--wd", "--resume", "--no-journal", "--parent", "--id", "--tags", "--array", "--file-path"):
        assert gone not in names, gone
    for kept in ("--nodes", "--dry-run", "--net", "--enable-rt-stats", "--progress"):
        assert kept in names, kept
    assert "--parent" not in option_names("run") and "--parent" in option_names("service")


@pytest.mark.parametrize("command", CLIENT)
def test_every_client_command_has_json_and_address(command: str) -> None:
    names = option_names(command)
    assert "--json" in names and "--address" in names


@pytest.mark.shell
def test_top_level_help_imports_no_command() -> None:
    """`hpilot --help` lists the commands from the table, and a client command imports no service code."""
    code = ("import sys; from hpilot.governor.cli.main import _main; sys.argv = ['hpilot', 'status', '--help']\n"
            "try: _main()\nexcept SystemExit: pass\n"
            "bad = [m for m in sys.modules if m.startswith(('hpilot.governor.service', 'hpilot.governor.api', "
            "'hpilot.partition', 'hpilot.launcher', 'hpilot.governor.reports', 'rich', 'networkx', 'psutil'))]\n"
            "print('IMPORTED', bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "IMPORTED []" in out.stdout, out.stdout + out.stderr
