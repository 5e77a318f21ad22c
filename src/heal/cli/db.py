"""``heal db``: migrations, and moving an installation to another database."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from heal.cli.common import (
    DatabaseUrl,
    make_settings,
    open_database,
    require_schema,
    run,
    safe_url,
    sqlite_file,
)
from heal.cli.console import CliError, examples, group, out
from heal.settings import Settings

if TYPE_CHECKING:
    from heal.store import transfer

app = group("Database schema and data.")


@app.command(
    "upgrade",
    epilog=examples(
        "heal db upgrade", "heal db upgrade --database-url postgresql+psycopg://heal@db/heal"
    ),
)
def upgrade(database_url: DatabaseUrl = None) -> None:
    """Apply the migrations the database is missing (creates a SQLite file if needed)."""
    settings = make_settings(database_url=database_url)
    before, after = run(_upgrade(settings), settings.database_url)
    where = escape(safe_url(settings.database_url))
    if before == after:
        out().print(f"{where}: already at [green]{after}[/green] (head)")
    else:
        out().print(f"{where}: upgraded from {before or 'an empty database'} to [green]{after}[/]")


async def _upgrade(settings: Settings) -> tuple[str | None, str | None]:
    from heal.store import migrate

    async with open_database(settings, create=True) as database:
        before = await migrate.current_revision(database)
        await migrate.upgrade(database)
        return before, await migrate.current_revision(database)


@app.command("current", epilog=examples("heal db current"))
def current(database_url: DatabaseUrl = None) -> None:
    """Show the database's schema revision and the newest this heal knows."""
    from heal.store import migrate

    settings = make_settings(database_url=database_url)
    path = sqlite_file(settings.database_url)
    missing = path is not None and not path.exists()
    revision = None if missing else run(_current(settings), settings.database_url)
    head = migrate.head_revision()
    console = out()
    if revision is not None:
        console.print(f"current: {revision}")
    elif missing:
        console.print(f"current: none (no database file at {escape(str(path))} yet)")
    else:
        console.print("current: none (no heal schema in this database yet)")
    console.print(f"head:    {head}")
    if revision == head:
        console.print("[green]the database is up to date[/green]")
    else:
        console.print("[yellow]run `heal db upgrade` to bring the database up to date[/yellow]")


async def _current(settings: Settings) -> str | None:
    from heal.store import migrate

    async with open_database(settings) as database:
        return await migrate.current_revision(database)


@app.command(
    "migrate-to",
    epilog=examples("heal db migrate-to postgresql+psycopg://heal:secret@db.example.com/heal"),
)
def migrate_to(
    target_url: Annotated[
        str, typer.Argument(help="URL of the new, empty database", show_default=False)
    ],
    database_url: DatabaseUrl = None,
    force: Annotated[
        bool, typer.Option("--force", help="replace the heal data the target already holds")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="print the result as one JSON object")
    ] = False,
) -> None:
    """Copy every table to another (empty) database, e.g. SQLite to PostgreSQL.

    Stop heal first. Row counts of every table are compared after the copy. In-flight
    actions continue on the target where they were; with HEAL_RUNTIME=procrastinate
    set, their wakes become procrastinate jobs there.
    """
    settings = make_settings(database_url=database_url)
    target = settings.model_copy(update={"database_url": target_url})
    copied, woken = run(_migrate_to(settings, target, force=force, quiet=as_json), target_url)
    if as_json:
        result = {
            "target": safe_url(target_url),
            "runtime": target.runtime,
            "tables": {count.name: count.rows for count in copied},
            "in_flight_woken": woken,
        }
        typer.echo(json.dumps(result))
        return
    console = out()
    for count in copied:
        console.print(f"  {count.name}: {count.rows} rows (verified)")
    console.print(f"  in-flight actions given a wake on the target: {woken}")
    console.print(
        f"[green]copied to {escape(safe_url(target_url))}[/green]: point HEAL_DATABASE_URL at it "
        f"(runtime {target.runtime})"
    )


async def _migrate_to(
    source_settings: Settings, target: Settings, *, force: bool, quiet: bool
) -> tuple[list[transfer.TableCount], int]:
    from heal.app import Heal
    from heal.policy.models import Policy
    from heal.store import transfer

    console = out()

    def progress(table: str, rows: int) -> None:
        if console.is_terminal and not quiet:
            console.print(f"  copying {table}: {rows} rows".ljust(60), end="\r")

    async with open_database(source_settings) as source, open_database(target, create=True) as to:
        await require_schema(source)
        try:
            counts = await transfer.copy_database(source, to, progress, force=force)
        except transfer.TargetNotEmpty as exc:
            raise CliError(f"{exc}; use an empty one, or --force to replace it", code=2) from None
        except transfer.CountMismatch as exc:
            raise CliError(str(exc)) from None
    heal = Heal.build(target, Policy())
    try:
        await heal.start(worker=False)
        woken = await heal.schedule_all_wakes()
    finally:
        await heal.stop()
    return counts, woken
