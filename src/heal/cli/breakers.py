"""``heal breakers list`` and ``heal breakers reset``: the circuit breakers, in heal's
database."""

from __future__ import annotations

import getpass
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from heal.cli import render
from heal.cli.common import (
    DatabaseUrl,
    JsonOutput,
    make_settings,
    open_database,
    require_schema,
    run,
)
from heal.cli.console import CliError, examples, group, out, print_json

if TYPE_CHECKING:
    from heal.settings import Settings

app = group("Circuit breakers: list the ones that opened, reset one.")


@app.command(
    "list",
    epilog=examples("heal breakers list", "heal breakers list --open", "heal breakers list --json"),
)
def list_(
    only_open: Annotated[bool, typer.Option("--open", help="only the open ones")] = False,
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Every breaker that opened once, per action and target; an open one blocks new
    actions there until it closes or is reset."""
    settings = make_settings(database_url=database_url)
    rows = [r for r in run(_list(settings), settings.database_url) if r["open"] or not only_open]
    if as_json:
        print_json(rows)
        return
    console = out()
    if not rows:
        console.print("no open breakers" if only_open else "no breakers")
        return
    table = Table(title="Circuit breakers", title_justify="left")
    for name in ("id", "state", "action", "target", "failures", "opened (UTC)", "closes (UTC)"):
        table.add_column(name, justify="right" if name in ("id", "failures") else "left")
    for row in rows:
        table.add_row(
            str(row["id"]),
            "[red]open[/red]" if row["open"] else "closed",
            render.plain(row["action_name"]),
            render.plain(row["target"] or "-"),
            str(row["failures"]),
            render.when(row["opened_at"]),
            render.when(row["closes_at"]),
        )
    console.print(table)


async def _list(settings: Settings) -> list[dict[str, Any]]:
    from heal.engine.engine import utcnow
    from heal.governors import breakers

    async with open_database(settings) as database:
        await require_schema(database)
        async with database.read() as connection:
            return await breakers.listing(connection, utcnow())


@app.command("reset", epilog=examples("heal breakers reset 2"))
def reset(
    breaker_id: Annotated[int, typer.Argument(metavar="ID", help="the breaker's id")],
    database_url: DatabaseUrl = None,
) -> None:
    """Close a breaker now: actions on its target may run again; only failures from now on
    count towards opening it again (works while heal runs)."""
    settings = make_settings(database_url=database_url)
    who = f"cli:{_os_user()}"
    run(_reset(settings, breaker_id, who), settings.database_url)
    out().print(f"[green]breaker {breaker_id} reset[/green] (by {render.markup(who)})")


async def _reset(settings: Settings, breaker_id: int, who: str) -> None:
    from heal.engine.engine import utcnow
    from heal.governors import breakers

    async with open_database(settings) as database:
        await require_schema(database)
        async with database.write() as connection:
            if not await breakers.reset(connection, breaker_id, who, utcnow()):
                raise CliError(f"breaker {breaker_id} not found")


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"
