"""What every hpilot command is built on: lazy loading, grouped help, ``-- CMD ARGS``.

- :class:`LazyGroup` imports a command's module only when that command runs (click's
  documented pattern), so ``hpilot status`` never imports the service, the reports or
  the API: a client command starts within a few times a bare ``python -c pass``
  (measured in ``bench/cli.py``).
- :class:`Command` shows its options in titled groups, each with its default, and
  takes everything after ``--`` as a command line to run (``hpilot run -- ./sim``),
  which it leaves in ``ctx.meta["command"]``.

Grouped help is ~40 lines here rather than a dependency (rich-click, click-option-
group): the help text is plain click, and no extra import is paid at start-up.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Dict, List, Optional, Tuple

import click

GROUP_ATTR = "hpilot_group"


def option(*decls: str, group: str, **kw: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A click option that belongs to a help group (its default, None, means "not given")."""
    kw.setdefault("default", None)

    def deco(f: Callable[..., Any]) -> Callable[..., Any]:
        f = click.option(*decls, **kw)(f)
        setattr(f.__click_params__[-1], GROUP_ATTR, group)  # type: ignore[attr-defined]
        return f

    return deco


class Command(click.Command):
    """Options in titled groups with their defaults; ``-- CMD ARGS`` kept for the command.

    ``defaults`` (a callable, run only for ``--help``) gives the value an option takes
    when it is not given: for the service options that is configs/defaults.toml."""

    def __init__(self, *args: Any, defaults: Optional[Callable[[], Dict[str, Any]]] = None,
                 takes_command: bool = False, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.defaults = defaults
        self.takes_command = takes_command

    def parse_args(self, ctx: click.Context, args: List[str]) -> List[str]:
        if self.takes_command and "--" in args:
            cut = args.index("--")
            ctx.meta["command"] = args[cut + 1:]
            args = args[:cut]
            if not ctx.meta["command"]:
                raise click.UsageError("-- must be followed by a command to run", ctx)
        return super().parse_args(ctx, args)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        defaults = self.defaults() if self.defaults else {}
        groups: Dict[str, List[Tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            if not isinstance(param, click.Option):
                continue  # arguments are in the usage line
            rec = param.get_help_record(ctx)
            if rec is None:
                continue
            name, text = rec
            default = _default_text(param, defaults)
            if default and "[default:" not in text:
                text = f"{text} [default: {default}]".strip()
            groups.setdefault(getattr(param, GROUP_ATTR, "Other options"), []).append((name, text))
        for title, rows in groups.items():
            with formatter.section(title):
                formatter.write_dl(rows)


def _default_text(param: click.Parameter, defaults: Dict[str, Any]) -> str:
    """The value an option takes when not given; flags say theirs in their help."""
    if not isinstance(param, click.Option) or param.name is None or param.is_flag:
        return ""
    value = defaults.get(param.name, param.default)
    return "" if value is None or value == "" else str(value)


class LazyGroup(click.Group):
    """Subcommands named in a table and imported when used (click's lazy-loading pattern)."""

    def __init__(self, *args: Any, lazy: Dict[str, Tuple[str, str, str]], **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.lazy = lazy  # name -> (module, attribute, one-line help)

    def list_commands(self, ctx: click.Context) -> List[str]:
        return list(self.lazy)

    def get_command(self, ctx: click.Context, name: str) -> Optional[click.Command]:
        if name not in self.lazy:
            return None
        module, attr, _ = self.lazy[name]
        cmd = getattr(importlib.import_module(module), attr)
        assert isinstance(cmd, click.Command)
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The list of commands from the table: ``hpilot --help`` imports none of them."""
        sections: Dict[str, List[Tuple[str, str]]] = {}
        for name, (module, _, short) in self.lazy.items():
            title = SECTION.get(module.rsplit(".", 1)[-1], "Commands")
            sections.setdefault(title, []).append((name, short))
        for title, rows in sections.items():
            with formatter.section(title):
                formatter.write_dl(rows)


SECTION = {"serve": "Run work", "client": "Watch and steer a running hpilot (from its working directory)",
           "top": "Watch and steer a running hpilot (from its working directory)",
           "report": "Read a run dir (also after the run)", "log": "Read a run dir (also after the run)"}

