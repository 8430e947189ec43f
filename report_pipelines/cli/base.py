"""The ``report-pipelines`` group, and what every command shares: one-line errors and the application.

Every command and group of the CLI is made by the classes below, so every command behaves the same:

* an expected problem (:class:`ReportPipelinesError`: bad input, unknown names, conflicts) prints one
  line naming the field (``error: timezone: unknown time zone ...``) and exits with status 2, nothing
  half-written;
* so does an option click cannot parse (``error: --days: 'x' is not a valid integer``) or a usage
  mistake, instead of click's usage block;
* an empty value for an option (``--timezone ''``) is refused naming the option, never taken for its
  default;
* anything else is a bug and keeps its traceback.

Commands get their pieces from the :class:`~report_pipelines.app.App` that :func:`_app` builds once
per invocation (the composition root).
"""

from __future__ import annotations

import sys
from typing import Any

import click

from report_pipelines.domain.errors import InvalidInput, ReportPipelinesError


def _fail(text: str) -> None:
    click.echo(f"error: {text}", err=True)
    sys.exit(2)


class _Command(click.Command):
    def invoke(self, ctx: click.Context) -> Any:
        for param in self.params:
            value = ctx.params.get(param.name)
            given = ctx.get_parameter_source(param.name) is click.core.ParameterSource.COMMANDLINE
            if given and isinstance(param, click.Option) and (value == "" or (isinstance(value, tuple) and "" in value)):
                raise InvalidInput(param.opts[0], "must not be empty (leave the option out for its default)")
        return super().invoke(ctx)


class _Group(click.Group):
    command_class = _Command
    group_class = type  # subgroups are _Group too

    def main(self, args: Any = None, prog_name: str | None = None, **extra: Any) -> Any:
        try:
            result = super().main(args=args, prog_name=prog_name, standalone_mode=False, **extra)
        except ReportPipelinesError as exc:
            _fail(str(exc))
        except click.BadParameter as exc:
            name = exc.param.opts[0] if exc.param is not None and getattr(exc.param, "opts", None) else (
                exc.param_hint or "argument")
            _fail(f"{name if isinstance(name, str) else name[0]}: {exc.message}")
        except click.UsageError as exc:
            _fail(f"usage: {exc.message} (see {exc.ctx.command_path if exc.ctx else 'report-pipelines'} --help)")
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)


def _friendly(func):
    """Kept for readability at the command definitions; the group already turns errors into one line."""
    return func


def _app():
    """The application of this invocation, built from the environment once (see report_pipelines.app)
    and kept on the invocation's root context (so an in-process runner's next invocation gets its own)."""
    from report_pipelines.app import bootstrap

    context = click.get_current_context(silent=True)
    if context is None:
        return bootstrap()
    root = context.find_root()
    if "app" not in root.meta:
        root.meta["app"] = bootstrap()
    return root.meta["app"]


def _engine():
    return _app().engine


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Reports for a multi-tenant cloud PBX. Configuration comes from REPORT_PIPELINES_* variables."""
